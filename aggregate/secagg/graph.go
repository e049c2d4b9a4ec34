package secagg

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"slices"
)

// neighbours returns each client's neighbours (indexes 0…n−1, itself
// excluded) on a Harary graph of degree k with node labels randomly permuted
// from seed: nodes on a circle, each linked to its k/2 predecessors and k/2
// successors. k ≥ n−1 gives the complete graph. k is rounded up to even.
func neighbours(n, k int, seed uint64) [][]int {
	out := make([][]int, n)
	if k >= n-1 {
		for u := range n {
			out[u] = completeNeighbours(n, u)
		}
		return out
	}
	perm := graphPerm(n, seed)
	for pos, u := range perm {
		out[u] = circleNeighbours(perm, pos, k)
	}
	return out
}

// neighboursOf is neighbours(n, k, seed)[u], without the others': a
// client needs only its own, and the whole graph of a cohort of 1,000 took
// each client a millisecond.
func neighboursOf(n, k int, seed uint64, u int) []int {
	if k >= n-1 {
		return completeNeighbours(n, u)
	}
	perm := graphPerm(n, seed)
	return circleNeighbours(perm, slices.Index(perm, u), k)
}

// graphPerm is the graph's labelling: the client at each position on the
// circle.
func graphPerm(n int, seed uint64) []int {
	h := fnv.New64a()
	h.Write(binary.LittleEndian.AppendUint64(nil, seed))
	return rand.New(rand.NewPCG(h.Sum64(), seed)).Perm(n) // position → client
}

// circleNeighbours are the clients within k/2 (k rounded up to even)
// positions of position pos on the circle perm, sorted.
func circleNeighbours(perm []int, pos, k int) []int {
	n, half := len(perm), (k+1)/2
	out := make([]int, 0, 2*half)
	for d := 1; d <= half; d++ {
		out = append(out, perm[(pos+d)%n], perm[(pos-d+n)%n])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// completeNeighbours is every client of n but u.
func completeNeighbours(n, u int) []int {
	out := make([]int, 0, n-1)
	for v := range n {
		if v != u {
			out = append(out, v)
		}
	}
	return out
}
