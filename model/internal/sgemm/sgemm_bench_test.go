package sgemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// BenchmarkSgemm2NN times the products of one 2NN training step at batch 10
// and 64 with every kernel this machine runs, one thread, and reports
// GFLOP/s.
//
//	taskset -c 0 go test -run '^$' -bench Sgemm2NN ./model/internal/sgemm/
func BenchmarkSgemm2NN(b *testing.B) {
	SetThreads(1)
	rng := rand.New(rand.NewPCG(3, 4))
	type product struct {
		name    string
		tA, tB  blas.Transpose
		m, n, k int
	}
	var cases []product
	for _, batch := range []int{10, 64} {
		cases = append(cases,
			product{fmt.Sprintf("forward_%dx200x784", batch), blas.NoTrans, blas.NoTrans, batch, 200, 784},
			product{fmt.Sprintf("forward_%dx10x200", batch), blas.NoTrans, blas.NoTrans, batch, 10, 200},
			product{fmt.Sprintf("gradW_784x200x%d", batch), blas.Trans, blas.NoTrans, 784, 200, batch},
			product{fmt.Sprintf("gradA_%dx200x200", batch), blas.NoTrans, blas.Trans, batch, 200, 200},
		)
	}
	for _, k := range all {
		if k.why != nil {
			continue
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s/%s", k.name, c.name), func(b *testing.B) {
				if k.setThreads != nil {
					k.setThreads(1)
				}
				lda, ra := c.k, c.m
				if c.tA != blas.NoTrans {
					lda, ra = c.m, c.k
				}
				ldb, rb := c.n, c.k
				if c.tB != blas.NoTrans {
					ldb, rb = c.k, c.n
				}
				x, y, z := randSlice(rng, ra*lda), randSlice(rng, rb*ldb), make([]float32, c.m*c.n)
				for b.Loop() {
					k.impl.Sgemm(c.tA, c.tB, c.m, c.n, c.k, 1, x, lda, y, ldb, 0, z, c.n)
				}
				b.ReportMetric(2*float64(c.m*c.n*c.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
