package aggregate

import (
	"fmt"
	"math"
)

// Server optimiser names, as a job file's strategy spells them (Reddi et
// al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2).
const (
	OptimizerFedAvg     = "fedavg"
	OptimizerFedAvgM    = "fedavgm"
	OptimizerFedAdagrad = "fedadagrad"
	OptimizerFedAdam    = "fedadam"
	OptimizerFedYogi    = "fedyogi"
)

// Defaults for zero OptimizerConfig fields (REFERENCES.md §6).
//
//   - η, fedavg and fedavgm: 1, which makes fedavg McMahan et al.'s FedAvg;
//     Flower's FedAvgM also defaults to a server rate of 1.
//   - μ, fedavgm: 0.9, the usual heavy-ball value (Flower's default is 0,
//     which is plain FedAvg). Its steady-state step is η/(1−μ) = 10·Δ;
//     Reddi et al.'s tuned FedAvgM rate on EMNIST was η = 10^−0.5, the
//     value to try when a job diverges.
//   - η, fedadagrad 10^−1, fedadam and fedyogi 10^−2.5: Reddi et al.'s best
//     server rates on EMNIST character recognition (their tuned log10 grid).
//     Flower defaults to 10^−1 (FedAdam) and 10^−2 (FedYogi).
//   - β1 0.9, β2 0.99, τ 1e−3: Reddi et al.'s defaults (google-research/
//     federated's flags). Their tuned τ on EMNIST was 1e−2 for Adagrad and
//     1e−4 for Adam and Yogi.
const (
	DefaultLR         = 1.0
	DefaultLRAdagrad  = 0.1
	DefaultLRAdamYogi = 0.0031622776601683794 // 10^−2.5
	DefaultMomentum   = 0.9
	DefaultBeta1      = 0.9
	DefaultBeta2      = 0.99
	DefaultTau        = 1e-3
)

// OptimizerConfig is the server optimiser that applies a round's combined
// update Δ to the model x (Reddi et al.): Δ is a pseudo-gradient, and
//
//	fedavg:     x ← x + η·Δ
//	fedavgm:    m ← μ·m + Δ;  x ← x + η·m
//	fedadagrad: m ← β1·m + (1−β1)·Δ;  v ← v + Δ²;                     x ← x + η·m/(√v + τ)
//	fedadam:    m ← β1·m + (1−β1)·Δ;  v ← β2·v + (1−β2)·Δ²;            x ← x + η·m/(√v + τ)
//	fedyogi:    m ← β1·m + (1−β1)·Δ;  v ← v − (1−β2)·Δ²·sign(v − Δ²);  x ← x + η·m/(√v + τ)
//
// coordinate by coordinate, m and v starting at 0, with no bias correction.
// A zero field takes its default (WithDefaults), so β1 = 0, say, cannot be
// asked for; a field the optimiser does not use must be zero.
type OptimizerConfig struct {
	Name     string  // "fedavg" (default ""), "fedavgm", "fedadagrad", "fedadam", "fedyogi"
	LR       float64 // server learning rate η (0: the variant's default)
	Momentum float64 // fedavgm's μ (0: 0.9)
	Beta1    float64 // adaptive: β1 (0: 0.9)
	Beta2    float64 // fedadam, fedyogi: β2 (0: 0.99)
	Tau      float64 // adaptive: τ, the adaptivity (0: 1e−3)
}

// adaptive reports whether the optimiser keeps v.
func adaptive(name string) bool {
	return name == OptimizerFedAdagrad || name == OptimizerFedAdam || name == OptimizerFedYogi
}

// WithDefaults returns c with its zero fields, among those its optimiser
// uses, set to the defaults, and an empty Name set to "fedavg".
func (c OptimizerConfig) WithDefaults() OptimizerConfig {
	if c.Name == "" {
		c.Name = OptimizerFedAvg
	}
	if c.LR == 0 {
		switch c.Name {
		case OptimizerFedAvg, OptimizerFedAvgM:
			c.LR = DefaultLR
		case OptimizerFedAdagrad:
			c.LR = DefaultLRAdagrad
		case OptimizerFedAdam, OptimizerFedYogi:
			c.LR = DefaultLRAdamYogi
		}
	}
	if c.Name == OptimizerFedAvgM && c.Momentum == 0 {
		c.Momentum = DefaultMomentum
	}
	if adaptive(c.Name) {
		if c.Beta1 == 0 {
			c.Beta1 = DefaultBeta1
		}
		if c.Tau == 0 {
			c.Tau = DefaultTau
		}
	}
	if (c.Name == OptimizerFedAdam || c.Name == OptimizerFedYogi) && c.Beta2 == 0 {
		c.Beta2 = DefaultBeta2
	}
	return c
}

// Validate checks the settings, with or without defaults applied, naming
// the job file's fields ("server_optimizer", "server_lr",
// "server_momentum", "beta1", "beta2", "tau") in its errors, which wrap
// ErrConfig.
func (c OptimizerConfig) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s %v: %s", ErrConfig, field, v, want)
	}
	name := c.Name
	if name == "" {
		name = OptimizerFedAvg
	}
	fraction := func(v float64) bool { return v >= 0 && v < 1 }
	switch name {
	case OptimizerFedAvg, OptimizerFedAvgM, OptimizerFedAdagrad, OptimizerFedAdam, OptimizerFedYogi:
	default:
		return bad("server_optimizer", fmt.Sprintf("%q", c.Name), `want "fedavg", "fedavgm", "fedadagrad", "fedadam" or "fedyogi"`)
	}
	adam := name == OptimizerFedAdam || name == OptimizerFedYogi
	switch {
	case !(c.LR >= 0) || math.IsInf(c.LR, 0):
		return bad("server_lr", c.LR, "want a finite rate > 0 (0: the optimizer's default)")
	case name == OptimizerFedAvgM && !fraction(c.Momentum):
		return bad("server_momentum", c.Momentum, "want 0 ≤ momentum < 1 (0: 0.9)")
	case name != OptimizerFedAvgM && c.Momentum != 0:
		return bad("server_momentum", c.Momentum, "applies to fedavgm only")
	case adaptive(name) && !fraction(c.Beta1):
		return bad("beta1", c.Beta1, "want 0 ≤ beta1 < 1 (0: 0.9)")
	case !adaptive(name) && c.Beta1 != 0:
		return bad("beta1", c.Beta1, "applies to fedadagrad, fedadam and fedyogi only")
	case adam && !fraction(c.Beta2):
		return bad("beta2", c.Beta2, "want 0 ≤ beta2 < 1 (0: 0.99)")
	case !adam && c.Beta2 != 0:
		return bad("beta2", c.Beta2, "applies to fedadam and fedyogi only")
	case adaptive(name) && (!(c.Tau >= 0) || math.IsInf(c.Tau, 0)):
		return bad("tau", c.Tau, "want a finite τ > 0 (0: 1e-3)")
	case !adaptive(name) && c.Tau != 0:
		return bad("tau", c.Tau, "applies to fedadagrad, fedadam and fedyogi only")
	}
	return nil
}

// OptimizerState is the optimiser's memory between rounds: m (fedavgm and
// the adaptive ones) and v (the adaptive ones), one value per parameter;
// empty for fedavg. Coordinators store it as a blob (MarshalBinary).
type OptimizerState struct {
	M, V []float32
}

// empty reports whether s holds nothing (nil or both slices empty).
func (s *OptimizerState) empty() bool { return s == nil || len(s.M) == 0 && len(s.V) == 0 }

// Step applies Δ (a Rule's Result) to x and returns the new model and the
// optimiser's next state (nil for fedavg). st is the state Step last
// returned, or nil in the first round. It modifies neither x nor st, and
// computes in float64, rounding the model and the state to float32. It
// refuses mismatched lengths (ErrShape), a state of the wrong shape for
// the optimiser (ErrState), and a result or state that is not finite
// (ErrNotFinite).
func (c OptimizerConfig) Step(x, delta []float32, st *OptimizerState) ([]float32, *OptimizerState, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if len(delta) != len(x) {
		return nil, nil, fmt.Errorf("%w: update has %d values; the model has %d", ErrShape, len(delta), len(x))
	}
	if !st.empty() {
		switch {
		case c.Name == OptimizerFedAvg:
			return nil, nil, fmt.Errorf("%w: fedavg keeps no state; got m and v of %d and %d values", ErrState, len(st.M), len(st.V))
		case len(st.M) != len(x):
			return nil, nil, fmt.Errorf("%w: m has %d values; the model has %d", ErrState, len(st.M), len(x))
		case adaptive(c.Name) && len(st.V) != len(x):
			return nil, nil, fmt.Errorf("%w: v has %d values; %s needs %d", ErrState, len(st.V), c.Name, len(x))
		case !adaptive(c.Name) && len(st.V) != 0:
			return nil, nil, fmt.Errorf("%w: %s keeps no v; got %d values", ErrState, c.Name, len(st.V))
		}
	}
	// prev returns the state's value i, 0 in the first round.
	var pm, pv []float32
	if !st.empty() {
		pm, pv = st.M, st.V
	}
	prev := func(s []float32, i int) float64 {
		if s == nil {
			return 0
		}
		return float64(s[i])
	}
	out := make([]float32, len(x))
	var next *OptimizerState
	switch {
	case c.Name == OptimizerFedAvgM:
		next = &OptimizerState{M: make([]float32, len(x))}
	case adaptive(c.Name):
		next = &OptimizerState{M: make([]float32, len(x)), V: make([]float32, len(x))}
	}
	// The explicit float64 conversions round each product, so that no
	// architecture fuses a multiply and an add (Go may, on arm64): the
	// same inputs step to the same bits everywhere.
	eta := c.LR
	for i, xi := range x {
		d := float64(delta[i])
		var step float64
		switch c.Name {
		case OptimizerFedAvg:
			step = d
		case OptimizerFedAvgM:
			m := float64(c.Momentum*prev(pm, i)) + d
			next.M[i] = float32(m)
			step = m
		default:
			m := float64(c.Beta1*prev(pm, i)) + float64((1-c.Beta1)*d)
			v, d2 := prev(pv, i), float64(d*d)
			switch c.Name {
			case OptimizerFedAdagrad:
				v += d2
			case OptimizerFedAdam:
				v = float64(c.Beta2*v) + float64((1-c.Beta2)*d2)
			case OptimizerFedYogi:
				v -= float64((1 - c.Beta2) * d2 * sign(v-d2))
			}
			next.M[i], next.V[i] = float32(m), float32(v)
			step = m / (math.Sqrt(v) + c.Tau)
		}
		out[i] = float32(float64(xi) + float64(eta*step))
	}
	if !finiteParallel(out, 0) {
		return nil, nil, fmt.Errorf("%w: the %s step overflows the model", ErrNotFinite, c.Name)
	}
	if next != nil && (!finiteParallel(next.M, 0) || !finiteParallel(next.V, 0)) {
		return nil, nil, fmt.Errorf("%w: the %s state overflows float32", ErrNotFinite, c.Name)
	}
	return out, next, nil
}

// sign is −1, 0 or +1.
func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
