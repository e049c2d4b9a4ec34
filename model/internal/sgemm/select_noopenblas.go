//go:build !(openblas && cgo)

package sgemm

// openblasKernels: this binary was built without OpenBLAS.
func openblasKernels() []*kernel { return nil }
