package dp

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
)

// maxDiscreteSigma bounds SampleDiscreteGaussian's σ: far beyond any noise
// a 32-bit secure-aggregation sum can carry, and small enough that the
// discrete Laplace proposals stay within int64.
const maxDiscreteSigma = 1 << 40

// SampleDiscreteGaussian returns one draw from the discrete Gaussian
// N_Z(0, σ²), which gives each integer k probability proportional to
// exp(−k²/(2σ²)), using the exact rejection sampler of Canonne, Kamath &
// Steinke 2020 (Algorithm 3): discrete Laplace proposals Y of scale
// t = ⌊σ⌋+1, each accepted with probability exp(−(|Y| − σ²/t)²/(2σ²)),
// every Bernoulli(exp(−γ)) drawn by their Algorithm 1 from uniform
// integers. All arithmetic is on integers and exact rationals (σ² is the
// exact square of the float64 sigma), so no floating-point rounding touches
// the output distribution: given a perfect rng the samples are exactly
// N_Z(0, σ²). rng should be a CSPRNG (see NewRNG) when the noise protects
// privacy.
//
// The variance is σ² within a relative 2·10⁻⁷ for σ ≥ 1 and 10⁻¹⁵ for
// σ ≥ 1.5, but below σ² for small σ (0.215 for σ = 0.5). sigma = 0
// returns 0; a negative, NaN or infinite sigma, or one above 2^40, panics,
// since it would release unprotected data: validate first
// (DistributedPlan.Validate does). Each call sets the sampler up afresh;
// Encode sets it up once per vector.
func SampleDiscreteGaussian(sigma float64, rng *rand.Rand) int64 {
	if sigma == 0 {
		return 0
	}
	return newDiscreteGaussian(sigma).sample(rng)
}

// discreteGaussian samples N_Z(0, σ²) for one σ; it keeps scratch space and
// is not safe for concurrent use.
type discreteGaussian struct {
	zero bool
	t    uint64 // the discrete Laplace scale, ⌊σ⌋+1
	// Acceptance: γ = (|Y|·t·den − num)² / (2·num·den·t²), with σ² = num/den.
	num, tden, gammaDen big.Int
	// scratch
	diff, p, ip, rem, w, r, sh big.Int
}

func newDiscreteGaussian(sigma float64) *discreteGaussian {
	if !(sigma >= 0) || sigma > maxDiscreteSigma {
		panic(fmt.Sprintf("dp: discrete Gaussian with standard deviation %v", sigma))
	}
	g := &discreteGaussian{zero: sigma == 0}
	if g.zero {
		return g
	}
	g.t = uint64(math.Floor(sigma)) + 1
	var s big.Rat
	s.SetFloat64(sigma) // exact: a float64 is a dyadic rational
	s.Mul(&s, &s)
	g.num.Set(s.Num())
	den := s.Denom()
	tb := new(big.Int).SetUint64(g.t)
	g.tden.Mul(tb, den)
	g.gammaDen.Mul(&g.num, den)
	g.gammaDen.Mul(&g.gammaDen, tb)
	g.gammaDen.Mul(&g.gammaDen, tb)
	g.gammaDen.Lsh(&g.gammaDen, 1)
	return g
}

func (g *discreteGaussian) sample(rng *rand.Rand) int64 {
	if g.zero {
		return 0
	}
	for {
		y := g.laplace(rng)
		ay := y
		if ay < 0 {
			ay = -ay
		}
		// p = (|Y|·t·den − num)²; math/big reuses z's memory only when z
		// aliases neither operand.
		g.diff.SetInt64(ay)
		g.p.Mul(&g.diff, &g.tden)
		g.diff.Sub(&g.p, &g.num)
		g.p.Mul(&g.diff, &g.diff)
		if g.bernoulliExpRat(rng) {
			return y
		}
	}
}

// laplace samples the discrete Laplace distribution with scale t,
// P(x) ∝ exp(−|x|/t) (Canonne, Kamath & Steinke, Algorithm 2 with s = 1).
func (g *discreteGaussian) laplace(rng *rand.Rand) int64 {
	t := g.t
	for {
		u := rng.Uint64N(t)
		if !bernoulliExpFrac(u, t, rng) {
			continue
		}
		var v uint64
		for bernoulliExpFrac(1, 1, rng) {
			v++
		}
		x := u + t*v // t ≤ 2^40+1 and v is geometric: no overflow in practice
		if x > math.MaxInt64/2 {
			continue // a draw with probability below e^−(2^22): never
		}
		neg := rng.Uint64()&1 == 1
		if neg && x == 0 {
			continue
		}
		if neg {
			return -int64(x)
		}
		return int64(x)
	}
}

// bernoulliExpFrac returns true with probability exp(−num/den) for
// 0 ≤ num ≤ den (Algorithm 1 of Canonne, Kamath & Steinke): count the
// successes of Bernoulli(γ/k) for k = 1, 2, … up to the first failure;
// the count is even with probability e^−γ. Bernoulli(num/(den·k)) is a
// uniform integer a + den·b below den·k, that is b = 0 and a < num.
func bernoulliExpFrac(num, den uint64, rng *rand.Rand) bool {
	k := uint64(1)
	for {
		if rng.Uint64N(k) != 0 || rng.Uint64N(den) >= num {
			return k%2 == 1
		}
		k++
	}
}

// bernoulliExpRat returns true with probability exp(−γ), γ = g.p/g.gammaDen:
// e^−⌊γ⌋ as ⌊γ⌋ Bernoulli(e^−1) draws that must all succeed, then
// e^−(γ−⌊γ⌋) by Algorithm 1 with exact big-integer comparisons.
func (g *discreteGaussian) bernoulliExpRat(rng *rand.Rand) bool {
	g.ip.QuoRem(&g.p, &g.gammaDen, &g.rem)
	whole := uint64(math.MaxUint64)
	if g.ip.IsUint64() {
		whole = g.ip.Uint64()
	}
	for range whole {
		if !bernoulliExpFrac(1, 1, rng) {
			return false
		}
	}
	if g.rem.Sign() == 0 {
		return true
	}
	k := uint64(1)
	for {
		// Bernoulli(rem/(gammaDen·k)) = Bernoulli(1/k) ∧ Bernoulli(rem/gammaDen).
		if rng.Uint64N(k) != 0 || !g.bernoulliRat(rng) {
			return k%2 == 1
		}
		k++
	}
}

// bernoulliRat returns true with probability rem/gammaDen (< 1), comparing
// a uniform real in [0, 1), drawn 64 bits at a time, with the fraction's
// binary expansion until they differ.
func (g *discreteGaussian) bernoulliRat(rng *rand.Rand) bool {
	g.r.Set(&g.rem)
	for {
		g.sh.Lsh(&g.r, 64)
		g.w.QuoRem(&g.sh, &g.gammaDen, &g.r) // w < 2^64 since r < gammaDen
		w := g.w.Uint64()
		u := rng.Uint64()
		if u != w {
			return u < w
		}
		if g.r.Sign() == 0 {
			return false // the fraction ended: u equals it, not below it
		}
	}
}
