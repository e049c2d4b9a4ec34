package dp

import (
	"math"
	"testing"
)

// tfOrders are the orders of TensorFlow Privacy's compute_dp_sgd_privacy.
func tfOrders() []float64 {
	orders := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	return append(orders, 128, 256, 512)
}

func scaled(rdp []float64, steps float64) []float64 {
	out := make([]float64, len(rdp))
	for i, r := range rdp {
		out[i] = r * steps
	}
	return out
}

// TestTFPrivacyMNISTTutorial is TensorFlow Privacy's published example
// (tutorials/README.md): MNIST, 60,000 examples, batches of 256, noise
// multiplier 1.12 for 60 epochs, δ = 1e−5 → ε = 2.92. Steps as in
// compute_dp_sgd_privacy: ⌈60·60000/256⌉ = 14063. The figure dates from
// before TF Privacy adopted the tighter conversion, so it is matched by the
// classic one; the tighter one gives less.
func TestTFPrivacyMNISTTutorial(t *testing.T) {
	q, z, delta := 256.0/60000, 1.12, 1e-5
	steps := uint64(math.Ceil(60 * 60000.0 / 256))
	if steps != 14063 {
		t.Fatalf("steps %d; want 14063", steps)
	}
	a := NewAccountant()
	a.Compose(q, z, steps)
	classic, classicOrder := EpsilonClassic(a.Orders, a.RDP, delta)
	tight, tightOrder := a.Epsilon(delta)
	t.Logf("TF Privacy MNIST vector: classic conversion ε = %.4f (order %g), tight conversion ε = %.4f (order %g); published 2.92",
		classic, classicOrder, tight, tightOrder)
	if math.Abs(classic-2.92) > 0.05 {
		t.Errorf("classic ε = %v; want 2.92 ± 0.05", classic)
	}
	if !(tight < classic) || tight < 2.3 {
		t.Errorf("tight ε = %v; want a little below the classic %v", tight, classic)
	}
}

// TestTFPrivacyCurrentVectors are compute_dp_sgd_privacy_test.py's cases
// (TF Privacy's orders, the tight conversion): ε to 1e-9 relative and the
// same best order.
func TestTFPrivacyCurrentVectors(t *testing.T) {
	cases := []struct {
		n, batch         float64
		z, epochs, delta float64
		eps, order       float64
	}{
		{60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19},
		{100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13},
		{100000000, 1024, 0.1, 10, 1e-7, 5907982.3113978775, 1.25},
	}
	orders := tfOrders()
	for _, c := range cases {
		steps := math.Ceil(c.epochs * c.n / c.batch)
		eps, order := Epsilon(orders, scaled(SampledGaussianRDP(c.batch/c.n, c.z, orders), steps), c.delta)
		if math.Abs(eps-c.eps) > 1e-9*c.eps || order != c.order {
			t.Errorf("n %v, batch %v, z %v, %v epochs, δ %v: ε = %.16g at order %v; want %.16g at order %v",
				c.n, c.batch, c.z, c.epochs, c.delta, eps, order, c.eps, c.order)
		}
	}
}

func TestFullSamplingIsTheGaussianMechanism(t *testing.T) {
	for _, z := range []float64{0.3, 1, 1.12, 7} {
		rdp := SampledGaussianRDP(1, z, DefaultOrders)
		for i, a := range DefaultOrders {
			if want := a / (2 * z * z); rdp[i] != want {
				t.Errorf("q = 1, z = %v, order %v: RDP %v; want α/(2z²) = %v", z, a, rdp[i], want)
			}
		}
	}
}

func TestNoSamplingSpendsNothing(t *testing.T) {
	for i, r := range SampledGaussianRDP(0, 1.1, DefaultOrders) {
		if r != 0 {
			t.Fatalf("q = 0, order %v: RDP %v; want 0", DefaultOrders[i], r)
		}
	}
	a := NewAccountant()
	a.Compose(0, 1, 1000)
	if eps, _ := a.Epsilon(1e-5); eps != 0 {
		t.Errorf("ε after 1000 steps at q = 0: %v; want 0", eps)
	}
}

// TestIntegerAndFractionalOrdersAgree checks that the binomial sum at an
// integer order and the erfc series just beside it give nearly the same
// RDP: the two formulas meet continuously.
func TestIntegerAndFractionalOrdersAgree(t *testing.T) {
	for _, p := range []struct{ q, z float64 }{{0.01, 1.1}, {256.0 / 60000, 1.12}, {0.1, 0.7}, {0.5, 2}, {0.001, 5}} {
		for _, a := range []float64{2, 3, 5, 10, 12, 32, 63} {
			rdp := SampledGaussianRDP(p.q, p.z, []float64{a - 1e-7, a, a + 1e-7})
			for _, r := range []float64{rdp[0], rdp[2]} {
				if math.Abs(r-rdp[1]) > 1e-5*rdp[1] {
					t.Errorf("q %v, z %v: RDP %v at order %v but %v within 1e-7 of it (%v)", p.q, p.z, rdp[1], a, r, rdp)
				}
			}
			if !(rdp[0] <= rdp[1] && rdp[1] <= rdp[2]) {
				t.Errorf("q %v, z %v: RDP around order %v not increasing: %v", p.q, p.z, a, rdp)
			}
		}
	}
}

func TestRDPMonotone(t *testing.T) {
	const q = 0.02
	prev := SampledGaussianRDP(q, 0.5, DefaultOrders)
	for _, z := range []float64{0.6, 0.8, 1, 1.5, 3, 10} {
		rdp := SampledGaussianRDP(q, z, DefaultOrders)
		for i := range rdp {
			if !(rdp[i] < prev[i]) {
				t.Fatalf("order %v: RDP %v at z = %v not below %v at a smaller z", DefaultOrders[i], rdp[i], z, prev[i])
			}
		}
		prev = rdp
	}
	prev = SampledGaussianRDP(0.001, 1, DefaultOrders)
	for _, q := range []float64{0.01, 0.1, 0.5, 0.99, 1} {
		rdp := SampledGaussianRDP(q, 1, DefaultOrders)
		for i := range rdp {
			if !(rdp[i] > prev[i]) {
				t.Fatalf("order %v: RDP %v at q = %v not above %v at a smaller q", DefaultOrders[i], rdp[i], q, prev[i])
			}
		}
		prev = rdp
	}
	a := NewAccountant()
	last := 0.0
	for range 20 {
		a.Compose(0.01, 1.1, 100)
		eps, _ := a.Epsilon(1e-5)
		if !(eps > last) {
			t.Fatalf("ε %v after %d steps; not above %v", eps, a.Steps, last)
		}
		last = eps
	}
}

func TestDefaultOrders(t *testing.T) {
	if len(DefaultOrders) != 151 || DefaultOrders[0] != 1.1 || DefaultOrders[98] != 10.9 || DefaultOrders[99] != 12 || DefaultOrders[150] != 63 {
		t.Fatalf("DefaultOrders: %d orders from %v to %v; want 151 from 1.1 to 63", len(DefaultOrders), DefaultOrders[0], DefaultOrders[len(DefaultOrders)-1])
	}
	for i, want := range map[int]float64{9: 2, 19: 3, 89: 10} {
		if DefaultOrders[i] != want {
			t.Errorf("DefaultOrders[%d] = %v; want exactly %v (an integer order)", i, DefaultOrders[i], want)
		}
	}
}

func TestOutsideTheDomainGivesNoGuarantee(t *testing.T) {
	for _, p := range []struct{ q, z float64 }{{-0.1, 1}, {1.5, 1}, {math.NaN(), 1}, {0.1, 0}, {0.1, -1}, {0.1, math.NaN()}} {
		for _, r := range SampledGaussianRDP(p.q, p.z, []float64{2, 2.5}) {
			if !math.IsInf(r, 1) {
				t.Errorf("q %v, z %v: RDP %v; want +Inf", p.q, p.z, r)
			}
		}
	}
	if r := SampledGaussianRDP(0.1, 1, []float64{1, 0.5, math.Inf(1)}); !math.IsInf(r[0], 1) || !math.IsInf(r[1], 1) || !math.IsInf(r[2], 1) {
		t.Errorf("orders ≤ 1 or infinite: RDP %v; want +Inf", r)
	}
	if eps, order := Epsilon([]float64{2}, []float64{math.Inf(1)}, 1e-5); !math.IsInf(eps, 1) || order != 0 {
		t.Errorf("Epsilon of infinite RDP: %v at %v; want +Inf at 0", eps, order)
	}
	for _, delta := range []float64{0, -1, 1, math.NaN()} {
		if eps, _ := Epsilon([]float64{2}, []float64{0.1}, delta); !math.IsInf(eps, 1) {
			t.Errorf("Epsilon at δ = %v: %v; want +Inf", delta, eps)
		}
	}
	if eps, _ := Epsilon([]float64{2, 3}, []float64{0.1}, 1e-5); !math.IsInf(eps, 1) {
		t.Errorf("Epsilon with mismatched slices: %v; want +Inf", eps)
	}
}

func TestLogErfc(t *testing.T) {
	for _, x := range []float64{-3, -0.5, 0, 0.7, 2, 5, 10, 20, 24.9} {
		if got, want := logErfc(x), math.Log(math.Erfc(x)); math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
			t.Errorf("logErfc(%v) = %v; want %v", x, got, want)
		}
	}
	// The two branches meet at 25: compare the series with math.Erfc there.
	x := 25.0
	series := -math.Log(math.Pi)/2 - math.Log(x) - x*x + (-0.5/(x*x) + 0.625/math.Pow(x, 4) - 37.0/24/math.Pow(x, 6) + 353.0/64/math.Pow(x, 8))
	if want := math.Log(math.Erfc(x)); math.Abs(series-want) > 1e-12*math.Abs(want) {
		t.Errorf("asymptotic ln erfc(25) = %v; math.Erfc gives %v", series, want)
	}
	if got := logErfc(40); !(got < -1604 && got > -1605) {
		t.Errorf("logErfc(40) = %v; want about −1600 − ln(40√π) ≈ −1604.26 (finite, where erfc underflows)", got)
	}
}

func BenchmarkSampledGaussianRDP(b *testing.B) {
	for b.Loop() {
		SampledGaussianRDP(256.0/60000, 1.12, DefaultOrders)
	}
}
