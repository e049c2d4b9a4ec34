package aggregate

import (
	"math"
	"slices"
)

// buffer keeps a round's updates for the rules that need all of them at
// once (median, trimmed mean, Krum, and any rule with a norm bound). It
// keeps the callers' slices, not copies: O(n·params) float32 that the
// caller has allocated anyway, and must not modify until Result.
type buffer struct {
	params    int
	workers   int
	normBound float64
	exact     bool // weighted sums in fixed point (RuleConfig.Exact)
	updates   [][]float32
	weights   []float64
	norms     []float64 // L2 norms, when normBound > 0
}

// add checks an update and keeps it.
func (b *buffer) add(delta []float32, weight float64) error {
	sq, err := checkUpdate(delta, weight, b.params, b.workers, b.normBound > 0)
	if err != nil {
		return err
	}
	b.updates = append(b.updates, delta)
	b.weights = append(b.weights, weight)
	if b.normBound > 0 {
		b.norms = append(b.norms, math.Sqrt(sq))
	}
	return nil
}

// Count is the number of updates added.
func (b *buffer) Count() int { return len(b.updates) }

// kept lists, in the order added, the updates the norm bound keeps: those
// whose norm is at most normBound × the median norm (the mean of the two
// middle norms for an even count). Without a bound it keeps all. With a
// bound ≥ 1 it keeps at least half of them, and at least one.
func (b *buffer) kept() []int {
	idx := make([]int, 0, len(b.updates))
	limit := math.Inf(1)
	if b.normBound > 0 && len(b.norms) > 0 {
		limit = b.normBound * median64(b.norms)
	}
	for i := range b.updates {
		if b.normBound == 0 || b.norms[i] <= limit {
			idx = append(idx, i)
		}
	}
	return idx
}

// median64 is the median of v (not modified): the middle value, or the
// mean of the two middle values.
func median64(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// weightedMean is FedAvg over the updates idx names, in that order: the
// same arithmetic, so with every update kept it equals the streaming
// FedAvg bit for bit.
func (b *buffer) weightedMean(idx []int) ([]float32, error) {
	a := NewFedAvg(b.params)
	if b.exact {
		a = NewExactFedAvg(b.params)
	}
	a.Parallelism = b.workers
	for _, i := range idx {
		a.addChecked(b.updates[i], b.weights[i])
	}
	return a.Result()
}

// bufferedFedAvg is FedAvg behind a norm bound: it must see every norm
// before it knows which updates to average. Memory: the n updates and, at
// Result, one float64 per parameter; time O(n·params).
type bufferedFedAvg struct{ buffer }

// Add checks an update, measures its norm and keeps it.
func (r *bufferedFedAvg) Add(delta []float32, weight float64) error { return r.add(delta, weight) }

// Result is the weighted mean of the updates the norm bound keeps.
func (r *bufferedFedAvg) Result() ([]float32, error) {
	if len(r.updates) == 0 {
		return nil, ErrEmpty
	}
	return r.weightedMean(r.kept())
}
