package secagg

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Quantizer maps floats in [−Clip, Clip] to integers in [0, Levels] by
// stochastic rounding, with Levels chosen so that the sum of N clients'
// vectors cannot wrap modulo 2^32. Weighted FedAvg works through it: clients
// submit w·Δ (clipped) and the weight itself as one extra entry.
type Quantizer struct {
	Clip   float64
	Levels uint32
}

// NewQuantizer returns the quantizer for a cohort of n clients.
func NewQuantizer(clip float64, n int) (Quantizer, error) {
	if !(clip > 0) || math.IsInf(clip, 0) || n < 1 {
		return Quantizer{}, fmt.Errorf("%w: clip %v for %d clients", ErrParams, clip, n)
	}
	return Quantizer{Clip: clip, Levels: uint32(math.MaxUint32 / uint64(n))}, nil
}

// Quantize clips x and rounds each value stochastically (unbiased) to an
// integer level.
func (q Quantizer) Quantize(x []float32, rng *rand.Rand) []uint32 {
	out := make([]uint32, len(x))
	scale := float64(q.Levels) / (2 * q.Clip)
	for i, v := range x {
		f := (math.Max(-q.Clip, math.Min(q.Clip, float64(v))) + q.Clip) * scale
		lo := math.Floor(f)
		if rng.Float64() < f-lo {
			lo++
		}
		out[i] = uint32(min(lo, float64(q.Levels)))
	}
	return out
}

// Dequantize turns the sum of n clients' quantized vectors back into the
// sum of their (clipped) values.
func (q Quantizer) Dequantize(sum []uint32, n int) []float64 {
	out := make([]float64, len(sum))
	step := 2 * q.Clip / float64(q.Levels)
	for i, s := range sum {
		out[i] = float64(s)*step - float64(n)*q.Clip
	}
	return out
}
