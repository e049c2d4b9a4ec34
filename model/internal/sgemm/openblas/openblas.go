//go:build openblas && cgo

package openblas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
*/
import "C"

// SetThreads sets the threads one OpenBLAS call may use.
func SetThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

func transpose(trans bool) C.enum_CBLAS_TRANSPOSE {
	if trans {
		return C.CblasTrans
	}
	return C.CblasNoTrans
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// op(X) being X transposed when transX is true. The caller checks the
// shapes against the slices (m, n > 0).
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	var pa, pb *float32
	if k > 0 {
		pa, pb = &a[0], &b[0]
	}
	C.cblas_sgemm(C.CblasRowMajor, transpose(transA), transpose(transB), C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(pa), C.blasint(lda), (*C.float)(pb), C.blasint(ldb),
		C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}
