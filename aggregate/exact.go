package aggregate

import (
	"fmt"
	"math"
	"math/bits"
)

// exactSum accumulates Σ_k w_k·Δ_k[i] exactly, so that the sum does not
// depend on the order the updates arrive in: each product w·Δ (exact in
// float64 when w is an integer below 2²⁹, as example counts are; any finite
// weight keeps the result order-independent, a smaller one only adds a
// rounding) is rounded to a multiple of 2⁻⁶⁴ and added to a 128-bit
// two's-complement fixed-point accumulator per coordinate. Integer addition
// is associative, so any order gives the same bits; the rounding of each
// product happens before it is added, so it does not depend on the order
// either.
//
// Range and precision: fits keeps every product below 2⁴⁸ and the updates
// to 2¹⁴, so no sum reaches 2⁶² (it would wrap at 2⁶³); each product loses
// at most 2⁻⁶⁵ — less than a float32 ulp of any value above 2⁻⁴¹, far below
// what a model's weights hold. It is scalar code on every CPU (about 3 ns a
// value): the price of reproducibility.
type exactSum struct {
	lo []uint64
	hi []int64
}

func newExactSum(n int) *exactSum {
	return &exactSum{lo: make([]uint64, n), hi: make([]int64, n)}
}

// exactMaxProduct and exactMaxUpdates bound what an exact sum takes, so
// that it cannot wrap: |w·Δ[i]| < 2⁴⁸ for each of at most 2¹⁴ updates
// keeps every coordinate's sum below 2⁶².
const (
	exactMaxProduct = 1 << 48
	exactMaxUpdates = 1 << 14
)

// fits refuses an update the sum could not hold exactly: a weighted value
// of 2⁴⁸ or more, or an update past the 2¹⁴th.
func (s *exactSum) fits(delta []float32, w float64, count int) error {
	if count >= exactMaxUpdates {
		return fmt.Errorf("%w: exact aggregation sums at most %d updates a round", ErrNotFinite, exactMaxUpdates)
	}
	var m float32
	for _, d := range delta {
		m = max(m, d, -d)
	}
	if w*float64(m) >= exactMaxProduct {
		return fmt.Errorf("%w: weight × largest value %g is too large for exact aggregation (below 2^48)", ErrNotFinite, w*float64(m))
	}
	return nil
}

// two64 is 2⁶⁴ as a float64.
const two64 = 1 << 64

// add adds w·delta to the sums of coordinates off, off+1, ….
func (s *exactSum) add(delta []float32, w float64, off int) {
	for i, d := range delta {
		if d == 0 {
			continue
		}
		s.addAt(off+i, w*float64(d))
	}
}

// addAt adds x to coordinate i's sum.
func (s *exactSum) addAt(i int, x float64) {
	l, h := fixed128(x)
	var carry uint64
	s.lo[i], carry = bits.Add64(s.lo[i], l, 0)
	s.hi[i] += h + int64(carry)
}

// fixed128 returns round(x·2⁶⁴) as a 128-bit two's-complement integer
// (low word, high word); |x| < 2⁶³.
func fixed128(x float64) (uint64, int64) {
	y := math.RoundToEven(x * two64) // exact scaling by a power of two
	if math.Abs(y) < 1<<63 {
		v := int64(y)
		return uint64(v), v >> 63
	}
	// |y| ≥ 2⁶³: its ulp is at least 2¹¹, so both parts are exact.
	h := math.Floor(y / two64)
	return uint64(y - h*two64), int64(h)
}

// value returns coordinate i's sum as a float64 (one rounding).
func (s *exactSum) value(i int) float64 {
	lo, hi := s.lo[i], s.hi[i]
	neg := hi < 0
	if neg { // negate the 128-bit value
		var borrow uint64
		lo, borrow = bits.Sub64(0, lo, 0)
		hi = -hi - int64(borrow)
	}
	// |sum|·2⁶⁴ = hi·2⁶⁴ + lo; scaled back by 2⁻⁶⁴. Converting the two
	// words separately and adding rounds twice; normalising first keeps it
	// to one rounding of the top 64 significant bits.
	var v float64
	if hi == 0 {
		v = float64(lo) / two64
	} else {
		shift := 64 - bits.LeadingZeros64(uint64(hi)) // bits of hi in use
		top := uint64(hi)<<(64-shift) | lo>>shift
		if lo<<(64-shift) != 0 {
			top |= 1 // sticky bit: what is shifted out still rounds up
		}
		v = math.Ldexp(float64(top), shift-64)
	}
	if neg {
		return -v
	}
	return v
}
