package sgemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// BenchmarkSgemm2NN times the products of one 2NN training step at batch 64,
// one thread, and reports GFLOP/s.
func BenchmarkSgemm2NN(b *testing.B) {
	SetThreads(1)
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name    string
		tA, tB  blas.Transpose
		m, n, k int
	}{
		{"forward_64x784x200", blas.NoTrans, blas.NoTrans, 64, 200, 784},
		{"gradW_784x64x200", blas.Trans, blas.NoTrans, 784, 200, 64},
		{"gradA_64x200x200", blas.NoTrans, blas.Trans, 64, 200, 200},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("%s/%s", Name(), c.name), func(b *testing.B) {
			lda, ra := c.k, c.m
			if c.tA != blas.NoTrans {
				lda, ra = c.m, c.k
			}
			ldb, rb := c.n, c.k
			if c.tB != blas.NoTrans {
				ldb, rb = c.k, c.n
			}
			x, y, z := randSlice(rng, ra*lda), randSlice(rng, rb*ldb), make([]float32, c.m*c.n)
			impl := blas32.Implementation()
			for b.Loop() {
				impl.Sgemm(c.tA, c.tB, c.m, c.n, c.k, 1, x, lda, y, ldb, 0, z, c.n)
			}
			b.ReportMetric(2*float64(c.m*c.n*c.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
