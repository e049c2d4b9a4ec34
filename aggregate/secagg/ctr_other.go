//go:build !amd64

package secagg

// addFusedCTR has no vector kernel on this architecture: it adds nothing.
func addFusedCTR(acc []uint32, key [16]byte, block uint64, sign int) int { return 0 }

// haveFusedCTR: no vector AES kernel here.
const haveFusedCTR = false
