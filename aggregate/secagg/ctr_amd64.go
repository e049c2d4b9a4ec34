//go:build !purego

package secagg

import (
	"encoding/binary"

	"golang.org/x/sys/cpu"
)

// haveVAES reports the VAES bit (CPUID.(EAX=7,ECX=0):ECX[9]), which
// x/sys/cpu reports only with AVX-512 (as HasAVX512VAES), though Zen 3 has
// VAES on YMM without it.
var haveVAES = func() bool {
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	_, _, ecx, _ := cpuid(7, 0)
	return ecx&(1<<9) != 0
}()

// ctrPaths lists the fused kernels this CPU runs, widest first.
var ctrPaths = func() []string {
	var p []string
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES {
		p = append(p, ctrAVX512)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasAES && haveVAES {
		p = append(p, ctrVAES256)
	}
	if cpu.X86.HasAVX && cpu.X86.HasAES {
		p = append(p, ctrAESNI)
	}
	return p
}()

// ctrPath is the fused kernel addFusedCTR uses ("" for none); tests set it
// to each of ctrPaths in turn.
var ctrPath = func() string {
	if len(ctrPaths) == 0 {
		return ""
	}
	return ctrPaths[0]
}()

// fusedCTR is the kernels' argument block (its layout is read by the
// assembly): the AES-128 round keys, once as 16 bytes and once doubled to
// 32 for YMM; counter lanes of 16 bytes (8 zero bytes, then the block index
// as a little-endian uint64, byte-swapped into big-endian CTR blocks by
// shuf); the increments between registers and between iterations; and the
// shuffle.
type fusedCTR struct {
	rk    [11][16]byte // offset 0
	ctr   [4][16]byte  // 176: lanes block+0 … block+3
	inc4  [4][16]byte  // 240: +4 a lane (ZMM: the next register)
	inc16 [4][16]byte  // 304: +16 a lane (ZMM, YMM: the next iteration)
	shuf  [4][16]byte  // 368
	inc2  [2][16]byte  // 432: +2 a lane (YMM: the next register)
	inc1  [16]byte     // 464: +1 (XMM: the next register)
	inc8  [16]byte     // 480: +8 (XMM: the next iteration)
	rk2   [11][32]byte // 496: the round keys, each twice
}

// ctrAddAVX512 adds (sub: subtracts) n words of f's keystream into dst; n
// is a multiple of 64 (ctr_amd64.s).
//
//go:noescape
func ctrAddAVX512(f *fusedCTR, dst *uint32, n int, sub bool)

// ctrAddVAES256 is ctrAddAVX512 on YMM registers; n is a multiple of 64.
//
//go:noescape
func ctrAddVAES256(f *fusedCTR, dst *uint32, n int, sub bool)

// ctrAddAESNI is ctrAddAVX512 on XMM registers; n is a multiple of 32.
//
//go:noescape
func ctrAddAESNI(f *fusedCTR, dst *uint32, n int, sub bool)

// cpuid executes CPUID with EAX = eaxArg and ECX = ecxArg.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

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
	for l := range 2 {
		binary.LittleEndian.PutUint64(f.inc2[l][8:], 2)
	}
	binary.LittleEndian.PutUint64(f.inc1[8:], 1)
	binary.LittleEndian.PutUint64(f.inc8[8:], 8)
	for r, k := range f.rk {
		copy(f.rk2[r][:16], k[:])
		copy(f.rk2[r][16:], k[:])
	}
	return f
}

// addFusedCTR adds as many whole iterations of the fused kernel's
// keystream as fit in acc (64 words; 32 for aesni) and returns how many
// words it added (0 without a kernel). The counter must not wrap its low
// 64 bits, which vectors shorter than 2^66 bytes cannot make it do.
func addFusedCTR(acc []uint32, key [16]byte, block uint64, sign int) int {
	var n int
	switch ctrPath {
	case ctrAVX512, ctrVAES256:
		n = len(acc) &^ 63
	case ctrAESNI:
		n = len(acc) &^ 31
	}
	if n == 0 {
		return 0
	}
	f := newFusedCTR(key, block)
	switch ctrPath {
	case ctrAVX512:
		ctrAddAVX512(&f, &acc[0], n, sign < 0)
	case ctrVAES256:
		ctrAddVAES256(&f, &acc[0], n, sign < 0)
	case ctrAESNI:
		ctrAddAESNI(&f, &acc[0], n, sign < 0)
	}
	return n
}
