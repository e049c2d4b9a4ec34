package aggregate

import (
	"cmp"
	"fmt"
	"slices"
)

// krum is Blanchard et al.'s Krum and Multi-Krum (NeurIPS 2017). With n
// updates and f tolerated Byzantine ones (n > 2f+2), score(i) is the sum of
// the squared L2 distances from update i to its n−f−2 nearest others.
// Krum returns the lowest-scoring update (ties: the one added first).
// Multi-Krum averages the m lowest-scoring updates (m = n − f by default)
// weighted by their weights, like FedAvg: the scores have already chosen
// whom to trust, and among them the weights say how much each trained.
// Krum itself ignores the weights.
//
// Distances are measured as updates arrive, krumGroup at a time: each new
// group is compared with every update before it, a block of coordinates at
// a time, so an earlier update is read once a group rather than once an
// update. Memory: the n updates (buffer) and n²/2 float64 distances. Time:
// O(n²·params) for the distances (spread over the round), and O(n² log n)
// for the scores at Result.
type krum struct {
	buffer
	f, m  int
	multi bool
	// dist[i][j], j < i, is the squared L2 distance between updates i and
	// j, complete for i < measured.
	dist     [][]float64
	measured int
}

// krumGroup is the number of new updates measured together.
const krumGroup = 8

// krumBlock is the number of coordinates compared at a time: a group's
// blocks (8 × 16 KB) stay in L2 while the earlier updates stream past.
const krumBlock = 4096

// Add checks an update and keeps it; every krumGroup updates it measures
// their distances to all earlier ones.
func (r *krum) Add(delta []float32, weight float64) error {
	if err := r.add(delta, weight); err != nil {
		return err
	}
	r.dist = append(r.dist, make([]float64, len(r.updates)-1))
	if len(r.updates)-r.measured >= krumGroup {
		r.measure()
	}
	return nil
}

// measure completes dist for the updates added since the last call. The
// distance between i and j is the sum, over krumBlock blocks in order, of
// their blocks' sqDist, whichever goroutine computes it.
func (r *krum) measure() {
	n, first := len(r.updates), r.measured
	if first == n {
		return
	}
	workers := r.workers
	if n*r.params < minSpan {
		workers = 1
	}
	// Goroutines split the earlier updates j; each compares its j with
	// every new i > j.
	parallel(workers, n-1, 1, 1, func(jlo, jhi int) {
		for c0 := 0; c0 < r.params; c0 += krumBlock {
			c1 := min(c0+krumBlock, r.params)
			for j := jlo; j < jhi; j++ {
				uj := r.updates[j][c0:c1]
				for i := max(first, j+1); i < n; i++ {
					r.dist[i][j] += kernels.sqDist(r.updates[i][c0:c1], uj)
				}
			}
		}
	})
	r.measured = n
}

// Result is the Krum choice, or the Multi-Krum mean, among the updates the
// norm bound keeps.
func (r *krum) Result() ([]float32, error) {
	if len(r.updates) == 0 {
		return nil, ErrEmpty
	}
	idx := r.kept()
	n := len(idx)
	if n <= 2*r.f+2 {
		return nil, fmt.Errorf("%w: krum with f = %d needs more than %d updates; it has %d", ErrTooFew, r.f, 2*r.f+2, n)
	}
	m := 1
	if r.multi {
		if m = r.m; m == 0 {
			m = n - r.f
		}
		if m > n {
			return nil, fmt.Errorf("%w: multi_krum averages m = %d updates; it has %d", ErrTooFew, m, n)
		}
	}
	r.measure()
	d := func(i, j int) float64 {
		if i < j {
			i, j = j, i
		}
		return r.dist[i][j]
	}
	// score[a] is idx[a]'s: the n−f−2 smallest distances, added smallest
	// first.
	score := make([]float64, n)
	near := make([]float64, 0, n-1)
	for a, i := range idx {
		near = near[:0]
		for _, j := range idx {
			if j != i {
				near = append(near, d(i, j))
			}
		}
		slices.Sort(near)
		for _, x := range near[:n-r.f-2] {
			score[a] += x
		}
	}
	order := make([]int, n) // positions in idx, best first; ties: added first
	for a := range order {
		order[a] = a
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(score[a], score[b]) })
	if !r.multi {
		return slices.Clone(r.updates[idx[order[0]]]), nil
	}
	chosen := make([]int, m)
	for k, a := range order[:m] {
		chosen[k] = idx[a]
	}
	slices.Sort(chosen) // average in the order added
	return r.weightedMean(chosen)
}
