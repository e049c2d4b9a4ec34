package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	cases := []struct {
		in      string
		params  int
		wantErr bool
	}{
		{"logreg:784-10", 7850, false},
		{"mlp:784-200-200-10", 199210, false}, // the FedAvg paper's 2NN
		{"mlp:60-10-10", 60*10 + 10 + 10*10 + 10, false},
		{" mlp:2-3-2 ", 2*3 + 3 + 3*2 + 2, false},
		{"mlp:784-10", 0, true}, // no hidden layer
		{"logreg:784-200-10", 0, true},
		{"cnn:784-10", 0, true},
		{"mlp:784--10", 0, true},
		{"mlp:784-0-10", 0, true},
		{"logreg:784-1", 0, true},
		{"logreg:999999-10", 0, true},
		{"784-10", 0, true},
	}
	for _, c := range cases {
		spec, err := ParseSpec(c.in)
		if c.wantErr {
			if !errors.Is(err, ErrBadSpec) {
				t.Errorf("ParseSpec(%q): got %v; want ErrBadSpec", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", c.in, err)
			continue
		}
		if got := spec.NumParams(); got != c.params {
			t.Errorf("ParseSpec(%q).NumParams() = %d; want %d", c.in, got, c.params)
		}
		if again, _ := ParseSpec(spec.String()); again.NumParams() != spec.NumParams() || again.String() != spec.String() {
			t.Errorf("%q does not round-trip through String: %q", c.in, spec.String())
		}
	}
}

// TestParseSpecRefusesAbsurdSpecs: a spec too deep or too large is refused
// while it is read, so a hostile one costs nothing (one of 10,000 layers
// of 65536 once reached the model's allocation and killed a coordinator).
func TestParseSpecRefusesAbsurdSpecs(t *testing.T) {
	deep := func(layers int, width string) string {
		return "mlp:784" + strings.Repeat("-"+width, layers-1) + "-10"
	}
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"MaxDenseLayers layers", deep(MaxDenseLayers, "2"), true},
		{"one layer more", deep(MaxDenseLayers+1, "2"), false},
		{"10,000 layers", deep(10_000, "10"), false},
		{"10 million layers", deep(10_000_000, "1"), false},
		{"8 hidden layers of 65536 (the issue's spec)", "mlp:784-65536-65536-65536-65536-65536-65536-65536-65536-10", false},
		{"MaxParams exactly", "logreg:65535-4096", true}, // 4096 × (65535 + 1)
		{"one more input", "logreg:65536-4096", false},
		{"two wide layers over MaxParams", "mlp:65536-4096-2", false},
		{"a width of 400 digits", "logreg:" + strings.Repeat("9", 400) + "-2", false},
		{"a family of a megabyte", strings.Repeat("x", 1<<20) + ":2-2", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			spec, err := ParseSpec(c.in)
			if c.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadSpec) {
				t.Fatalf("got %v; want ok = %v", err, c.ok)
			}
			if err == nil && (spec.NumParams() > MaxParams || len(spec.Layers) > 2*MaxDenseLayers) {
				t.Errorf("accepted %d parameters in %d layers", spec.NumParams(), len(spec.Layers))
			}
			if err != nil && len(err.Error()) > 400 {
				t.Errorf("error of %d bytes: it should not quote the whole spec", len(err.Error()))
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestNewIsDeterministic(t *testing.T) {
	spec := MustParseSpec("mlp:784-200-200-10")
	a, b, c := New(spec, 1), New(spec, 1), New(spec, 2)
	if !slices.Equal(a.Params, b.Params) {
		t.Error("same seed gave different parameters")
	}
	if slices.Equal(a.Params, c.Params) {
		t.Error("different seeds gave the same parameters")
	}
	bound := float32(1 / math.Sqrt(784))
	for _, v := range a.Params[:784*200+200] {
		if v < -bound || v > bound {
			t.Fatalf("first-layer parameter %g outside ±1/√784", v)
		}
	}
}

// TestBadInputIsAnError checks that what comes from elsewhere (wrong shapes,
// NaN, labels out of range, bad configs) returns an error and panics nowhere.
func TestBadInputIsAnError(t *testing.T) {
	spec := MustParseSpec("mlp:4-3-2")
	m := New(spec, 1)
	good := &Dataset{X: []float32{1, 2, 3, 4, 5, 6, 7, 8}, Y: []int32{0, 1}, Features: 4, Classes: 2}
	nan := float32(math.NaN())
	cfg := TrainConfig{Epochs: 1, BatchSize: 2, LearningRate: 0.1}
	cases := []struct {
		name string
		m    *Model
		ds   *Dataset
		cfg  TrainConfig
		want error
	}{
		{"NaN feature", m, &Dataset{X: []float32{1, 2, nan, 4}, Y: []int32{0}, Features: 4, Classes: 2}, cfg, ErrNotFinite},
		{"infinite feature", m, &Dataset{X: []float32{1, 2, float32(math.Inf(1)), 4}, Y: []int32{0}, Features: 4, Classes: 2}, cfg, ErrNotFinite},
		{"short rows", m, &Dataset{X: []float32{1, 2, 3}, Y: []int32{0}, Features: 4, Classes: 2}, cfg, ErrShape},
		{"wrong feature count", m, &Dataset{X: []float32{1, 2, 3}, Y: []int32{0}, Features: 3, Classes: 2}, cfg, ErrShape},
		{"label out of range", m, &Dataset{X: []float32{1, 2, 3, 4}, Y: []int32{2}, Features: 4, Classes: 2}, cfg, ErrShape},
		{"negative label", m, &Dataset{X: []float32{1, 2, 3, 4}, Y: []int32{-1}, Features: 4, Classes: 2}, cfg, ErrShape},
		{"no examples", m, &Dataset{Features: 4, Classes: 2}, cfg, ErrShape},
		{"params too short", &Model{Spec: spec, Params: m.Params[:5]}, good, cfg, ErrShape},
		{"NaN parameter", &Model{Spec: spec, Params: append([]float32{nan}, m.Params[1:]...)}, good, cfg, ErrNotFinite},
		{"zero batch", m, good, TrainConfig{Epochs: 1, LearningRate: 0.1}, ErrBadConfig},
		{"negative learning rate", m, good, TrainConfig{Epochs: 1, BatchSize: 1, LearningRate: -1}, ErrBadConfig},
		{"NaN learning rate", m, good, TrainConfig{Epochs: 1, BatchSize: 1, LearningRate: math.NaN()}, ErrBadConfig},
		{"momentum 1", m, good, TrainConfig{Epochs: 1, BatchSize: 1, LearningRate: 0.1, Momentum: 1}, ErrBadConfig},
		{"negative mu", m, good, TrainConfig{Epochs: 1, BatchSize: 1, LearningRate: 0.1, ProxMu: -1}, ErrBadConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := append([]float32(nil), c.m.Params...)
			if _, err := Train(t.Context(), c.m, c.ds, c.cfg); !errors.Is(err, c.want) {
				t.Errorf("Train: got %v; want %v", err, c.want)
			}
			if c.cfg.Validate() == nil {
				if _, err := Evaluate(t.Context(), c.m, c.ds); !errors.Is(err, c.want) && c.ds.Len() > 0 {
					t.Errorf("Evaluate: got %v; want %v", err, c.want)
				}
			}
			if !slices.Equal(before, c.m.Params) && !slices.ContainsFunc(before, func(v float32) bool { return v != v }) {
				t.Error("the model changed although training was refused")
			}
		})
	}
}

func TestDivergenceIsReported(t *testing.T) {
	spec := MustParseSpec("logreg:2-2")
	m := New(spec, 1)
	ds := &Dataset{X: []float32{1e30, -1e30, -1e30, 1e30}, Y: []int32{0, 1}, Features: 2, Classes: 2}
	_, err := Train(t.Context(), m, ds, TrainConfig{Epochs: 50, BatchSize: 1, LearningRate: 1e30})
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("got %v; want ErrDiverged", err)
	}
}

// TestTrainingLearnsASeparableTask trains every model family on a task it can
// solve and checks the accuracy and that the loss falls, for plain SGD,
// momentum, weight decay and FedProx alike.
func TestTrainingLearnsASeparableTask(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// Three Gaussian blobs in 8 dimensions.
	const n, d, classes = 600, 8, 3
	ds := &Dataset{X: make([]float32, n*d), Y: make([]int32, n), Features: d, Classes: classes}
	for i := range n {
		c := i % classes
		ds.Y[i] = int32(c)
		for j := range d {
			centre := 0.0
			if j%classes == c {
				centre = 3
			}
			ds.X[i*d+j] = float32(centre + rng.NormFloat64())
		}
	}
	cases := []struct {
		spec string
		cfg  TrainConfig
	}{
		{"logreg:8-3", TrainConfig{Epochs: 5, BatchSize: 10, LearningRate: 0.1}},
		{"mlp:8-16-3", TrainConfig{Epochs: 5, BatchSize: 10, LearningRate: 0.1}},
		{"mlp:8-16-16-3", TrainConfig{Epochs: 5, BatchSize: 7, LearningRate: 0.05, Momentum: 0.9}},
		{"mlp:8-16-3", TrainConfig{Epochs: 5, BatchSize: 10, LearningRate: 0.1, WeightDecay: 1e-3}},
		{"mlp:8-16-3", TrainConfig{Epochs: 5, BatchSize: 10, LearningRate: 0.1, ProxMu: 0.01}},
	}
	for _, c := range cases {
		m := New(MustParseSpec(c.spec), 1)
		res, err := Train(t.Context(), m, ds, c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		met, err := Evaluate(t.Context(), m, ds)
		if err != nil {
			t.Fatal(err)
		}
		if met.Accuracy < 0.95 || res.EpochLoss[len(res.EpochLoss)-1] >= res.EpochLoss[0] {
			t.Errorf("%s %+v: accuracy %.3f, loss by epoch %v; want ≥ 0.95 and falling", c.spec, c.cfg, met.Accuracy, res.EpochLoss)
		}
	}
}
