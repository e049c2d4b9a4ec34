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
			for v := range n {
				if v != u {
					out[u] = append(out[u], v)
				}
			}
		}
		return out
	}
	h := fnv.New64a()
	h.Write(binary.LittleEndian.AppendUint64(nil, seed))
	perm := rand.New(rand.NewPCG(h.Sum64(), seed)).Perm(n) // position → client
	half := (k + 1) / 2
	for pos := range n {
		u := perm[pos]
		for d := 1; d <= half; d++ {
			out[u] = append(out[u], perm[(pos+d)%n], perm[(pos-d+n)%n])
		}
		slices.Sort(out[u])
		out[u] = slices.Compact(out[u])
	}
	return out
}
