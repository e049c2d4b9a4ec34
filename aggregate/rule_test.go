package aggregate

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// upd is one update of a hand-computed case.
type upd struct {
	delta  []float32
	weight float64
}

func ups(weights []float64, deltas ...[]float32) []upd {
	out := make([]upd, len(deltas))
	for i, d := range deltas {
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		out[i] = upd{d, w}
	}
	return out
}

func v(x ...float32) []float32 { return x }

func runRule(t *testing.T, c RuleConfig, params int, us []upd) ([]float32, error) {
	t.Helper()
	r, err := NewRule(c, params)
	if err != nil {
		t.Fatalf("NewRule(%+v): %v", c, err)
	}
	for i, u := range us {
		if err := r.Add(u.delta, u.weight); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	if r.Count() != len(us) {
		t.Fatalf("Count: got %d; want %d", r.Count(), len(us))
	}
	return r.Result()
}

// TestRulesByHand checks every rule on small cases computed by hand; each
// runs with every kernel set the machine has.
func TestRulesByHand(t *testing.T) {
	median := RuleConfig{Name: RuleMedian}
	trimmed := func(beta float64) RuleConfig { return RuleConfig{Name: RuleTrimmedMean, Beta: beta} }
	krum := func(f int) RuleConfig { return RuleConfig{Name: RuleKrum, F: f} }
	multi := func(f, m int) RuleConfig { return RuleConfig{Name: RuleMultiKrum, F: f, M: m} }
	// Krum's line: 0, 1, 2, 3 and an outlier at 100. Squared distances:
	// d01=1 d02=4 d03=9 d04=10000 d12=1 d13=4 d14=9801 d23=1 d24=9604
	// d34=9409. With f=1 a score adds the n−f−2 = 2 nearest: 0: 1+4=5,
	// 1: 1+1=2, 2: 1+1=2, 3: 1+4=5, 4: 9409+9604=19013.
	line := func(w []float64) []upd { return ups(w, v(0), v(1), v(2), v(3), v(100)) }
	cases := []struct {
		name   string
		cfg    RuleConfig
		params int
		us     []upd
		want   []float32
		err    error
	}{
		// FedAvg: Σw·Δ/Σw.
		{"fedavg weights", RuleConfig{}, 2, ups([]float64{100, 300}, v(1, 0), v(0, 4)), v(0.25, 3), nil},
		{"fedavg n=1", RuleConfig{Name: RuleFedAvg}, 2, ups([]float64{7}, v(-1.5, 8)), v(-1.5, 8), nil},
		{"fedavg equal weights", RuleConfig{}, 1, ups(nil, v(1), v(2), v(6)), v(3), nil},

		// Median: unweighted; even n: the mean of the two middle values.
		{"median odd", median, 2, ups(nil, v(1, 10), v(3, -2), v(2, 5)), v(2, 5), nil},
		{"median even", median, 1, ups(nil, v(1), v(4), v(2), v(10)), v(3), nil},
		{"median ties", median, 1, ups(nil, v(5), v(5), v(1), v(5)), v(5), nil},
		{"median n=1", median, 2, ups(nil, v(7, -3)), v(7, -3), nil},
		// A weighted median would be 1 (weight 1000 of 1002).
		{"median ignores weights", median, 1, ups([]float64{1000, 1, 1}, v(1), v(2), v(3)), v(2), nil},

		// Trimmed mean: drop floor(β·n) at each end, average the rest.
		{"trimmed beta=0 is the mean", trimmed(0), 1, ups(nil, v(1), v(2), v(6)), v(3), nil},
		{"trimmed beta=0 ignores weights", trimmed(0), 1, ups([]float64{1, 1, 100}, v(1), v(2), v(6)), v(3), nil},
		{"trimmed 0.2 of 5", trimmed(0.2), 1, ups(nil, v(100), v(2), v(1), v(4), v(3)), v(3), nil},
		{"trimmed 0.25 of 4", trimmed(0.25), 1, ups(nil, v(0), v(3), v(100), v(1)), v(2), nil},
		{"trimmed ties", trimmed(0.2), 1, ups(nil, v(2), v(9), v(2), v(-5), v(2)), v(2), nil},
		// β = 0.49 with n = 5: floor(2.45) = 2 at each end leaves one: the median.
		{"trimmed largest beta keeps one", trimmed(0.49), 1, ups(nil, v(7), v(1), v(3), v(50), v(-9)), v(3), nil},
		// β = 0.49 with n = 4: floor(1.96) = 1 at each end leaves two.
		{"trimmed 0.49 of 4", trimmed(0.49), 1, ups(nil, v(7), v(1), v(3), v(50)), v(5), nil},
		{"trimmed n=1", trimmed(0.4), 2, ups(nil, v(7, -3)), v(7, -3), nil},
		// Per coordinate: coordinate 0 drops 1 and 9, coordinate 1 drops -4 and 40.
		{"trimmed per coordinate", trimmed(0.25), 2, ups(nil, v(1, 40), v(9, 0), v(4, -4), v(5, 10)), v(4.5, 5), nil},

		// Krum: the lowest score; tie between 1 and 2 goes to 1.
		{"krum tie goes to the first", krum(1), 1, line(nil), v(1), nil},
		{"krum ignores weights", krum(1), 1, line([]float64{100, 1, 1, 1, 1000}), v(1), nil},
		// f=0, n=3: one nearest. d01=1 d02=25 d12=16: scores 1, 1, 16.
		{"krum f=0 n=3", krum(0), 1, ups(nil, v(0), v(1), v(5)), v(0), nil},
		{"krum n=2f+2 refused", krum(1), 1, ups(nil, v(0), v(1), v(2), v(3)), nil, ErrTooFew},
		{"krum f=0 n=2 refused", krum(0), 1, ups(nil, v(0), v(1)), nil, ErrTooFew},
		{"krum n=1 refused", krum(0), 1, ups(nil, v(4)), nil, ErrTooFew},
		// Squared distances add over coordinates. (5,5) (0,0) (1,0) (0,1):
		// d01=50 d02=41 d03=41 d12=1 d13=1 d23=2; f=0, n=4: the 2 nearest,
		// scores 82, 2, 3, 3.
		{"krum sums coordinates", krum(0), 2, ups(nil, v(5, 5), v(0, 0), v(1, 0), v(0, 1)), v(0, 0), nil},

		// Multi-Krum: m = n−f = 4 lowest scores {0,1,2,3}, weighted mean.
		{"multi_krum m=n-f", multi(1, 0), 1, line(nil), v(1.5), nil},
		// (0·1 + 1·2 + 2·3 + 3·4) / (1+2+3+4) = 2; the outlier's weight 100 is not used.
		{"multi_krum weights", multi(1, 0), 1, line([]float64{1, 2, 3, 4, 100}), v(2), nil},
		// m = 2: {1, 2}, (1·2 + 2·3) / 5.
		{"multi_krum m=2", multi(1, 2), 1, line([]float64{1, 2, 3, 4, 100}), v(float32(8.0 / 5)), nil},
		{"multi_krum m=1 is krum", multi(1, 1), 1, line(nil), v(1), nil},
		{"multi_krum m=n", multi(1, 5), 1, line(nil), v(float32(106.0 / 5)), nil},
		{"multi_krum m>n refused", multi(0, 4), 1, ups(nil, v(0), v(1), v(5)), nil, ErrTooFew},
		{"multi_krum n=2f+2 refused", multi(1, 0), 1, ups(nil, v(0), v(1), v(2), v(3)), nil, ErrTooFew},
		{"multi_krum n=2f+3", multi(1, 0), 1, line(nil), v(1.5), nil},
	}
	forEachKernelSet(t, func(t *testing.T) {
		for _, c := range cases {
			got, err := runRule(t, c.cfg, c.params, c.us)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Errorf("%s: got %v, %v; want error %v", c.name, got, err, c.err)
				}
				continue
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
			}
		}
	})
}

// TestNormBound checks that an update ×10 the round's median norm is
// dropped, before any rule runs, while honest ones, above the median but
// within the bound, stay.
func TestNormBound(t *testing.T) {
	// Norms 1, 1, 1.5, 1 and 10: the median is 1, the outlier 10× it; the
	// bound 2 drops it and keeps the honest 1.5.
	round := ups(nil, v(1, 0), v(0, 1), v(0, 1.5), v(-1, 0), v(10, 0))
	cases := []struct {
		name string
		cfg  RuleConfig
		us   []upd
		want []float32
		err  error
	}{
		{"fedavg without bound", RuleConfig{}, round, v(2, 0.5), nil},
		{"fedavg drops the outlier", RuleConfig{NormBound: 2}, round, v(0, 0.625), nil},
		{"a norm at the limit stays", RuleConfig{NormBound: 10}, round, v(2, 0.5), nil},
		// Median of (1,0) (0,1) (0,1.5) (−1,0): (0+0)/2 and (0+1)/2.
		{"median drops the outlier", RuleConfig{Name: RuleMedian, NormBound: 2}, round, v(0, 0.5), nil},
		// Norms 1, 2, 3, 100: median 2.5, limit 5.
		{"median of what stays", RuleConfig{Name: RuleMedian, NormBound: 2}, ups(nil, v(1), v(2), v(3), v(100)), v(2), nil},
		{"median without bound", RuleConfig{Name: RuleMedian}, ups(nil, v(1), v(2), v(3), v(100)), v(2.5), nil},
		{"trimmed mean of what stays", RuleConfig{Name: RuleTrimmedMean, NormBound: 2}, ups(nil, v(1), v(2), v(3), v(100)), v(2), nil},
		// Five updates, one dropped: krum with f = 1 then has n = 4 = 2f+2.
		{"krum counts what stays", RuleConfig{Name: RuleKrum, F: 1, NormBound: 2}, ups(nil, v(1), v(1), v(1), v(1), v(100)), nil, ErrTooFew},
		{"multi_krum of what stays", RuleConfig{Name: RuleMultiKrum, F: 0, NormBound: 2},
			ups([]float64{1, 3, 1, 1}, v(1), v(2), v(3), v(100)), v(float32(10.0 / 5)), nil},
		// All norms 0: the median is 0 and a zero norm stays.
		{"zero median", RuleConfig{NormBound: 2}, ups(nil, v(0), v(0), v(0), v(1)), v(0), nil},
	}
	for _, c := range cases {
		got, err := runRule(t, c.cfg, len(c.us[0].delta), c.us)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: got %v, %v; want error %v", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// allRules is one configuration of every rule, with and without a norm
// bound, that accepts at least three updates.
var allRules = []RuleConfig{
	{}, {NormBound: 3},
	{Name: RuleMedian}, {Name: RuleMedian, NormBound: 3},
	{Name: RuleTrimmedMean, Beta: 0.2}, {Name: RuleTrimmedMean, Beta: 0.2, NormBound: 3},
	{Name: RuleKrum}, {Name: RuleKrum, NormBound: 3},
	{Name: RuleMultiKrum}, {Name: RuleMultiKrum, M: 2, NormBound: 3},
}

// TestRulesRefuseBadUpdates checks, for every rule, that a wrong length,
// NaN, ±Inf (in the vectorised body and in the tail) and a bad weight are
// refused by Add with ErrShape or ErrNotFinite, and change nothing.
func TestRulesRefuseBadUpdates(t *testing.T) {
	const params = 100 // 64 values for the vector kernels, 36 in the tail
	r := rand.New(rand.NewPCG(5, 6))
	good := [][]float32{randomFloats(r, params), randomFloats(r, params), randomFloats(r, params)}
	with := func(i int, x float32) []float32 {
		d := slices.Clone(good[0])
		d[i] = x
		return d
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	bad := []struct {
		name   string
		delta  []float32
		weight float64
		want   error
	}{
		{"short", good[0][:params-1], 1, ErrShape},
		{"long", append(slices.Clone(good[0]), 1), 1, ErrShape},
		{"empty", nil, 1, ErrShape},
		{"NaN first", with(0, nan), 1, ErrNotFinite},
		{"NaN in a middle quarter", with(40, nan), 1, ErrNotFinite},
		{"+Inf in the tail", with(99, inf), 1, ErrNotFinite},
		{"-Inf", with(63, -inf), 1, ErrNotFinite},
		{"zero weight", good[1], 0, ErrNotFinite},
		{"negative weight", good[1], -1, ErrNotFinite},
		{"NaN weight", good[1], math.NaN(), ErrNotFinite},
		{"infinite weight", good[1], math.Inf(1), ErrNotFinite},
	}
	for _, cfg := range allRules {
		rule, err := NewRule(cfg, params)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range good {
			if err := rule.Add(g, 2); err != nil {
				t.Fatal(err)
			}
		}
		before, err := rule.Result()
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		for _, b := range bad {
			if err := rule.Add(b.delta, b.weight); !errors.Is(err, b.want) {
				t.Errorf("%+v, %s: got %v; want %v", cfg, b.name, err, b.want)
			}
		}
		after, err := rule.Result()
		if err != nil || rule.Count() != len(good) || !slices.Equal(after, before) {
			t.Errorf("%+v: refused updates changed the rule: count %d, error %v", cfg, rule.Count(), err)
		}
		if _, err := must(NewRule(cfg, params)).Result(); !errors.Is(err, ErrEmpty) {
			t.Errorf("%+v with no update: got %v; want ErrEmpty", cfg, err)
		}
	}
}

func must[T any](x T, err error) T {
	if err != nil {
		panic(err)
	}
	return x
}

// TestRulesMatchNaive compares every rule, on random updates longer than
// the kernels' blocks, Krum's column blocks and measuring groups, with a
// direct computation, under every kernel set.
func TestRulesMatchNaive(t *testing.T) {
	const params, n = 5000, 19
	r := rand.New(rand.NewPCG(7, 8))
	us := make([][]float32, n)
	ws := make([]float64, n)
	for j := range us {
		us[j] = randomFloats(r, params)
		ws[j] = float64(1 + r.IntN(50))
	}
	col := func(i int) []float64 {
		c := make([]float64, n)
		for j, u := range us {
			c[j] = float64(u[i])
		}
		slices.Sort(c)
		return c
	}
	naive := map[string]func(i int) float64{
		RuleFedAvg: func(i int) float64 {
			s, w := 0.0, 0.0
			for j, u := range us {
				s += ws[j] * float64(u[i])
				w += ws[j]
			}
			return s / w
		},
		RuleMedian: func(i int) float64 { return col(i)[n/2] },
		RuleTrimmedMean: func(i int) float64 { // β = 0.3: floor(5.7) = 5 at each end
			c := col(i)[5 : n-5]
			s := 0.0
			for _, x := range c {
				s += x
			}
			return s / float64(len(c))
		},
	}
	// Krum with f = 3 by brute force.
	const f = 3
	score := make([]float64, n)
	for i := range us {
		var d []float64
		for j := range us {
			if j != i {
				s := 0.0
				for k := range us[i] {
					x := float64(us[i][k]) - float64(us[j][k])
					s += x * x
				}
				d = append(d, s)
			}
		}
		slices.Sort(d)
		for _, x := range d[:n-f-2] {
			score[i] += x
		}
	}
	best := make([]int, n)
	for i := range best {
		best[i] = i
	}
	slices.SortStableFunc(best, func(a, b int) int { return cmp.Compare(score[a], score[b]) })
	chosen := slices.Sorted(slices.Values(best[:n-f]))
	naive[RuleMultiKrum] = func(i int) float64 {
		s, w := 0.0, 0.0
		for _, j := range chosen {
			s += ws[j] * float64(us[j][i])
			w += ws[j]
		}
		return s / w
	}
	naive[RuleKrum] = func(i int) float64 { return float64(us[best[0]][i]) }
	cfgs := []RuleConfig{{}, {Name: RuleMedian}, {Name: RuleTrimmedMean, Beta: 0.3}, {Name: RuleKrum, F: f}, {Name: RuleMultiKrum, F: f}}
	forEachKernelSet(t, func(t *testing.T) {
		for _, cfg := range cfgs {
			rule := must(NewRule(cfg, params))
			for j, u := range us {
				if err := rule.Add(u, ws[j]); err != nil {
					t.Fatal(err)
				}
			}
			got, err := rule.Result()
			if err != nil {
				t.Fatalf("%+v: %v", cfg, err)
			}
			name := cmpOr(cfg.Name, RuleFedAvg)
			for i, g := range got {
				want := naive[name](i)
				if math.Abs(float64(g)-want) > 1e-6*math.Abs(want)+1e-30 {
					t.Fatalf("%s coordinate %d: got %v; want %v", name, i, g, want)
				}
			}
		}
	})
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestResultsDoNotDependOnTheMachine checks that every rule gives the same
// bits with every kernel set and any number of goroutines, on a model big
// enough to be split.
func TestResultsDoNotDependOnTheMachine(t *testing.T) {
	params := 2*minSpan + 1001
	if testing.Short() {
		t.Skip("large model")
	}
	r := rand.New(rand.NewPCG(9, 10))
	const n = 12
	us := make([][]float32, n)
	for j := range us {
		us[j] = randomFloats(r, params)
	}
	cfgs := append(slices.Clone(allRules), RuleConfig{Name: RuleTrimmedMean, Beta: 0.25})
	for _, cfg := range cfgs {
		var want []float32
		for _, k := range kernelSets() {
			for _, p := range []int{1, 3} {
				saved := kernels
				kernels = k
				cfg.Parallelism = p
				rule := must(NewRule(cfg, params))
				for j, u := range us {
					if err := rule.Add(u, float64(1+j)); err != nil {
						t.Fatal(err)
					}
				}
				got, err := rule.Result()
				kernels = saved
				if err != nil {
					t.Fatal(err)
				}
				if want == nil {
					want = got
				} else if !slices.Equal(got, want) {
					t.Errorf("%+v: kernels %s with %d goroutines differ from generic with 1", cfg, k.name, p)
				}
			}
		}
	}
}

func TestTrimCount(t *testing.T) {
	cases := []struct {
		beta float64
		n    int
		want int
	}{
		{0, 10, 0}, {0.1, 10, 1}, {0.29, 100, 29}, {0.3, 10, 3}, {0.49, 5, 2}, {0.49, 4, 1},
		{0.4999999999999, 2, 0}, // β·n + 1e−9 would round up to 1 and leave nothing
		{0.2, 4, 0}, {0.25, 4, 1}, {0.45, 1, 0},
	}
	for _, c := range cases {
		if got := trimCount(c.beta, c.n); got != c.want {
			t.Errorf("trimCount(%v, %d): got %d; want %d", c.beta, c.n, got, c.want)
		}
	}
}

// TestNetworkSorts runs every kernel set's sorting network on rows of
// random values, duplicates, signed zeros, extremes and sorted or reversed
// input, for many n, and checks that every lane comes out sorted and holds
// the same values.
func TestNetworkSorts(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}
	fill := map[string]func(n, l, i int) float32{
		"random":   func(n, l, i int) float32 { return float32(r.NormFloat64()) },
		"few":      func(n, l, i int) float32 { return float32(r.IntN(3)) },
		"special":  func(n, l, i int) float32 { return special[r.IntN(len(special))] },
		"sorted":   func(n, l, i int) float32 { return float32(i) },
		"reversed": func(n, l, i int) float32 { return float32(n - i + l) },
	}
	sizes := []int{100, 127, 128, 129, 257, 1000}
	for n := 1; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	for _, k := range kernelSets() {
		for name, f := range fill {
			for _, n := range sizes {
				rows := make([]float32, n*netLanes)
				for i := range n {
					for l := range netLanes {
						rows[i*netLanes+l] = f(n, l, i)
					}
				}
				want := make([][]float32, netLanes)
				for l := range want {
					for i := range n {
						want[l] = append(want[l], rows[i*netLanes+l])
					}
					slices.Sort(want[l])
				}
				k.sortnet(rows, network(n))
				for l := range netLanes {
					for i := range n {
						if got := rows[i*netLanes+l]; got != want[l][i] { // −0 == +0
							t.Fatalf("%s, %s, n=%d: lane %d row %d is %v; want %v", k.name, name, n, l, i, got, want[l][i])
						}
					}
				}
			}
		}
	}
}

// TestSignedZerosDoNotShow: where a kernel set sorts −0 and +0 must not
// change a result's bits.
func TestSignedZerosDoNotShow(t *testing.T) {
	neg := float32(math.Copysign(0, -1))
	for _, c := range []struct {
		cfg RuleConfig
		us  []upd
	}{
		{RuleConfig{Name: RuleMedian}, ups(nil, v(neg), v(neg), v(0))},
		{RuleConfig{Name: RuleMedian}, ups(nil, v(neg), v(neg))},
		{RuleConfig{Name: RuleMedian}, ups(nil, v(neg), v(0), v(neg), v(0))},
		{RuleConfig{Name: RuleTrimmedMean, Beta: 0.2}, ups(nil, v(neg), v(neg), v(neg), v(neg), v(0))},
		{RuleConfig{Name: RuleTrimmedMean}, ups(nil, v(neg), v(neg))},
	} {
		forEachKernelSet(t, func(t *testing.T) {
			got, err := runRule(t, c.cfg, 1, c.us)
			if err != nil || math.Float32bits(got[0]) != 0 {
				t.Errorf("%+v: got %v (bits %#x), %v; want +0", c.cfg, got, math.Float32bits(got[0]), err)
			}
		})
	}
}

func TestNetworkSize(t *testing.T) {
	// Batcher's odd–even merge sort on 2^p inputs has (p²−p+4)·2^(p−2) − 1
	// compare-exchanges.
	for p := 2; p <= 10; p++ {
		n := 1 << p
		if got, want := len(network(n).pairs)/2, (p*p-p+4)<<(p-2)-1; got != want {
			t.Errorf("n=%d: %d compare-exchanges; want %d", n, got, want)
		}
	}
	if len(network(1).pairs) != 0 || len(network(2).pairs) != 2 {
		t.Errorf("n=1, 2: got %d and %d compare-exchanges", len(network(1).pairs)/2, len(network(2).pairs)/2)
	}
}

func TestRuleConfigValidate(t *testing.T) {
	cases := []struct {
		cfg   RuleConfig
		field string // "" when valid
	}{
		{RuleConfig{}, ""},
		{RuleConfig{Name: RuleFedAvg, NormBound: 1}, ""},
		{RuleConfig{Name: RuleMedian}, ""},
		{RuleConfig{Name: RuleTrimmedMean}, ""},
		{RuleConfig{Name: RuleTrimmedMean, Beta: 0.49}, ""},
		{RuleConfig{Name: RuleKrum, F: 3}, ""},
		{RuleConfig{Name: RuleMultiKrum, F: 2, M: 5}, ""},
		{RuleConfig{Name: "mean"}, "rule"},
		{RuleConfig{Name: RuleTrimmedMean, Beta: 0.5}, "beta"},
		{RuleConfig{Name: RuleTrimmedMean, Beta: -0.1}, "beta"},
		{RuleConfig{Name: RuleTrimmedMean, Beta: math.NaN()}, "beta"},
		{RuleConfig{Name: RuleMedian, Beta: 0.1}, "beta"},
		{RuleConfig{Name: RuleKrum, F: -1}, "f"},
		{RuleConfig{Name: RuleMedian, F: 1}, "f"},
		{RuleConfig{Name: RuleMultiKrum, M: -1}, "m"},
		{RuleConfig{Name: RuleKrum, M: 3}, "m"},
		{RuleConfig{NormBound: 0.5}, "norm_bound"},
		{RuleConfig{NormBound: -1}, "norm_bound"},
		{RuleConfig{NormBound: math.Inf(1)}, "norm_bound"},
		{RuleConfig{NormBound: math.NaN()}, "norm_bound"},
		{RuleConfig{Parallelism: -1}, "parallelism"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: got %v; want valid", c.cfg, err)
		case c.field != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field+" ")):
			t.Errorf("%+v: got %v; want an ErrConfig naming %q", c.cfg, err, c.field)
		}
		if _, nerr := NewRule(c.cfg, 3); (nerr == nil) != (err == nil) {
			t.Errorf("%+v: NewRule error %v; Validate %v", c.cfg, nerr, err)
		}
	}
	if _, err := NewRule(RuleConfig{}, 0); !errors.Is(err, ErrShape) {
		t.Errorf("NewRule with 0 parameters: got %v; want ErrShape", err)
	}
}
