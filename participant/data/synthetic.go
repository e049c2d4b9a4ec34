package data

import (
	"fmt"
	"math"

	"github.com/accord-fl/accord/model"
)

// SyntheticConfig is the FedProx Synthetic(α,β) generator's setting (Li et
// al., MLSys 2020). α controls how much the devices' models differ, β how
// much their inputs differ.
type SyntheticConfig struct {
	Alpha, Beta float64
	Devices     int
	Features    int
	Classes     int
	Seed        uint64
}

// DefaultSynthetic is the paper's setting for the given α and β: 30 devices,
// 60 features, 10 classes.
func DefaultSynthetic(alpha, beta float64, seed uint64) SyntheticConfig {
	return SyntheticConfig{Alpha: alpha, Beta: beta, Devices: 30, Features: 60, Classes: 10, Seed: seed}
}

// maxSyntheticSamples caps one device's sample count: lognormal(4, 2) has a
// heavy tail, and the paper's code draws from it unbounded.
const maxSyntheticSamples = 1 << 20

// Synthetic generates one dataset per device:
//
//	n_k = int(lognormal(4, 2)) + 50 samples
//	u_k ~ N(0, α); W_k (Features×Classes), b_k with entries ~ N(u_k, 1)
//	B_k ~ N(0, β); v_k with entries ~ N(B_k, 1)
//	x ~ N(v_k, diag(j^−1.2)), j = 1…Features
//	y = argmax softmax(x·W_k + b_k)
//
// α and β are standard deviations, as in the paper's code.
func Synthetic(cfg SyntheticConfig) ([]*model.Dataset, error) {
	if cfg.Devices < 1 || cfg.Features < 1 || cfg.Classes < 2 || cfg.Alpha < 0 || cfg.Beta < 0 ||
		math.IsNaN(cfg.Alpha) || math.IsNaN(cfg.Beta) {
		return nil, fmt.Errorf("%w: synthetic config %+v", ErrPartition, cfg)
	}
	rng := newRand(cfg.Seed)
	d, c := cfg.Features, cfg.Classes
	sd := make([]float64, d)
	for j := range sd {
		sd[j] = math.Sqrt(math.Pow(float64(j+1), -1.2))
	}
	out := make([]*model.Dataset, cfg.Devices)
	w := make([]float64, d*c)
	b := make([]float64, c)
	v := make([]float64, d)
	logits := make([]float64, c)
	for k := range out {
		n := int(math.Exp(4+2*rng.NormFloat64())) + 50
		n = min(n, maxSyntheticSamples)
		u := cfg.Alpha * rng.NormFloat64()
		for i := range w {
			w[i] = u + rng.NormFloat64()
		}
		for i := range b {
			b[i] = u + rng.NormFloat64()
		}
		shift := cfg.Beta * rng.NormFloat64()
		for j := range v {
			v[j] = shift + rng.NormFloat64()
		}
		ds := &model.Dataset{X: make([]float32, n*d), Y: make([]int32, n), Features: d, Classes: c}
		for s := range n {
			x := ds.X[s*d : (s+1)*d]
			for j := range x {
				x[j] = float32(v[j] + sd[j]*rng.NormFloat64())
			}
			copy(logits, b)
			for j, xj := range x {
				for o := range c {
					logits[o] += float64(xj) * w[j*c+o]
				}
			}
			best := 0
			for o, z := range logits {
				if z > logits[best] {
					best = o
				}
			}
			ds.Y[s] = int32(best) // argmax of softmax = argmax of logits
		}
		out[k] = ds
	}
	return out, nil
}
