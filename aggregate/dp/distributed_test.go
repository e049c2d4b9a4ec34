package dp

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestPlanDistributed(t *testing.T) {
	for _, c := range []struct {
		length, clients, threshold int
		clip, z                    float64
	}{
		{1, 1, 1, 1, 1},
		{2000, 10, 7, 0.5, 1.1},
		{1_000_000, 100, 50, 1, 0.8},
		{10_000_000, 1000, 500, 10, 1},
	} {
		p, err := PlanDistributed(c.length, c.clients, c.threshold, c.clip, c.z)
		if err != nil {
			t.Fatalf("PlanDistributed%+v: %v", c, err)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("plan %+v does not validate: %v", p, err)
		}
		sd := math.Sqrt(float64(c.length))
		wantSigma := c.z * (p.Scale*c.clip + sd) / math.Sqrt(float64(c.threshold))
		switch {
		case p.WrapProbability > MaxWrapProbability:
			t.Errorf("%+v: wrap probability %v > %v", c, p.WrapProbability, MaxWrapProbability)
		case math.Abs(p.Sigma-wantSigma) > 1e-12*wantSigma:
			t.Errorf("%+v: σ_i %v; want z(γS + √d)/√t = %v", c, p.Sigma, wantSigma)
		case p.Scale*c.clip < sd:
			t.Errorf("%+v: γS = %v below √d", c, p.Scale*c.clip)
		case p.Clip != c.clip || p.Multiplier != c.z || p.Threshold != c.threshold || p.Clients != c.clients || p.Length != c.length:
			t.Errorf("%+v: plan %+v does not carry its inputs", c, p)
		}
		// γ is the largest: 0.1% more would break the wrap bound.
		q := p
		q.Scale *= 1.001
		q.Sigma = q.minSigma()
		if w := q.wrapProbability(); !(w > MaxWrapProbability) {
			t.Errorf("%+v: a 0.1%% larger scale still has wrap probability %v; γ is not the largest", c, w)
		}
		t.Logf("d %d, n %d, t %d: γ = %.4g, σ_i = %.4g, wrap ≤ %.2g", c.length, c.clients, c.threshold, p.Scale, p.Sigma, p.WrapProbability)
	}
}

func TestPlanDistributedRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		length, clients, threshold int
		clip, z                    float64
		name                       string
	}{
		{100, 10, 5, 0, 1, "clip"},
		{100, 10, 5, -1, 1, "clip"},
		{100, 10, 5, math.NaN(), 1, "clip"},
		{100, 10, 5, math.Inf(1), 1, "clip"},
		{100, 10, 5, 1, 0, "multiplier"},
		{100, 10, 5, 1, -2, "multiplier"},
		{100, 10, 5, 1, math.NaN(), "multiplier"},
		{100, 10, 11, 1, 1, "threshold"},
		{100, 10, 0, 1, 1, "threshold"},
		{0, 10, 5, 1, 1, "length"},
		{-3, 10, 5, 1, 1, "length"},
		{100, 0, 0, 1, 1, "clients"},
		// γS would fall below √d: a million clients share 2^31.
		{10_000_000, 1_000_000, 1000, 1, 1, "clients"},
		// σ_i far below 1: the sum of discrete Gaussians is not one.
		{1, 1000, 1000, 1e-12, 1e-9, "multiplier"},
	} {
		_, err := PlanDistributed(c.length, c.clients, c.threshold, c.clip, c.z)
		if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("PlanDistributed(%d, %d, %d, %v, %v): %v; want ErrParams naming %s", c.length, c.clients, c.threshold, c.clip, c.z, err, c.name)
		}
	}
}

// TestDistributedRoundTrip sums ten participants' encodings modulo 2^32,
// as secure aggregation does, and checks that the decoded sum is the sum of
// the clipped updates plus noise of the planned size, centred.
func TestDistributedRoundTrip(t *testing.T) {
	const d, n, thr = 4000, 10, 6
	p, err := PlanDistributed(d, n, thr, 1, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{42}))
	sum := make([]uint32, d)
	want := make([]float64, d)
	for k := range n {
		delta := make([]float32, d)
		for i := range delta {
			delta[i] = float32(rng.NormFloat64() * 0.03 * float64(k)) // norms from 0 to ~5: most clipped
		}
		orig := append([]float32(nil), delta...)
		words, err := p.Encode(delta, rng)
		if err != nil {
			t.Fatal(err)
		}
		if !equal(delta, orig) {
			t.Fatal("Encode changed its input")
		}
		clipped := append([]float32(nil), delta...)
		ClipL2(clipped, p.Clip)
		for i := range sum {
			sum[i] += words[i]
			want[i] += float64(clipped[i])
		}
	}
	got := p.Decode(sum)
	var mean, sq float64
	for i := range got {
		e := got[i] - want[i]
		mean += e
		sq += e * e
	}
	mean /= d
	std := math.Sqrt(sq/d - mean*mean)
	wantStd := p.Sigma * math.Sqrt(n) / p.Scale // rounding adds < 1/2 unit: negligible
	t.Logf("decoded error: mean %.3g, std %.4g; planned noise std %.4g (≥ z·S·√(n/t) = %.4g)", mean, std, wantStd, p.Multiplier*p.Clip*math.Sqrt(float64(n)/thr))
	if math.Abs(mean) > 5*wantStd/math.Sqrt(d) {
		t.Errorf("mean error %v; want 0 ± %v", mean, 5*wantStd/math.Sqrt(d))
	}
	if math.Abs(std-wantStd) > 5*wantStd/math.Sqrt(2*d) {
		t.Errorf("error std %v; want %v", std, wantStd)
	}
	if min := p.Multiplier * p.Clip * math.Sqrt(float64(n)/thr); wantStd < min {
		t.Errorf("noise std %v below z·S·√(n/t) = %v", wantStd, min)
	}
}

// TestDistributedNegativeAndExtremeSums checks two's-complement wrapping:
// negative values, and every participant at the clip on one coordinate with
// one sign, decode to the right sum.
func TestDistributedNegativeAndExtremeSums(t *testing.T) {
	const d, n = 4, 10
	p, err := PlanDistributed(d, n, n, 2, 0.001) // tiny multiplier: noise ≈ 0.1% of the clip
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{5}))
	sum := make([]uint32, d)
	for range n {
		w, err := p.Encode([]float32{-2, 0, 0, 0}, rng) // at the clip, all on coordinate 0
		if err != nil {
			t.Fatal(err)
		}
		for i := range sum {
			sum[i] += w[i]
		}
	}
	got := p.Decode(sum)
	tol := 6 * p.Sigma * math.Sqrt(n) / p.Scale
	if math.Abs(got[0]-(-2*n)) > tol+1e-6 {
		t.Errorf("ten participants at −clip: decoded %v; want %v ± %v", got[0], -2*n, tol)
	}
	for i := 1; i < d; i++ {
		if math.Abs(got[i]) > tol {
			t.Errorf("coordinate %d: decoded %v; want 0 ± %v", i, got[i], tol)
		}
	}
	one, err := p.Encode([]float32{-0.5, 0.25, -1.25, 0}, rng)
	if err != nil {
		t.Fatal(err)
	}
	dec := p.Decode(one)
	for i, want := range []float64{-0.5, 0.25, -1.25, 0} {
		if math.Abs(dec[i]-want) > 6*p.Sigma/p.Scale+1e-6 {
			t.Errorf("coordinate %d: decoded %v; want %v", i, dec[i], want)
		}
	}
	if got := p.Decode([]uint32{math.MaxUint32, 1 << 31, 1<<31 - 1}); got[0] != -1/p.Scale || got[1] != -(1<<31)/p.Scale || got[2] != (1<<31-1)/p.Scale {
		t.Errorf("Decode of 2^32−1, 2^31, 2^31−1: %v; want −1, −2^31, 2^31−1 over γ", got)
	}
}

func TestEncodeRefusesBadInput(t *testing.T) {
	p, err := PlanDistributed(3, 5, 3, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	if _, err := p.Encode([]float32{1, 2}, rng); !errors.Is(err, ErrLength) {
		t.Errorf("Encode of 2 values for a plan of 3: %v; want ErrLength", err)
	}
	if _, err := p.Encode([]float32{1, float32(math.Inf(-1)), 0}, rng); !errors.Is(err, ErrNotFinite) {
		t.Errorf("Encode of −Inf: %v; want ErrNotFinite", err)
	}
	for _, bad := range []func(*DistributedPlan){
		func(p *DistributedPlan) { p.Sigma /= 2 }, // a coordinator asking for less noise than the multiplier needs
		func(p *DistributedPlan) { p.Sigma = math.NaN() },
		func(p *DistributedPlan) { p.Threshold = 6 },
		func(p *DistributedPlan) { p.Scale = math.Inf(1) },
		func(p *DistributedPlan) { p.Multiplier = 0 },
	} {
		q := p
		bad(&q)
		if _, err := q.Encode([]float32{1, 2, 3}, rng); !errors.Is(err, ErrParams) {
			t.Errorf("Encode with plan %+v: %v; want ErrParams", q, err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	const d = 100_000
	p, err := PlanDistributed(d, 100, 50, 1, 1)
	if err != nil {
		b.Fatal(err)
	}
	delta := make([]float32, d)
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range delta {
		delta[i] = float32(rng.NormFloat64())
	}
	b.SetBytes(4 * d)
	for b.Loop() {
		if _, err := p.Encode(delta, rng); err != nil {
			b.Fatal(err)
		}
	}
}
