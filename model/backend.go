package model

import "github.com/accord-fl/accord/model/internal/sgemm"

// Backend names the matrix-multiply kernel in use: "openblas" (cgo build with
// -tags openblas), "avx512" or "avx2" (amd64 assembly, chosen at run time
// from the CPU's features), or "gonum" (elsewhere). The environment variable
// ACCORD_KERNEL forces one of them at start-up; see UseBackend.
func Backend() string { return sgemm.Name() }

// UseBackend installs the named kernel ("gonum", "avx2", "avx512" or
// "openblas") for the whole process, as ACCORD_KERNEL does, and returns an
// error naming the reason when this binary or this CPU cannot run it. It
// must not run concurrently with training.
func UseBackend(name string) error { return sgemm.Use(name) }

// Backends lists the kernels this binary can run on this CPU, the preferred
// first.
func Backends() []string { return sgemm.Available() }

// SetThreads sets how many threads one matrix product may use.
func SetThreads(n int) { sgemm.SetThreads(n) }
