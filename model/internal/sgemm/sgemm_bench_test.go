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
	var cases []benchProduct
	for _, batch := range []int{10, 64} {
		cases = append(cases,
			benchProduct{fmt.Sprintf("forward_%dx200x784", batch), blas.NoTrans, blas.NoTrans, batch, 200, 784, 1, 0},
			benchProduct{fmt.Sprintf("forward_%dx10x200", batch), blas.NoTrans, blas.NoTrans, batch, 10, 200, 1, 0},
			benchProduct{fmt.Sprintf("gradW_784x200x%d", batch), blas.Trans, blas.NoTrans, 784, 200, batch, 1, 0},
			benchProduct{fmt.Sprintf("gradA_%dx200x200", batch), blas.NoTrans, blas.Trans, batch, 200, 200, 1, 0},
		)
	}
	benchProducts(b, cases)
}

// BenchmarkSgemmCNN times the products of one training step of the FedAvg
// CNN (cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10) with every kernel this
// machine runs, one thread, and reports GFLOP/s: the convolutions' for one
// example (model runs them an example at a time), the first fully
// connected layer's at batch 64, with beta as the training step uses it.
//
//	taskset -c 0 go test -run '^$' -bench SgemmCNN ./model/internal/sgemm/
func BenchmarkSgemmCNN(b *testing.B) {
	benchProducts(b, []benchProduct{
		{"conv1_forward_32x784x25", blas.NoTrans, blas.NoTrans, 32, 784, 25, 1e-3, 0},
		{"conv1_gradW_25x32x784", blas.NoTrans, blas.Trans, 25, 32, 784, 1e-3, 1},
		{"conv2_forward_64x196x800", blas.NoTrans, blas.NoTrans, 64, 196, 800, 1e-3, 0},
		{"conv2_gradW_800x64x196", blas.NoTrans, blas.Trans, 800, 64, 196, 1e-3, 1},
		{"conv2_gradA_800x196x64", blas.Trans, blas.NoTrans, 800, 196, 64, 1e-3, 0},
		{"fc1_forward_64x512x3136", blas.NoTrans, blas.NoTrans, 64, 512, 3136, 1e-3, 1},
		{"fc1_step_3136x512x64", blas.Trans, blas.NoTrans, 3136, 512, 64, 1e-3, 1},
		{"fc1_gradA_3136x64x512", blas.NoTrans, blas.Trans, 3136, 64, 512, 1e-3, 0},
	})
}

// benchProduct is one product z = alpha·op(x)·op(y) + beta·z of m×k by k×n.
type benchProduct struct {
	name        string
	tA, tB      blas.Transpose
	m, n, k     int
	alpha, beta float32
}

// benchProducts times each product with every kernel this machine runs,
// one thread, and reports GFLOP/s; the threads are restored after.
func benchProducts(b *testing.B, cases []benchProduct) {
	restore := threads
	SetThreads(1)
	defer SetThreads(restore)
	rng := rand.New(rand.NewPCG(3, 4))
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
				x, y, z := randSlice(rng, ra*lda), randSlice(rng, rb*ldb), randSlice(rng, c.m*c.n)
				for b.Loop() {
					k.impl.Sgemm(c.tA, c.tB, c.m, c.n, c.k, c.alpha, x, lda, y, ldb, c.beta, z, c.n)
				}
				b.ReportMetric(2*float64(c.m*c.n*c.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
