package model

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Model is a spec and its parameters, laid out as the package documentation
// describes.
type Model struct {
	Spec   Spec
	Params []float32
}

// New returns a model with parameters drawn from a generator seeded with seed,
// so the same spec and seed always give the same model. Dense layers are drawn
// uniformly from ±1/√In, weights and biases alike, and Conv layers from
// ±1/√(C·K·K) (PyTorch's defaults for nn.Linear and nn.Conv2d, so that
// centralised baselines compare like with like).
func New(spec Spec, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 0x6163636f7264)) // "accord"
	params := make([]float32, spec.NumParams())
	off := 0
	for _, l := range spec.Layers {
		n := l.NumParams()
		fanIn := 0
		switch l.Kind {
		case Dense:
			fanIn = l.In
		case Conv:
			fanIn = l.C * l.Size * l.Size
		}
		if fanIn > 0 {
			bound := 1 / math.Sqrt(float64(fanIn))
			for i := range params[off : off+n] {
				params[off+i] = float32((2*rng.Float64() - 1) * bound)
			}
		}
		off += n
	}
	return &Model{Spec: spec, Params: params}
}

// FromParams wraps params (not copied) as a model of spec after checking
// their length and that every value is finite.
func FromParams(spec Spec, params []float32) (*Model, error) {
	if err := CheckParams(spec, params); err != nil {
		return nil, err
	}
	return &Model{Spec: spec, Params: params}, nil
}

// CheckParams reports whether params can be the parameters of spec: the right
// length, every value finite.
func CheckParams(spec Spec, params []float32) error {
	if len(params) != spec.NumParams() {
		return fmt.Errorf("%w: %d parameters; model %s has %d", ErrShape, len(params), spec, spec.NumParams())
	}
	for i, v := range params {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: parameter %d is %v", ErrNotFinite, i, v)
		}
	}
	return nil
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	return &Model{Spec: m.Spec, Params: append([]float32(nil), m.Params...)}
}
