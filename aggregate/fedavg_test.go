package aggregate

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestFedAvgWeightsBySamples(t *testing.T) {
	a := NewFedAvg(2)
	if err := a.Add([]float32{1, 0}, 100); err != nil {
		t.Fatal(err)
	}
	if err := a.Add([]float32{0, 4}, 300); err != nil {
		t.Fatal(err)
	}
	got, err := a.Apply([]float32{10, 10})
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{10.25, 13}; got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v; want %v", got, want)
	}
}

func TestFedAvgRefusesBadUpdates(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		name   string
		delta  []float32
		weight float64
		want   error
	}{
		{"short", []float32{1}, 1, ErrShape},
		{"NaN", []float32{1, nan}, 1, ErrNotFinite},
		{"infinite", []float32{float32(math.Inf(-1)), 1}, 1, ErrNotFinite},
		{"zero weight", []float32{1, 1}, 0, ErrNotFinite},
		{"NaN weight", []float32{1, 1}, math.NaN(), ErrNotFinite},
	}
	a := NewFedAvg(2)
	a.Add([]float32{2, 2}, 1)
	for _, c := range cases {
		if err := a.Add(c.delta, c.weight); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v; want %v", c.name, err, c.want)
		}
	}
	got, _ := a.Apply([]float32{0, 0})
	if a.Count() != 1 || got[0] != 2 || got[1] != 2 {
		t.Fatalf("refused updates changed the sum: count %d, result %v", a.Count(), got)
	}
	if _, err := NewFedAvg(2).Apply([]float32{0, 0}); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty: got %v; want ErrEmpty", err)
	}
}

// TestFedAvgFoldsInBatches adds more updates than a fold takes, calls
// Result midway and adds more after it, and compares with a direct
// float64 computation.
func TestFedAvgFoldsInBatches(t *testing.T) {
	const params = 1001
	r := rand.New(rand.NewPCG(13, 14))
	forEachKernelSet(t, func(t *testing.T) {
		a := NewFedAvg(params)
		sum := make([]float64, params)
		weight := 0.0
		for k := range 2*maxFold + 5 {
			u := randomFloats(r, params)
			w := float64(1 + r.IntN(1000))
			if err := a.Add(u, w); err != nil {
				t.Fatal(err)
			}
			for i, x := range u {
				sum[i] += w * float64(x)
			}
			weight += w
			if k == maxFold+2 || k == 2*maxFold+4 {
				got, err := a.Result()
				if err != nil {
					t.Fatal(err)
				}
				for i, g := range got {
					if want := sum[i] / weight; math.Abs(float64(g)-want) > 1e-6*math.Abs(want) {
						t.Fatalf("after %d updates, coordinate %d: got %v; want %v", k+1, i, g, want)
					}
				}
			}
		}
		if a.Count() != 2*maxFold+5 || a.Weight() != weight {
			t.Fatalf("count %d, weight %v; want %d, %v", a.Count(), a.Weight(), 2*maxFold+5, weight)
		}
	})
}

func TestFedAvgApplyAddsTheResultToBase(t *testing.T) {
	a := NewFedAvg(3)
	a.Add([]float32{1, 2, 3}, 1)
	a.Add([]float32{3, 2, 1}, 3)
	delta, err := a.Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{2.5, 2, 1.5}; !slices.Equal(delta, want) {
		t.Fatalf("Result: got %v; want %v", delta, want)
	}
	got, err := a.Apply([]float32{10, 20, 30})
	if want := []float32{12.5, 22, 31.5}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Apply: got %v, %v; want %v", got, err, want)
	}
	if _, err := a.Apply([]float32{1}); !errors.Is(err, ErrShape) {
		t.Fatalf("Apply with a short base: got %v; want ErrShape", err)
	}
}

func TestFedAvgRefusesOverflow(t *testing.T) {
	a := NewFedAvg(1)
	if err := a.Add([]float32{1}, math.MaxFloat64); err != nil {
		t.Fatal(err)
	}
	if err := a.Add([]float32{1}, math.MaxFloat64); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("total weight overflow: got %v; want ErrNotFinite", err)
	}
	// w·Δ overflows float64 although each is finite.
	b := NewFedAvg(1)
	b.Add([]float32{math.MaxFloat32}, 1e300)
	if got, err := b.Result(); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("overflowing sum: got %v, %v; want ErrNotFinite", got, err)
	}
}

func TestFoldBatch(t *testing.T) {
	for _, c := range []struct{ params, want int }{
		{1, maxFold}, {1_000_000, maxFold}, {4 << 20, maxFold}, {8 << 20, 8}, {64 << 20, 1}, {1 << 28, 1},
	} {
		if got := foldBatch(c.params); got != c.want {
			t.Errorf("foldBatch(%d): got %d; want %d", c.params, got, c.want)
		}
	}
}
