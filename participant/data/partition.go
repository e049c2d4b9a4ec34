package data

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/accord-fl/accord/model"
)

// A partition assigns each client a list of example indices; lists are
// disjoint and together cover the dataset (except where a function says).

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x7061727469)) }

// IID shuffles the examples and deals them into clients lists whose sizes
// differ by at most one.
func IID(n, clients int, seed uint64) ([][]int, error) {
	if clients < 1 || n < clients {
		return nil, fmt.Errorf("%w: %d examples among %d clients", ErrPartition, n, clients)
	}
	perm := newRand(seed).Perm(n)
	parts := make([][]int, clients)
	for k := range clients {
		parts[k] = perm[k*n/clients : (k+1)*n/clients]
	}
	return parts, nil
}

// Pathological is McMahan et al.'s non-IID split: sort the examples by label,
// cut them into shardsPerClient·clients shards, and give each client
// shardsPerClient shards at random. Shards never straddle two labels (each
// label's examples are cut into a number of shards proportional to its
// count), so each client holds at most shardsPerClient labels.
func Pathological(labels []int32, clients, shardsPerClient int, seed uint64) ([][]int, error) {
	shards := clients * shardsPerClient
	if clients < 1 || shardsPerClient < 1 || len(labels) < shards {
		return nil, fmt.Errorf("%w: %d examples into %d clients × %d shards", ErrPartition, len(labels), clients, shardsPerClient)
	}
	rng := newRand(seed)
	byLabel := groupByLabel(labels, rng)
	if shards < len(byLabel) {
		return nil, fmt.Errorf("%w: %d shards cannot keep %d labels apart", ErrPartition, shards, len(byLabel))
	}
	// Apportion shards to labels by count (largest remainder), at least one each.
	counts := make([]int, len(byLabel))
	quota := make([]float64, len(byLabel))
	given := 0
	for i, g := range byLabel {
		quota[i] = float64(shards) * float64(len(g)) / float64(len(labels))
		counts[i] = max(1, int(quota[i]))
		given += counts[i]
	}
	order := make([]int, len(byLabel))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(quota[b]-float64(counts[b]), quota[a]-float64(counts[a]))
	})
	for i := 0; given < shards; i = (i + 1) % len(order) {
		counts[order[i]]++
		given++
	}
	for i := len(order) - 1; given > shards; i = (i - 1 + len(order)) % len(order) {
		if l := order[i]; counts[l] > 1 {
			counts[l]--
			given--
		}
	}
	var cut [][]int
	for i, g := range byLabel {
		for s := range counts[i] {
			cut = append(cut, g[s*len(g)/counts[i]:(s+1)*len(g)/counts[i]])
		}
	}
	rng.Shuffle(len(cut), func(i, j int) { cut[i], cut[j] = cut[j], cut[i] })
	parts := make([][]int, clients)
	for k := range clients {
		for _, s := range cut[k*shardsPerClient : (k+1)*shardsPerClient] {
			parts[k] = append(parts[k], s...)
		}
	}
	return parts, nil
}

// groupByLabel returns the indices of each label, labels in increasing order,
// each group shuffled.
func groupByLabel(labels []int32, rng *rand.Rand) [][]int {
	groups := map[int32][]int{}
	for i, y := range labels {
		groups[y] = append(groups[y], i)
	}
	keys := slices.Sorted(func(yield func(int32) bool) {
		for k := range groups {
			if !yield(k) {
				return
			}
		}
	})
	out := make([][]int, len(keys))
	for i, k := range keys {
		g := groups[k]
		rng.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
		out[i] = g
	}
	return out
}

// dirichletTries bounds how often Dirichlet redraws a split that left a
// client with fewer than minPerClient examples.
const dirichletTries = 1000

// Dirichlet splits each label's examples among clients in proportions drawn
// from Dirichlet(α·1): small α gives each client few labels, large α tends to
// IID. Splits leaving a client with fewer than minPerClient examples are
// redrawn.
func Dirichlet(labels []int32, clients int, alpha float64, minPerClient int, seed uint64) ([][]int, error) {
	if clients < 1 || !(alpha > 0) || math.IsInf(alpha, 0) || len(labels) < clients*minPerClient {
		return nil, fmt.Errorf("%w: %d examples among %d clients with α=%v and at least %d each", ErrPartition, len(labels), clients, alpha, minPerClient)
	}
	rng := newRand(seed)
	// A Dirichlet(α·1) draw is independent Gamma(α, 1) draws, normalised.
	gamma := distuv.Gamma{Alpha: alpha, Beta: 1, Src: rng}
	props := make([]float64, clients)
	for range dirichletTries {
		byLabel := groupByLabel(labels, rng)
		parts := make([][]int, clients)
		for _, g := range byLabel {
			var sum float64
			for k := range props {
				props[k] = gamma.Rand()
				sum += props[k]
			}
			for k := range props {
				props[k] /= sum
			}
			if !(sum > 0) { // every draw underflowed: all goes to one client
				clear(props)
				props[rng.IntN(clients)] = 1
			}
			start, acc := 0, 0.0
			for k := range clients {
				acc += props[k]
				end := int(math.Round(acc * float64(len(g))))
				if k == clients-1 {
					end = len(g)
				}
				end = min(max(end, start), len(g))
				parts[k] = append(parts[k], g[start:end]...)
				start = end
			}
		}
		if slices.IndexFunc(parts, func(p []int) bool { return len(p) < minPerClient }) < 0 {
			return parts, nil
		}
	}
	return nil, fmt.Errorf("%w: no Dirichlet(α=%v) split in %d draws gave every one of %d clients %d examples; raise α or lower the minimum",
		ErrPartition, alpha, dirichletTries, clients, minPerClient)
}

// Split shuffles ds and returns the first fraction of it as train and the
// rest as test.
func Split(ds *model.Dataset, trainFraction float64, seed uint64) (train, test *model.Dataset) {
	perm := newRand(seed).Perm(ds.Len())
	cut := int(math.Round(trainFraction * float64(ds.Len())))
	cut = min(max(cut, 0), ds.Len())
	return ds.Subset(perm[:cut]), ds.Subset(perm[cut:])
}

// LabelHistogram counts each class's examples among idx.
func LabelHistogram(labels []int32, idx []int, classes int) []int {
	h := make([]int, classes)
	for _, i := range idx {
		h[labels[i]]++
	}
	return h
}
