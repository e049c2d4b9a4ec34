package secagg

import (
	"encoding/binary"

	"golang.org/x/sys/cpu"
)

// haveFusedCTR reports whether this CPU runs ctrAddAVX512: AVX-512 with
// vector AES (VAES) and byte shuffles.
var haveFusedCTR = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES

// fusedCTR is ctrAddAVX512's argument block (its layout is read by the
// assembly): the AES-128 round keys, four counter lanes of 16 bytes (8 zero
// bytes, then the block index as a little-endian uint64, byte-swapped into
// big-endian CTR blocks by shuf), the lane increments, and the shuffle.
type fusedCTR struct {
	rk    [11][16]byte
	ctr   [4][16]byte
	inc4  [4][16]byte
	inc16 [4][16]byte
	shuf  [4][16]byte
}

// ctrAddAVX512 adds (sub: subtracts) n words of f's keystream into dst; n
// is a multiple of 64 (ctr_amd64.s).
//
//go:noescape
func ctrAddAVX512(f *fusedCTR, dst *uint32, n int, sub bool)

// newFusedCTR prepares the keystream of key starting at AES block index
// block, as cipher.NewCTR with that big-endian counter as IV produces it.
func newFusedCTR(key [16]byte, block uint64) fusedCTR {
	f := fusedCTR{rk: expandKey128(key)}
	for l := range 4 {
		binary.LittleEndian.PutUint64(f.ctr[l][8:], block+uint64(l))
		binary.LittleEndian.PutUint64(f.inc4[l][8:], 4)
		binary.LittleEndian.PutUint64(f.inc16[l][8:], 16)
		for i := range 8 {
			f.shuf[l][i] = byte(i)
			f.shuf[l][8+i] = byte(15 - i)
		}
	}
	return f
}

// addFusedCTR adds as many whole 64-word groups of the keystream as fit in
// acc and returns how many words it added (0 without the instructions). The
// counter must not wrap its low 64 bits, which vectors shorter than 2^66
// bytes cannot make it do.
func addFusedCTR(acc []uint32, key [16]byte, block uint64, sign int) int {
	n := len(acc) &^ 63
	if !haveFusedCTR || n == 0 {
		return 0
	}
	f := newFusedCTR(key, block)
	ctrAddAVX512(&f, &acc[0], n, sign < 0)
	return n
}
