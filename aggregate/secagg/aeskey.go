package secagg

// sbox is the AES S-box: the multiplicative inverse in GF(2^8) followed by
// the affine map, built by walking the field with generator 3 and its
// inverse.
var sbox = func() (s [256]byte) {
	p, q := byte(1), byte(1)
	for {
		p ^= p<<1 ^ byte(int8(p)>>7)&0x1b // p·3
		q ^= q << 1                       // q/3
		q ^= q << 2
		q ^= q << 4
		if q&0x80 != 0 {
			q ^= 0x09
		}
		s[p] = q ^ (q<<1 | q>>7) ^ (q<<2 | q>>6) ^ (q<<3 | q>>5) ^ (q<<4 | q>>4) ^ 0x63
		if p == 1 {
			break
		}
	}
	s[0] = 0x63
	return s
}()

// expandKey128 is the AES-128 key schedule (FIPS 197 §5.2): the eleven
// round keys the fused CTR kernel needs, which crypto/aes does not export.
// TestFusedCTRMatchesCryptoAES checks the result against crypto/aes.
func expandKey128(key [16]byte) (rk [11][16]byte) {
	rk[0] = key
	rcon := byte(1)
	for r := 1; r <= 10; r++ {
		prev := rk[r-1]
		rot := [4]byte{sbox[prev[13]] ^ rcon, sbox[prev[14]], sbox[prev[15]], sbox[prev[12]]}
		for i := range 4 {
			rk[r][i] = prev[i] ^ rot[i]
		}
		for i := 4; i < 16; i++ {
			rk[r][i] = prev[i] ^ rk[r][i-4]
		}
		rcon = rcon<<1 ^ byte(int8(rcon)>>7)&0x1b
	}
	return rk
}
