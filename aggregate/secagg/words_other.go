//go:build !amd64 || purego

package secagg

// addWords adds (sign > 0) or subtracts the little-endian words of ks into
// dst, mod 2^32.
func addWords(dst []uint32, ks []byte, sign int) { addWordsGeneric(dst, ks, sign) }

// addVector adds src into dst word by word, mod 2^32.
func addVector(dst, src []uint32) { addVectorGeneric(dst, src) }
