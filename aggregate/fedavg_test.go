package aggregate

import (
	"errors"
	"math"
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
