package secagg

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// Shamir secret sharing over GF(p), p = 2^61 − 1. A 32-byte secret is split
// into five 7-byte limbs, each shared with its own polynomial of degree t−1;
// a share is the five evaluations at the recipient's x.

const prime = 1<<61 - 1

// Limbs is the number of field elements a 32-byte secret is split into
// (5 × 7 bytes ≥ 32).
const Limbs = 5

func addMod(a, b uint64) uint64 {
	s := a + b
	if s >= prime {
		s -= prime
	}
	return s
}

func subMod(a, b uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + prime - b
}

func mulMod(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a·b = hi·2^64 + lo; with p = 2^61 − 1, 2^61 ≡ 1.
	r := (lo & prime) + (lo >> 61) + (hi << 3)
	for r >= prime {
		r -= prime
	}
	return r
}

func powMod(a, e uint64) uint64 {
	r := uint64(1)
	for e > 0 {
		if e&1 == 1 {
			r = mulMod(r, a)
		}
		a = mulMod(a, a)
		e >>= 1
	}
	return r
}

func invMod(a uint64) uint64 { return powMod(a, prime-2) }

// Share is one recipient's evaluation of the limb polynomials at X (the
// field is GF(2^61−1); a 32-byte secret is Limbs limbs).
type Share struct {
	X uint32
	Y [Limbs]uint64
}

// inField reports whether every evaluation is a field element.
func (s Share) inField() bool {
	for _, y := range s.Y {
		if y >= prime {
			return false
		}
	}
	return true
}

func randField() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		v := binary.LittleEndian.Uint64(b[:]) & prime
		if v < prime {
			return v, nil
		}
	}
}

// splitSecret shares secret among xs (distinct, non-zero) so that any t
// shares rebuild it.
func splitSecret(secret [32]byte, t int, xs []uint32) ([]Share, error) {
	if t < 1 || t > len(xs) {
		return nil, fmt.Errorf("threshold %d for %d shares", t, len(xs))
	}
	var padded [Limbs * 7]byte
	copy(padded[:], secret[:])
	coeffs := make([][]uint64, Limbs)
	for l := range Limbs {
		var b [8]byte
		copy(b[:7], padded[7*l:7*l+7])
		coeffs[l] = make([]uint64, t)
		coeffs[l][0] = binary.LittleEndian.Uint64(b[:])
		for i := 1; i < t; i++ {
			v, err := randField()
			if err != nil {
				return nil, err
			}
			coeffs[l][i] = v
		}
	}
	out := make([]Share, len(xs))
	for i, x := range xs {
		out[i].X = x
		for l := range Limbs {
			// Horner's rule.
			var y uint64
			for j := t - 1; j >= 0; j-- {
				y = addMod(mulMod(y, uint64(x)), coeffs[l][j])
			}
			out[i].Y[l] = y
		}
	}
	return out, nil
}

// lagrangeCache keeps the Lagrange coefficients at 0 of the x sets seen:
// the server rebuilds many clients' secrets from shares held by the same
// survivors, so one set of coefficients serves them all.
type lagrangeCache struct {
	mu     sync.Mutex
	coeffs map[string][]uint64
}

// lagrangeAtZero returns, for distinct non-zero xs, the coefficients c_i
// with f(0) = Σ c_i·f(x_i) for every polynomial f of degree < len(xs).
func lagrangeAtZero(xs []uint64) []uint64 {
	out := make([]uint64, len(xs))
	for i, xi := range xs {
		num, den := uint64(1), uint64(1)
		for j, xj := range xs {
			if i != j {
				num = mulMod(num, xj)
				den = mulMod(den, subMod(xj, xi))
			}
		}
		out[i] = mulMod(num, invMod(den))
	}
	return out
}

func (c *lagrangeCache) coefficients(xs []uint64) []uint64 {
	key := make([]byte, 0, 4*len(xs))
	for _, x := range xs {
		key = binary.LittleEndian.AppendUint32(key, uint32(x))
	}
	c.mu.Lock()
	co, ok := c.coeffs[string(key)]
	c.mu.Unlock()
	if !ok {
		co = lagrangeAtZero(xs)
		c.mu.Lock()
		if c.coeffs == nil || len(c.coeffs) > 1024 {
			c.coeffs = map[string][]uint64{}
		}
		c.coeffs[string(key)] = co
		c.mu.Unlock()
	}
	return co
}

// combine rebuilds a secret from t or more shares by Lagrange
// interpolation at 0 (the first t are used).
func (c *lagrangeCache) combine(shares []Share, t int) ([32]byte, error) {
	var secret [32]byte
	if len(shares) < t {
		return secret, fmt.Errorf("%d shares; need %d", len(shares), t)
	}
	shares = shares[:t]
	seen := map[uint32]bool{}
	xs := make([]uint64, t)
	for i, s := range shares {
		if s.X == 0 || seen[s.X] {
			return secret, errors.New("shares with repeated or zero x")
		}
		seen[s.X] = true
		xs[i] = uint64(s.X)
	}
	co := c.coefficients(xs)
	var padded [Limbs * 7]byte
	for l := range Limbs {
		var acc uint64
		for i, si := range shares {
			acc = addMod(acc, mulMod(si.Y[l], co[i]))
		}
		if acc >= 1<<56 {
			return secret, errors.New("shares do not rebuild a secret (inconsistent shares)")
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], acc)
		copy(padded[7*l:], b[:7])
	}
	copy(secret[:], padded[:32])
	return secret, nil
}
