package secagg

import (
	"errors"
	"testing"
	"time"
)

// TestChooseGraphDocumented: the degrees and thresholds DESIGN.md ("Choosing
// k and T") gives for 5% corrupt and 33% dropout, exactly; and within 8 of
// the degree and 4 of the threshold of Google's production parameters
// (graph_parameter_finder_test.cc, semi-honest, γ = 0.05 corrupt, δ = 0.33
// dropout), which come from a different search and so are not exact here.
func TestChooseGraphDocumented(t *testing.T) {
	for _, c := range []struct{ n, k, t, googleK, googleT int }{
		{100, 30, 6, 28, 6},
		{1000, 78, 27, 72, 24},
		{10000, 88, 30, 86, 29},
	} {
		k, th, err := ChooseGraph(c.n, 0.33, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if k != c.k || th != c.t {
			t.Errorf("n=%d: got %d/%d; want %d/%d (DESIGN.md)", c.n, k, th, c.k, c.t)
		}
		p := Params{N: c.n, K: k, T: th, Length: 1}
		if err := p.Validate(); err != nil {
			t.Fatalf("n=%d: chosen parameters invalid: %v", c.n, err)
		}
		if k < c.googleK-8 || k > c.googleK+8 || th < c.googleT-4 || th > c.googleT+4 {
			t.Errorf("n=%d: got %d/%d; want within 8 and 4 of Google's %d/%d", c.n, k, th, c.googleK, c.googleT)
		}
	}
	if _, _, err := ChooseGraph(2, 0.1, 0.1); err == nil {
		t.Error("2 clients accepted")
	}
}

// TestChooseGraphReturnsQuickly: the search once took n³ steps when no
// sparse graph qualified (two minutes for 3000 clients, for ever for the
// 4 billion a job file may name); it now takes at most n²/4 and refuses
// cohorts above MaxClients at once.
func TestChooseGraphReturnsQuickly(t *testing.T) {
	for _, c := range []struct {
		n                int
		dropout, corrupt float64
		ok               bool
	}{
		{2000, 0.99, 0.5, false},
		{2000, 0.5, 0.5, false},
		{2000, 0.1, 0.9, false},
		{2000, 0.33, 0.05, true},
		{MaxClients + 1, 0.33, 0.05, false},
		{1 << 32, 0.99, 0.9, false},
	} {
		start := time.Now()
		_, _, err := ChooseGraph(c.n, c.dropout, c.corrupt)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrParams) {
			t.Errorf("ChooseGraph(%d, %v, %v): got %v; want ok = %v", c.n, c.dropout, c.corrupt, err, c.ok)
		}
		// Generous: -race and a loaded machine; it was minutes.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("ChooseGraph(%d, %v, %v) took %v", c.n, c.dropout, c.corrupt, d)
		}
	}
}
