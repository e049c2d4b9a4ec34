//go:build !amd64 || purego

package sgemm

// asmKernels: the assembly kernels exist for amd64 only (and not with the
// build tag purego).
func asmKernels() []*kernel { return nil }
