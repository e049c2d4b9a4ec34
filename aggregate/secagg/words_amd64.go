//go:build !purego

package secagg

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// addWordsAVX2 and subWordsAVX2 add or subtract src into dst, n words, n a
// multiple of 32 (words_amd64.s).
//
//go:noescape
func addWordsAVX2(dst, src *uint32, n int)

//go:noescape
func subWordsAVX2(dst, src *uint32, n int)

var haveAVX2 = cpu.X86.HasAVX2

// addWords adds (sign > 0) or subtracts the little-endian words of ks into
// dst, mod 2^32. The Go compiler does not vectorise this loop, and at ~5
// GB/s it cost more than the AES keystream itself; eight lanes at a time it
// is nearly free.
func addWords(dst []uint32, ks []byte, sign int) {
	n := 0
	if haveAVX2 && len(dst) >= 32 {
		n = len(dst) &^ 31
		src := (*uint32)(unsafe.Pointer(unsafe.SliceData(ks[:4*n])))
		if sign > 0 {
			addWordsAVX2(unsafe.SliceData(dst), src, n)
		} else {
			subWordsAVX2(unsafe.SliceData(dst), src, n)
		}
	}
	addWordsGeneric(dst[n:], ks[4*n:], sign)
}

// addVector adds src into dst word by word, mod 2^32: addWords over src's
// bytes (amd64 is little endian).
func addVector(dst, src []uint32) {
	src = src[:len(dst)]
	addWords(dst, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), 4*len(src)), +1)
}
