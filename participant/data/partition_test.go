package data

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// syntheticLabels returns n labels over classes with uneven class sizes, as
// real datasets have.
func syntheticLabels(n, classes int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	y := make([]int32, n)
	for i := range y {
		c := rng.IntN(classes + 3) // some classes twice as likely
		y[i] = int32(c % classes)
	}
	return y
}

// checkCover fails unless parts are disjoint and together hold every index
// below n exactly once.
func checkCover(t *testing.T, parts [][]int, n int) {
	t.Helper()
	seen := make([]bool, n)
	for k, p := range parts {
		for _, i := range p {
			if i < 0 || i >= n {
				t.Fatalf("client %d holds index %d outside [0, %d)", k, i, n)
			}
			if seen[i] {
				t.Fatalf("index %d given twice", i)
			}
			seen[i] = true
		}
	}
	if missing := slices.Index(seen, false); missing >= 0 {
		t.Fatalf("index %d given to no client", missing)
	}
}

// tvFromGlobal is the mean total-variation distance between each client's
// label distribution and the whole dataset's.
func tvFromGlobal(labels []int32, parts [][]int, classes int) float64 {
	all := make([]int, len(labels))
	for i := range all {
		all[i] = i
	}
	global := LabelHistogram(labels, all, classes)
	var sum float64
	for _, p := range parts {
		h := LabelHistogram(labels, p, classes)
		var tv float64
		for c := range classes {
			tv += math.Abs(float64(h[c])/float64(max(len(p), 1)) - float64(global[c])/float64(len(labels)))
		}
		sum += tv / 2
	}
	return sum / float64(len(parts))
}

func TestIIDBalancedAndCloseToGlobal(t *testing.T) {
	labels := syntheticLabels(60000, 10, 1)
	parts, err := IID(len(labels), 100, 42)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, parts, len(labels))
	for k, p := range parts {
		if len(p) != 600 {
			t.Fatalf("client %d holds %d examples; want 600", k, len(p))
		}
	}
	// 600 draws from 10 classes: each client's histogram is within a few
	// points of the global one in total variation.
	if tv := tvFromGlobal(labels, parts, 10); tv > 0.08 {
		t.Errorf("mean total variation from the global label distribution %.3f; want ≤ 0.08", tv)
	}
	again, _ := IID(len(labels), 100, 42)
	if !slices.Equal(parts[7], again[7]) {
		t.Error("IID with the same seed gave a different split")
	}
}

func TestPathologicalAtMostTwoLabels(t *testing.T) {
	labels := syntheticLabels(60000, 10, 2)
	parts, err := Pathological(labels, 100, 2, 7)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, parts, len(labels))
	for k, p := range parts {
		h := LabelHistogram(labels, p, 10)
		held := 0
		for _, c := range h {
			if c > 0 {
				held++
			}
		}
		if held > 2 {
			t.Fatalf("client %d holds %d labels (%v); want ≤ 2", k, held, h)
		}
		if len(p) < 400 || len(p) > 800 {
			t.Errorf("client %d holds %d examples; want about 600", k, len(p))
		}
	}
	if _, err := Pathological(labels[:10], 100, 2, 7); err == nil {
		t.Error("splitting 10 examples into 200 shards succeeded; want an error")
	}
}

func TestDirichletSkewGrowsAsAlphaFalls(t *testing.T) {
	labels := syntheticLabels(20000, 10, 3)
	var prev float64
	for i, alpha := range []float64{100, 1, 0.1} {
		parts, err := Dirichlet(labels, 20, alpha, 10, 5)
		if err != nil {
			t.Fatalf("α=%v: %v", alpha, err)
		}
		checkCover(t, parts, len(labels))
		tv := tvFromGlobal(labels, parts, 10)
		t.Logf("α=%v: mean total variation from global %.3f", alpha, tv)
		if i > 0 && tv <= prev {
			t.Errorf("α=%v: skew %.3f is not above the skew %.3f at the larger α", alpha, tv, prev)
		}
		prev = tv
	}
	if _, err := Dirichlet(labels, 20, 0, 10, 5); err == nil {
		t.Error("α=0 accepted; want an error")
	}
}

func TestSyntheticShapesAndSeed(t *testing.T) {
	cfg := DefaultSynthetic(1, 1, 9)
	devices, err := Synthetic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 30 {
		t.Fatalf("got %d devices; want 30", len(devices))
	}
	seenClasses := map[int32]bool{}
	for k, d := range devices {
		if err := d.Validate(); err != nil {
			t.Fatalf("device %d: %v", k, err)
		}
		if d.Features != 60 || d.Classes != 10 {
			t.Fatalf("device %d: %d features, %d classes; want 60 and 10", k, d.Features, d.Classes)
		}
		if d.Len() < 50 {
			t.Fatalf("device %d holds %d samples; want ≥ 50 (lognormal + 50)", k, d.Len())
		}
		for _, y := range d.Y {
			seenClasses[y] = true
		}
	}
	if len(seenClasses) < 5 {
		t.Errorf("only %d classes appear across all devices", len(seenClasses))
	}
	again, _ := Synthetic(cfg)
	for k := range devices {
		if !slices.Equal(devices[k].X, again[k].X) || !slices.Equal(devices[k].Y, again[k].Y) {
			t.Fatalf("device %d differs between two runs with one seed", k)
		}
	}
	other, _ := Synthetic(DefaultSynthetic(1, 1, 10))
	if other[0].Len() == devices[0].Len() && slices.Equal(other[0].Y, devices[0].Y) {
		t.Error("a different seed gave the same first device")
	}
}

// TestSyntheticBetaShiftsInputs checks what β promises: each device's inputs
// are centred on v_k whose entries share one offset B_k ~ N(0, β), so the
// spread of the devices' mean feature value grows from about 1/60 at β=0
// (60 independent N(0,1) entries averaged) to about β²+1/60.
func TestSyntheticBetaShiftsInputs(t *testing.T) {
	spread := func(beta float64) float64 {
		devices, err := Synthetic(DefaultSynthetic(0, beta, 11))
		if err != nil {
			t.Fatal(err)
		}
		var means []float64
		for _, d := range devices {
			var sum float64
			for _, v := range d.X {
				sum += float64(v)
			}
			means = append(means, sum/float64(len(d.X)))
		}
		var mu, v float64
		for _, m := range means {
			mu += m / float64(len(means))
		}
		for _, m := range means {
			v += (m - mu) * (m - mu) / float64(len(means)-1)
		}
		return v
	}
	v0, v1 := spread(0), spread(1)
	t.Logf("variance of the devices' mean input: β=0 %.3f, β=1 %.3f", v0, v1)
	if v0 > 0.1 || v1 < 0.3 {
		t.Errorf("variance of device means: β=0 gave %.3f (want ≈ 0.017), β=1 gave %.3f (want ≈ 1)", v0, v1)
	}
}
