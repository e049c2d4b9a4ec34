//go:build !linux

package aggregate

// hugePageFloats is Linux only.
func hugePageFloats(n int) []float32 { return nil }
