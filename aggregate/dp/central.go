package dp

import (
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"

	"github.com/accord-fl/accord/aggregate"
)

// ClipL2 scales v in place so that its L2 norm is at most s and returns the
// norm it had before. The bound holds after rounding to float32 too: if the
// rounded vector still exceeds s, it is shrunk by another float32 ulp until
// it does not. A vector with a NaN or infinite entry, or a bound s that is
// not ≥ 0, zeroes v (the norm returned, NaN or +Inf, says why): such an
// update carries nothing that could be released.
func ClipL2(v []float32, s float64) float64 {
	norm := aggregate.Norm(v)
	if math.IsNaN(norm) || math.IsInf(norm, 0) || !(s >= 0) {
		clear(v)
		return norm
	}
	if norm <= s {
		return norm
	}
	f := s / norm
	for {
		for i, x := range v {
			v[i] = float32(float64(x) * f)
		}
		n := aggregate.Norm(v)
		if n <= s {
			return norm
		}
		f = (s / n) * (1 - 1.0/(1<<23))
	}
}

// NewRNG returns a cryptographically secure generator for noise: ChaCha8
// (math/rand/v2) seeded with 32 bytes from crypto/rand. Like every
// *rand.Rand it is not safe for concurrent use; give each goroutine its own.
func NewRNG() (*mrand.Rand, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	return mrand.New(mrand.NewChaCha8(seed)), nil
}

// AddGaussian adds independent N(0, sigma²) noise to every entry of v,
// drawing from rng (rng.NormFloat64, a float64 ziggurat, scaled and then
// rounded to float32). For central DP-FedAvg, sigma is z·S on the sum of
// clipped updates (z·S/(qW) on the fixed-denominator average). sigma = 0
// adds nothing; a negative, NaN or infinite sigma panics, as it would
// silently release unprotected data: validate job parameters first.
// Floating-point Gaussian noise is the usual practice
// (TensorFlow Privacy, Opacus) but not an exact sampler; the distributed
// mode's integer noise is.
func AddGaussian(v []float32, sigma float64, rng *mrand.Rand) {
	if !(sigma >= 0) || math.IsInf(sigma, 0) {
		panic(fmt.Sprintf("dp.AddGaussian: noise standard deviation %v", sigma))
	}
	if sigma == 0 {
		return
	}
	for i := range v {
		v[i] = float32(float64(v[i]) + sigma*rng.NormFloat64())
	}
}
