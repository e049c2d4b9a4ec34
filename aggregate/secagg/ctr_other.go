//go:build !amd64 || purego

package secagg

// addFusedCTR has no vector kernel on this architecture (or with the build
// tag purego): it adds nothing, and Go's CTR does the work.
func addFusedCTR(acc []uint32, key [16]byte, block uint64, sign int) int { return 0 }

// ctrPaths: no fused kernel here.
var ctrPaths []string

// ctrPath is always "" here.
var ctrPath string
