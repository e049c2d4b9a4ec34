package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"runtime"
	"sync"
	"unsafe"
)

// prgBlock is how many keystream bytes are generated per call into the
// accumulator: large enough to amortise the call, small enough for L1.
const prgBlock = 4096

// zeros is the plaintext whose encryption is the keystream.
var zeros [prgBlock]byte

// The fused kernels (ctr_amd64.s, amd64 without the build tag purego)
// generate the AES-128-CTR keystream in registers and add it straight into
// the accumulator, never storing it. One runs per process, the widest the
// CPU has:
//
//	avx512   VAES on ZMM: 4 blocks a register, 16 an iteration (AVX-512F/BW + VAES)
//	vaes256  VAES on YMM: 2 blocks a register, 16 an iteration (AVX2 + VAES: AMD Zen 3+, Intel Ice Lake+)
//	aesni    AES-NI on XMM: 1 block a register, 8 an iteration (AES + AVX: Intel since Sandy Bridge, AMD since Bulldozer)
//
// Without AES-NI, Go's CTR (addPRGAtGeneric) does the work.
const (
	ctrAVX512  = "avx512"
	ctrVAES256 = "vaes256"
	ctrAESNI   = "aesni"
)

// mask is one pseudorandom vector to add (sign = +1) or subtract (−1).
type mask struct {
	seed [32]byte
	sign int
}

// addPRG adds (sign = +1) or subtracts (sign = −1) the mask expanded from
// seed into acc, mod 2^32: AES-128-CTR keyed by SHA-256(seed), read as
// little-endian uint32 words.
func addPRG(acc []uint32, seed [32]byte, sign int) { addPRGAt(acc, 0, seed, sign) }

// prgKey is the AES-128 key of seed's mask.
func prgKey(seed [32]byte) [16]byte {
	h := sha256.Sum256(append([]byte("accord secagg prg"), seed[:]...))
	return [16]byte(h[:16])
}

// addPRGAt adds the words offset … offset+len(acc)−1 of seed's mask into
// acc; offset is a multiple of 4 (one AES block), so CTR starts at block
// offset/4. No vector-sized buffer is allocated.
func addPRGAt(acc []uint32, offset int, seed [32]byte, sign int) {
	key := prgKey(seed)
	// The fused kernel generates the keystream in registers and adds it
	// directly; Go's CTR covers what it does not (no AES-NI, or the tail
	// of fewer than 64 words, 32 for aesni).
	done := addFusedCTR(acc, key, uint64(offset/4), sign)
	addPRGAtGeneric(acc[done:], offset+done, key, sign)
}

// addPRGAtGeneric is addPRGAt with Go's AES-CTR and AES key key:
// keystream into one small buffer, then added into acc.
func addPRGAtGeneric(acc []uint32, offset int, key [16]byte, sign int) {
	if len(acc) == 0 {
		return
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 16-byte key cannot fail
	}
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(offset/4))
	stream := cipher.NewCTR(block, iv[:])
	// The keystream buffer starts on a cache line, so the vector loads in
	// addWords never straddle two.
	var raw [prgBlock + 64]byte
	off := int(-uintptr(unsafe.Pointer(&raw[0])) & 63)
	buf := raw[off : off+prgBlock]
	for start := 0; start < len(acc); start += prgBlock / 4 {
		n := min(prgBlock/4, len(acc)-start)
		ks := buf[:4*n]
		stream.XORKeyStream(ks, zeros[:4*n])
		addWords(acc[start:start+n], ks, sign)
	}
}

// parallelWords is the vector length from which expanding masks is split
// over the cores.
const parallelWords = 1 << 14

// addMasks adds every mask into acc, spreading the work over the cores:
// each core takes a contiguous slice of the vector and expands every mask's
// keystream for that slice only.
func addMasks(acc []uint32, masks []mask) {
	workers := min(runtime.GOMAXPROCS(0), len(acc)/parallelWords)
	if workers <= 1 || len(masks) == 0 {
		for _, m := range masks {
			addPRG(acc, m.seed, m.sign)
		}
		return
	}
	per := (len(acc)/workers + 3) &^ 3 // whole AES blocks
	var wg sync.WaitGroup
	for lo := 0; lo < len(acc); lo += per {
		part := acc[lo:min(lo+per, len(acc))]
		wg.Go(func() {
			for _, m := range masks {
				addPRGAt(part, lo, m.seed, m.sign)
			}
		})
	}
	wg.Wait()
}
