package dp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// discretePMF returns P(k) of N_Z(0, σ²) for |k| ≤ r, with r large enough
// that the mass beyond is below 1e-300.
func discretePMF(sigma float64) (p map[int64]float64, variance float64) {
	r := int64(40*sigma) + 10
	p = map[int64]float64{}
	var z float64
	for k := -r; k <= r; k++ {
		p[k] = math.Exp(-float64(k*k) / (2 * sigma * sigma))
		z += p[k]
	}
	for k := range p {
		p[k] /= z
		variance += float64(k*k) * p[k]
	}
	return p, variance
}

// TestDiscreteGaussianMoments checks mean and variance against the exact
// discrete Gaussian's (below σ² for small σ) with CLT tolerances of five
// standard errors and fixed seeds.
func TestDiscreteGaussianMoments(t *testing.T) {
	for i, c := range []struct {
		sigma float64
		n     int
	}{{0.5, 200_000}, {3, 200_000}, {1000, 100_000}} {
		t.Run(fmt.Sprint(c.sigma), func(t *testing.T) {
			_, want := discretePMF(c.sigma)
			rng := rand.New(rand.NewChaCha8([32]byte{byte(i + 1)}))
			g := newDiscreteGaussian(c.sigma)
			var sum, sq, fourth float64
			for range c.n {
				x := float64(g.sample(rng))
				sum += x
				sq += x * x
				fourth += x * x * x * x
			}
			n := float64(c.n)
			mean, variance := sum/n, sq/n
			seVar := math.Sqrt((fourth/n - variance*variance) / n)
			if math.Abs(mean) > 5*math.Sqrt(want/n) {
				t.Errorf("σ = %v: mean %v; want 0 ± %v", c.sigma, mean, 5*math.Sqrt(want/n))
			}
			if math.Abs(variance-want) > 5*seVar {
				t.Errorf("σ = %v: variance %v; want %v ± %v", c.sigma, variance, want, 5*seVar)
			}
			t.Logf("σ = %v: mean %.4g, variance %.6g (exact %.6g, σ² = %v)", c.sigma, mean, variance, want, c.sigma*c.sigma)
		})
	}
}

// TestDiscreteGaussianPMF compares the frequency of each value near the
// centre with its exact probability.
func TestDiscreteGaussianPMF(t *testing.T) {
	const n = 200_000
	for i, sigma := range []float64{0.5, 3, 1.7320508} {
		p, _ := discretePMF(sigma)
		rng := rand.New(rand.NewChaCha8([32]byte{9, byte(i)}))
		g := newDiscreteGaussian(sigma)
		counts := map[int64]int{}
		for range n {
			counts[g.sample(rng)]++
		}
		r := int64(3*sigma) + 1
		for k := -r; k <= r; k++ {
			want := n * p[k]
			if d := math.Abs(float64(counts[k]) - want); d > 5*math.Sqrt(want*(1-p[k]))+1 {
				t.Errorf("σ = %v: %d draws of %d; want %.0f", sigma, counts[k], k, want)
			}
		}
	}
}

func TestDiscreteGaussianEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	if x := SampleDiscreteGaussian(0, rng); x != 0 {
		t.Errorf("σ = 0 gave %d; want 0", x)
	}
	// A tiny σ is all but always 0.
	for range 1000 {
		if x := SampleDiscreteGaussian(1e-3, rng); x != 0 {
			t.Fatalf("σ = 0.001 gave %d; want 0", x)
		}
	}
	// A large σ stays in int64 and near its scale.
	for range 1000 {
		if x := SampleDiscreteGaussian(1<<40, rng); math.Abs(float64(x)) > 10*(1<<40) {
			t.Fatalf("σ = 2^40 gave %d", x)
		}
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1), 1 << 41} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("σ = %v did not panic", bad)
				}
			}()
			SampleDiscreteGaussian(bad, rng)
		}()
	}
}

// TestBernoulliExp checks the Bernoulli(exp(−γ)) samplers' frequencies.
func TestBernoulliExp(t *testing.T) {
	const n = 100_000
	rng := rand.New(rand.NewChaCha8([32]byte{3}))
	for _, c := range []struct{ num, den uint64 }{{0, 1}, {1, 1}, {1, 3}, {7, 8}, {5, 1 << 40}} {
		hits := 0
		for range n {
			if bernoulliExpFrac(c.num, c.den, rng) {
				hits++
			}
		}
		p := math.Exp(-float64(c.num) / float64(c.den))
		if math.Abs(float64(hits)-n*p) > 5*math.Sqrt(n*p*(1-p))+1 {
			t.Errorf("Bernoulli(exp(−%d/%d)): %d of %d; want %.0f", c.num, c.den, hits, n, n*p)
		}
	}
	g := newDiscreteGaussian(1)
	for _, c := range []struct{ num, den int64 }{{0, 1}, {5, 2}, {1, 3}, {13, 4}} {
		hits := 0
		for range n {
			g.p.SetInt64(c.num)
			g.gammaDen.SetInt64(c.den)
			if g.bernoulliExpRat(rng) {
				hits++
			}
		}
		p := math.Exp(-float64(c.num) / float64(c.den))
		if math.Abs(float64(hits)-n*p) > 5*math.Sqrt(n*p*(1-p))+1 {
			t.Errorf("Bernoulli(exp(−%d/%d)) with big integers: %d of %d; want %.0f", c.num, c.den, hits, n, n*p)
		}
	}
}

func BenchmarkSampleDiscreteGaussian(b *testing.B) {
	for _, sigma := range []float64{3, 3.3e6} {
		b.Run(fmt.Sprint(sigma), func(b *testing.B) {
			g := newDiscreteGaussian(sigma)
			rng := rand.New(rand.NewChaCha8([32]byte{1}))
			for b.Loop() {
				g.sample(rng)
			}
		})
	}
}
