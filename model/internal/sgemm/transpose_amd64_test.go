//go:build !purego

package sgemm

import (
	"math/rand/v2"
	"testing"
)

// TestTransposeMatchesLoop checks the blocked transpose (AVX2 8×8 blocks,
// then the edges) against the plain definition for every size up to 40×40
// with padded strides.
func TestTransposeMatchesLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for rows := 1; rows <= 40; rows++ {
		for cols := 1; cols <= 40; cols++ {
			ld := cols + rng.IntN(3)
			src := randSlice(rng, (rows-1)*ld+cols)
			got := transpose(nil, src, ld, rows, cols)
			for i := range rows {
				for j := range cols {
					if got[j*rows+i] != src[i*ld+j] {
						t.Fatalf("%d×%d, stride %d: element (%d, %d) of the transpose is %g; want %g", rows, cols, ld, j, i, got[j*rows+i], src[i*ld+j])
					}
				}
			}
		}
	}
}
