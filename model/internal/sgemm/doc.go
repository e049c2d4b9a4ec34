// Package sgemm chooses the float32 matrix-multiply kernel that gonum's blas32
// package uses for the whole process, and installs it with blas32.Use when the
// package is initialised.
//
// Three kernels exist, picked by build tags and a run-time CPU check:
//
//   - "openblas": OpenBLAS through cgo (build tag openblas, needs Debian's
//     libopenblas-dev). The fastest on this project's machines.
//   - "avx512": a pure-Go AVX-512 kernel written with the experimental
//     simd/archsimd package (GOEXPERIMENT=simd, amd64), used only when the CPU
//     reports AVX-512. No cgo.
//   - "gonum": gonum's own pure-Go implementation, everywhere else.
//
// Only Sgemm is replaced; every other BLAS routine stays gonum's.
package sgemm

import "runtime"

// threads is the number of goroutines (or OpenBLAS threads) one Sgemm call may
// use. It starts at GOMAXPROCS.
var threads = runtime.GOMAXPROCS(0)

// Name reports which kernel is installed: "openblas", "avx512" or "gonum".
func Name() string { return kernelName }

// SetThreads sets how many threads one matrix product may use (n < 1 means 1).
// Kernels that cannot be limited (gonum's own, which follows GOMAXPROCS)
// ignore it.
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	threads = n
	setKernelThreads(n)
}
