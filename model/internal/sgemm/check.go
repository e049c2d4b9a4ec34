package sgemm

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
)

// checkGemm panics, as gonum's own Sgemm does, when the slices are too short
// for the shapes: the replacement kernels read memory gonum would have
// refused to touch, so they must refuse it too.
func checkGemm(tA, tB blas.Transpose, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	rowsA, colsA := m, k
	if tA != blas.NoTrans {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if tB != blas.NoTrans {
		rowsB, colsB = n, k
	}
	switch {
	case m < 0 || n < 0 || k < 0:
		panic(fmt.Sprintf("sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	case lda < max(1, colsA) || ldb < max(1, colsB) || ldc < max(1, n):
		panic("sgemm: bad leading dimension")
	case rowsA > 0 && colsA > 0 && len(a) < lda*(rowsA-1)+colsA:
		panic("sgemm: a is too short")
	case rowsB > 0 && colsB > 0 && len(b) < ldb*(rowsB-1)+colsB:
		panic("sgemm: b is too short")
	case len(c) < ldc*(m-1)+n:
		panic("sgemm: c is too short")
	}
}
