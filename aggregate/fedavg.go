package aggregate

import (
	"errors"
	"fmt"
	"math"
)

// Errors returned by this package.
var (
	// ErrShape means an update's length differs from the model's.
	ErrShape = errors.New("update has the wrong length")
	// ErrNotFinite means an update or weight holds NaN or an infinity.
	ErrNotFinite = errors.New("update is not finite")
	// ErrEmpty means no update was added.
	ErrEmpty = errors.New("no updates to aggregate")
)

// FedAvg is McMahan et al.'s weighted average of updates: the new model is
// w_base + Σ_k n_k·Δ_k / Σ_k n_k, with n_k the examples participant k trained
// on. It keeps one float64 running sum. It is not safe for concurrent use.
type FedAvg struct {
	sum    []float64
	weight float64
	count  int
}

// NewFedAvg returns an accumulator for models of n parameters.
func NewFedAvg(n int) *FedAvg { return &FedAvg{sum: make([]float64, n)} }

// Check reports whether delta with weight could be added, without adding it.
func (a *FedAvg) Check(delta []float32, weight float64) error {
	if len(delta) != len(a.sum) {
		return fmt.Errorf("%w: %d values; the model has %d", ErrShape, len(delta), len(a.sum))
	}
	if !(weight > 0) || math.IsInf(weight, 0) {
		return fmt.Errorf("%w: weight %v must be positive", ErrNotFinite, weight)
	}
	for i, v := range delta {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: value %d is %v", ErrNotFinite, i, v)
		}
	}
	return nil
}

// Add adds weight·delta to the sum after checking it; a refused update
// changes nothing.
func (a *FedAvg) Add(delta []float32, weight float64) error {
	if err := a.Check(delta, weight); err != nil {
		return err
	}
	for i, v := range delta {
		a.sum[i] += weight * float64(v)
	}
	a.weight += weight
	a.count++
	return nil
}

// Count is the number of updates added.
func (a *FedAvg) Count() int { return a.count }

// Weight is the total weight added.
func (a *FedAvg) Weight() float64 { return a.weight }

// Apply returns base plus the weighted mean of the updates, as a new slice.
func (a *FedAvg) Apply(base []float32) ([]float32, error) {
	if a.count == 0 {
		return nil, ErrEmpty
	}
	if len(base) != len(a.sum) {
		return nil, fmt.Errorf("%w: base has %d values; updates have %d", ErrShape, len(base), len(a.sum))
	}
	out := make([]float32, len(base))
	for i, b := range base {
		out[i] = b + float32(a.sum[i]/a.weight)
	}
	return out, nil
}
