package secagg

import "encoding/binary"

// addWordsGeneric is addWords in plain Go: the fallback, and the reference
// the vector version is tested against.
func addWordsGeneric(dst []uint32, ks []byte, sign int) {
	ks = ks[:4*len(dst)]
	if sign > 0 {
		for i := range dst {
			dst[i] += binary.LittleEndian.Uint32(ks[4*i:])
		}
		return
	}
	for i := range dst {
		dst[i] -= binary.LittleEndian.Uint32(ks[4*i:])
	}
}

// addVectorGeneric adds src into dst word by word, mod 2^32.
func addVectorGeneric(dst, src []uint32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}
