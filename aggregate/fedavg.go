package aggregate

import (
	"fmt"
	"math"
)

// FedAvg is McMahan et al.'s weighted average of updates: Result is
// Σ_k n_k·Δ_k / Σ_k n_k, with n_k the examples participant k trained on. It
// is the streaming Rule: memory is one float64 sum per parameter, however
// many updates arrive. It is not safe for concurrent use.
//
// Add checks an update (one pass over it) and keeps a reference to it,
// not a copy, until it is folded into the sum: every foldBatch updates
// (16, fewer for models over 4 Mi parameters, so that at most 256 MiB of
// updates wait), and at Result. The caller must not modify an added update
// until the next Result. A fold reads its batch of updates and the sum once:
// sum[i] += Σ_j w_j·Δ_j[i], the inner sum in float64 with fused
// multiply-adds, in j order. Time is O(n·params); a fold splits the
// coordinates over Parallelism goroutines.
//
// Precision: each coordinate of the sum is the float64 sum of n products,
// so the float64 mean is within (n+2)·2⁻⁵³·Σ|w_k·Δ_k[i]|/Σw_k of the exact
// one; Result then rounds it to float32 (2⁻²⁴ relative). The result does
// not depend on the CPU or on Parallelism (kernel.go).
type FedAvg struct {
	// Parallelism is the number of goroutines the checks and folds use (0:
	// GOMAXPROCS).
	Parallelism int

	sum     []float64
	exact   *exactSum // set by NewExactFedAvg: sums in fixed point instead of sum
	exactW  *exactSum // and the weights
	weight  float64
	count   int
	batch   int         // fold when this many updates wait
	pending [][]float32 // checked, not yet folded: the callers' slices
	pw      []float64   // their weights
}

// foldBudget bounds the bytes of updates waiting for a fold.
const foldBudget = 256 << 20

// foldBatch is the number of updates a fold takes for models of params
// parameters: maxFold, or fewer so that they fit in foldBudget.
func foldBatch(params int) int {
	return max(1, min(maxFold, foldBudget/(4*max(params, 1))))
}

// NewFedAvg returns an accumulator for models of n parameters.
func NewFedAvg(n int) *FedAvg {
	k := foldBatch(n)
	return &FedAvg{sum: make([]float64, n), batch: k, pending: make([][]float32, 0, k), pw: make([]float64, 0, k)}
}

// NewExactFedAvg returns an accumulator for models of n parameters whose
// result does not depend on the order of the updates (exactSum): the job
// file's aggregation.exact. Its weights must be integers below 2²⁹ (example
// counts) for the products to be exact too.
func NewExactFedAvg(n int) *FedAvg {
	a := NewFedAvg(n)
	a.sum, a.exact, a.exactW = nil, newExactSum(n), newExactSum(1)
	return a
}

// params is the number of parameters of the models summed.
func (a *FedAvg) params() int {
	if a.exact != nil {
		return len(a.exact.lo)
	}
	return len(a.sum)
}

// Check reports whether delta with weight could be added, without adding it.
func (a *FedAvg) Check(delta []float32, weight float64) error {
	_, err := checkUpdate(delta, weight, a.params(), a.Parallelism, false)
	if err == nil && math.IsInf(a.weight+weight, 0) {
		err = fmt.Errorf("%w: total weight overflows", ErrNotFinite)
	}
	if err == nil && a.exact != nil {
		err = a.exact.fits(delta, weight, a.count)
	}
	return err
}

// Add checks delta and weight and adds weight·delta to the sum; a refused
// update changes nothing. It keeps delta until the next fold (see FedAvg).
func (a *FedAvg) Add(delta []float32, weight float64) error {
	if err := a.Check(delta, weight); err != nil {
		return err
	}
	a.addChecked(delta, weight)
	return nil
}

// addChecked adds an update Check accepted.
func (a *FedAvg) addChecked(delta []float32, weight float64) {
	a.pending = append(a.pending, delta)
	a.pw = append(a.pw, weight)
	a.weight += weight
	if a.exactW != nil {
		a.exactW.addAt(0, weight)
		a.weight = a.exactW.value(0) // the same whatever the order
	}
	a.count++
	if len(a.pending) >= a.batch {
		a.fold()
	}
}

// fold adds the waiting updates to the sum and forgets them.
func (a *FedAvg) fold() {
	if len(a.pending) == 0 {
		return
	}
	us, ws := a.pending, a.pw
	parallel(a.Parallelism, a.params(), 64, minSpan, func(lo, hi int) {
		if a.exact != nil {
			for j, u := range us {
				a.exact.add(u[lo:hi], ws[j], lo)
			}
			return
		}
		kernels.fold(a.sum[lo:hi], us, ws, lo)
	})
	clear(a.pending)
	a.pending, a.pw = a.pending[:0], a.pw[:0]
}

// Count is the number of updates added.
func (a *FedAvg) Count() int { return a.count }

// Weight is the total weight added.
func (a *FedAvg) Weight() float64 { return a.weight }

// Result returns the weighted mean of the updates, as a new slice.
func (a *FedAvg) Result() ([]float32, error) {
	if a.count == 0 {
		return nil, ErrEmpty
	}
	a.fold()
	out := make([]float32, a.params())
	parallel(a.Parallelism, len(out), 64, minSpan, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if a.exact != nil {
				out[i] = float32(a.exact.value(i) / a.weight)
			} else {
				out[i] = float32(a.sum[i] / a.weight)
			}
		}
	})
	return checkResult(out, a.Parallelism)
}

// Apply returns base plus the weighted mean of the updates, as a new slice.
func (a *FedAvg) Apply(base []float32) ([]float32, error) {
	if a.count > 0 && len(base) != a.params() {
		return nil, fmt.Errorf("%w: base has %d values; updates have %d", ErrShape, len(base), a.params())
	}
	out, err := a.Result()
	if err != nil {
		return nil, err
	}
	for i, b := range base {
		out[i] += b
	}
	return out, nil
}
