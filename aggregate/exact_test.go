package aggregate

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestFixedPointRoundTrip(t *testing.T) {
	for _, x := range []float64{0, 1, -1, 0.5, -0.75, 0x1p-60, -3 * 0x1p-64, 123456.789, -9.87654321e8, 1 << 40, -(1 << 62), 0x1p62 + 0x1p20} {
		s := newExactSum(1)
		s.addAt(0, x)
		if got := s.value(0); got != x {
			t.Errorf("%g: value %g", x, got)
		}
	}
	// Below the grid, a value is rounded to a multiple of 2⁻⁶⁴.
	for _, x := range []float64{1e-12, -3e-15, 1e-25} {
		s := newExactSum(1)
		s.addAt(0, x)
		if d := math.Abs(s.value(0) - x); d > 0x1p-65 {
			t.Errorf("%g: value %g, off by %g", x, s.value(0), d)
		}
	}
}

// TestExactSumIsExact adds values whose float64 sum loses the small ones.
func TestExactSumIsExact(t *testing.T) {
	s := newExactSum(1)
	for _, x := range []float64{1e16, 1, -1e16, 1, 0x1p-40} {
		s.addAt(0, x)
	}
	if got, want := s.value(0), 2+0x1p-40; got != want {
		t.Fatalf("sum %.17g, want %.17g", got, want)
	}
}

// TestExactFedAvgDoesNotDependOnOrder shuffles a round's updates: the
// exact accumulator gives the same bits every time, the float64 one need
// not (the case below makes it differ).
func TestExactFedAvgDoesNotDependOnOrder(t *testing.T) {
	type update struct {
		delta []float32
		w     float64
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const params = 257
	var ups []update
	for k := range 40 {
		d := make([]float32, params)
		for i := range d {
			d[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-8)))
		}
		w := float64(1 + rng.IntN(5000))
		if k%3 == 0 {
			w += 0.37 // partial work weighs a share of the examples
		}
		ups = append(ups, update{d, w})
	}
	// Coordinate 0 cancels: 1e6·1e8 − 1e6·1e8 + 0.001 in float64 is 0 or
	// 0.001 depending on the order (1e14's ulp is 2⁻⁶).
	ups[0].delta[0], ups[0].w = 1e8, 1e6
	ups[1].delta[0], ups[1].w = -1e8, 1e6
	ups[2].delta[0], ups[2].w = 0.001, 1
	for _, u := range ups[3:] {
		u.delta[0] = 0 // so that the mean, 0.001/Σw, is what the order loses
	}
	run := func(exact bool, order []int) []float32 {
		a := NewFedAvg(params)
		if exact {
			a = NewExactFedAvg(params)
		}
		a.Parallelism = 2
		for _, i := range order {
			if err := a.Add(ups[i].delta, ups[i].w); err != nil {
				t.Fatal(err)
			}
		}
		out, err := a.Result()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	order := make([]int, len(ups))
	for i := range order {
		order[i] = i
	}
	want := run(true, order)
	plainDiffers := false
	first := run(false, order)
	for range 20 {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		if got := run(true, order); !slices.Equal(got, want) {
			t.Fatalf("exact FedAvg changed with the order of updates")
		}
		if !slices.Equal(run(false, order), first) {
			plainDiffers = true
		}
	}
	if !plainDiffers {
		t.Error("the float64 fold gave the same bits in every order: the case does not test anything")
	}
	// And it is the same mean, to float32 precision.
	ref := run(false, order)
	for i := 1; i < params; i++ {
		if d := math.Abs(float64(want[i] - ref[i])); d > 1e-6*math.Abs(float64(ref[i]))+1e-30 {
			t.Fatalf("coordinate %d: exact %g, float64 fold %g", i, want[i], ref[i])
		}
	}
}

func TestRuleConfigExact(t *testing.T) {
	for _, c := range []RuleConfig{{Exact: true}, {Exact: true, NormBound: 2}, {Name: RuleMultiKrum, F: 1, Exact: true}} {
		r, err := NewRule(c, 3)
		if err != nil {
			t.Fatal(err)
		}
		for k := range 5 {
			if err := r.Add([]float32{float32(k), 1, -1}, float64(k+1)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Result(); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

// TestExactFedAvgRefusesWhatItCannotHold: a weighted value of 2⁴⁸ or more
// would let a sum wrap; it is refused, and the sum is unchanged.
func TestExactFedAvgRefusesWhatItCannotHold(t *testing.T) {
	a := NewExactFedAvg(2)
	if err := a.Add([]float32{1, -2}, 3); err != nil {
		t.Fatal(err)
	}
	if err := a.Add([]float32{1e10, 0}, 1e5); err == nil {
		t.Fatal("an update of weight × value 1e15 ≥ 2^48 was accepted")
	}
	out, err := a.Result()
	if err != nil || out[0] != 1 || out[1] != -2 {
		t.Fatalf("after the refusal: %v, %v; want [1 -2]", out, err)
	}
}
