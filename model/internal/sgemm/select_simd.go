//go:build goexperiment.simd && amd64 && !openblas

package sgemm

import (
	"simd/archsimd"

	"gonum.org/v1/gonum/blas/blas32"
)

// kernelName is "avx512" once init has found the CPU able to run the kernel.
var kernelName = "gonum"

func init() {
	if archsimd.X86.AVX512() {
		kernelName = "avx512"
		blas32.Use(avx512Impl{})
	}
}

func setKernelThreads(int) {}
