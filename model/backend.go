package model

import "github.com/accord-fl/accord/model/internal/sgemm"

// Backend names the matrix-multiply kernel in use: "openblas" (cgo build with
// -tags openblas), "avx512" (GOEXPERIMENT=simd on an AVX-512 CPU) or "gonum".
func Backend() string { return sgemm.Name() }

// SetThreads sets how many threads one matrix product may use.
func SetThreads(n int) { sgemm.SetThreads(n) }
