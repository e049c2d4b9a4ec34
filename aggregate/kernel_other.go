//go:build !amd64 || purego

package aggregate

func bestKernels() *kernelSet { return genericKernels }

// kernelSets lists every set this machine runs, the generic one first.
func kernelSets() []*kernelSet { return []*kernelSet{genericKernels} }
