//go:build openblas && cgo

package sgemm

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
*/
import "C"

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

const kernelName = "openblas"

func init() {
	C.openblas_set_num_threads(C.int(threads))
	blas32.Use(openblasImpl{})
}

func setKernelThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

// openblasImpl is gonum's float32 BLAS with Sgemm handed to OpenBLAS.
type openblasImpl struct{ gonum.Implementation }

func transpose(t blas.Transpose) C.enum_CBLAS_TRANSPOSE {
	if t == blas.NoTrans {
		return C.CblasNoTrans
	}
	return C.CblasTrans
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (openblasImpl) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	var pa, pb *float32
	if k > 0 {
		pa, pb = &a[0], &b[0]
	}
	C.cblas_sgemm(C.CblasRowMajor, transpose(tA), transpose(tB), C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(pa), C.blasint(lda), (*C.float)(pb), C.blasint(ldb),
		C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}
