//go:build openblas && cgo

package sgemm

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/accord-fl/accord/model/internal/sgemm/openblas"
)

// openblasKernels is OpenBLAS, which runs wherever the binary was built.
func openblasKernels() []*kernel {
	return []*kernel{{name: "openblas", impl: openblasImpl{}, setThreads: openblas.SetThreads}}
}

// openblasImpl is gonum's float32 BLAS with Sgemm handed to OpenBLAS.
type openblasImpl struct{ gonum.Implementation }

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (openblasImpl) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	openblas.Sgemm(tA != blas.NoTrans, tB != blas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
