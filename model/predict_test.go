package model

import (
	"errors"
	"math"
	"testing"
)

func TestPredictMatchesForwardAndSumsToOne(t *testing.T) {
	m := New(MustParseSpec("mlp:784-200-200-10"), 1)
	const rows = 5
	x := make([]float32, rows*784)
	for i := range x {
		x[i] = float32(i%255) / 255
	}
	p := NewPredictor(m, 2) // rows > capacity: buffers of its own
	got, err := p.Predict(x, rows)
	if err != nil {
		t.Fatal(err)
	}
	logits := newNetwork(m.Spec, rows).forward(m.Params, x, rows)
	for r := range rows {
		var sum float64
		best, bestP := 0, float32(-1)
		for c := range 10 {
			v := got[r*10+c]
			sum += float64(v)
			if v > bestP {
				best, bestP = c, v
			}
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("row %d: probabilities sum to %v; want 1", r, sum)
		}
		top := 0
		for c := range 10 {
			if logits[r*10+c] > logits[r*10+top] {
				top = c
			}
		}
		if best != top {
			t.Errorf("row %d: most probable class %d; want the largest logit's %d", r, best, top)
		}
	}
	// One row at a time, through the pool, gives the same answer.
	for r := range rows {
		one, err := p.Predict(x[r*784:(r+1)*784], 1)
		if err != nil {
			t.Fatal(err)
		}
		for c := range 10 {
			if d := math.Abs(float64(one[c] - got[r*10+c])); d > 1e-6 {
				t.Fatalf("row %d class %d: alone %v, in a batch %v", r, c, one[c], got[r*10+c])
			}
		}
	}
}

func TestPredictRefusesBadInput(t *testing.T) {
	m := New(MustParseSpec("logreg:4-3"), 1)
	for _, tc := range []struct {
		name string
		x    []float32
		rows int
		want error
	}{
		{"short", []float32{1, 2, 3}, 1, ErrShape},
		{"no rows", nil, 0, ErrShape},
		{"NaN", []float32{1, float32(math.NaN()), 3, 4}, 1, ErrNotFinite},
		{"Inf", []float32{1, 2, 3, float32(math.Inf(1))}, 1, ErrNotFinite},
	} {
		if _, err := Predict(m, tc.x, tc.rows); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v; want %v", tc.name, err, tc.want)
		}
	}
}
