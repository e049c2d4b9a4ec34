//go:build !openblas && !(goexperiment.simd && amd64)

package sgemm

const kernelName = "gonum"

func setKernelThreads(int) {}
