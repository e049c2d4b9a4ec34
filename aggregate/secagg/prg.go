package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
)

// prgBlock is how many keystream bytes are generated per call into the
// accumulator: large enough to amortise the call, small enough for L1.
const prgBlock = 4096

// addPRG adds (sign = +1) or subtracts (sign = −1) the mask expanded from
// seed into acc, mod 2^32: AES-128-CTR keyed by SHA-256(seed), read as
// little-endian uint32 words. It allocates one small buffer, never a
// vector-sized one.
func addPRG(acc []uint32, seed [32]byte, sign int) {
	key := sha256.Sum256(append([]byte("accord secagg prg"), seed[:]...))
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		panic(err) // a 16-byte key cannot fail
	}
	var iv [aes.BlockSize]byte
	stream := cipher.NewCTR(block, iv[:])
	var buf [prgBlock]byte
	for start := 0; start < len(acc); start += prgBlock / 4 {
		n := min(prgBlock/4, len(acc)-start)
		ks := buf[:4*n]
		clear(ks)
		stream.XORKeyStream(ks, ks)
		dst := acc[start : start+n]
		if sign > 0 {
			for i := range dst {
				dst[i] += binary.LittleEndian.Uint32(ks[4*i:])
			}
		} else {
			for i := range dst {
				dst[i] -= binary.LittleEndian.Uint32(ks[4*i:])
			}
		}
	}
}
