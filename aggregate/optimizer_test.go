package aggregate

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestOptimizersByHand runs two or three steps of every optimiser on
// values worked out by hand (the arithmetic is in the comments).
func TestOptimizersByHand(t *testing.T) {
	sqrt := math.Sqrt
	type step struct {
		delta []float32
		want  []float64 // the model after the step
		m, v  []float64 // the state after the step (nil: none)
	}
	cases := []struct {
		name  string
		cfg   OptimizerConfig
		x     []float32
		steps []step
	}{
		{"fedavg default η=1", OptimizerConfig{}, v(1, 2), []step{
			{v(2, -4), []float64{3, -2}, nil, nil},
			{v(0.5, 0.5), []float64{3.5, -1.5}, nil, nil},
		}},
		{"fedavg η=0.5", OptimizerConfig{Name: OptimizerFedAvg, LR: 0.5}, v(1, 2), []step{
			{v(2, -4), []float64{2, 0}, nil, nil},
		}},
		// m = μ·m + Δ; x += η·m, μ = 0.5, η = 2.
		{"fedavgm", OptimizerConfig{Name: OptimizerFedAvgM, LR: 2, Momentum: 0.5}, v(0), []step{
			{v(1), []float64{2}, []float64{1}, nil},        // m = 1; x = 0 + 2·1
			{v(1), []float64{5}, []float64{1.5}, nil},      // m = 0.5 + 1; x = 2 + 3
			{v(-2), []float64{2.5}, []float64{-1.25}, nil}, // m = 0.75 − 2; x = 5 − 2.5
		}},
		// Defaults η = 1, μ = 0.9.
		{"fedavgm defaults", OptimizerConfig{Name: OptimizerFedAvgM}, v(0), []step{
			{v(1), []float64{1}, []float64{1}, nil},
			{v(1), []float64{1 + 1.9}, []float64{1.9}, nil},
		}},
		// β1 = 0.5, τ = 0.5, η = 1: m = (m + Δ)/2; v += Δ²; x += m/(√v + 0.5).
		{"fedadagrad", OptimizerConfig{Name: OptimizerFedAdagrad, LR: 1, Beta1: 0.5, Tau: 0.5}, v(0, 1), []step{
			// m = 1, v = 4: x = 1/2.5 = 0.4. Coordinate 1: Δ = 0 leaves it.
			{v(2, 0), []float64{0.4, 1}, []float64{1, 0}, []float64{4, 0}},
			// m = (1 − 1.5)/2 = −0.25, v = 4 + 2.25 = 6.25: x = 0.4 − 0.25/3.
			// Coordinate 1: m = 1.5, v = 9: x = 1 + 1.5/3.5.
			{v(-1.5, 3), []float64{0.4 - 0.25/3, 1 + 1.5/3.5}, []float64{-0.25, 1.5}, []float64{6.25, 9}},
		}},
		// β1 = 0.5, β2 = 0.75, τ = 0.5: v = 0.75·v + 0.25·Δ².
		{"fedadam", OptimizerConfig{Name: OptimizerFedAdam, LR: 1, Beta1: 0.5, Beta2: 0.75, Tau: 0.5}, v(0), []step{
			{v(2), []float64{2.0 / 3}, []float64{1}, []float64{1}},                   // m = 1, v = 1: x = 1/1.5
			{v(1), []float64{4.0 / 3}, []float64{1}, []float64{1}},                   // m = 1, v = 0.75 + 0.25
			{v(-3), []float64{4.0/3 - 1/(sqrt(3)+0.5)}, []float64{-1}, []float64{3}}, // m = 0.5 − 1.5, v = 0.75 + 2.25
		}},
		// Yogi: v −= 0.25·Δ²·sign(v − Δ²). Three coordinates take the three
		// branches of the sign in step 2: Δ² = v (0), Δ² < v (+), Δ² > v (−).
		{"fedyogi", OptimizerConfig{Name: OptimizerFedYogi, LR: 1, Beta1: 0.5, Beta2: 0.75, Tau: 0.5}, v(0, 0, 0), []step{
			// v = 0 − 0.25·4·sign(0 − 4) = 1; m = 1; x = 1/1.5.
			{v(2, 2, 2), []float64{2.0 / 3, 2.0 / 3, 2.0 / 3}, []float64{1, 1, 1}, []float64{1, 1, 1}},
			// Δ = 1: v stays 1, m = 1. Δ = 0.5: v = 1 − 0.25·0.25, m = 0.75.
			// Δ = 2: v = 1 + 0.25·4 = 2, m = 1.5.
			{v(1, 0.5, 2),
				[]float64{2.0/3 + 1/1.5, 2.0/3 + 0.75/(sqrt(0.9375)+0.5), 2.0/3 + 1.5/(sqrt(2)+0.5)},
				[]float64{1, 0.75, 1.5}, []float64{1, 0.9375, 2}},
		}},
		// Adam on the same second step decays v instead: 0.75 + 0.25·0.25.
		{"fedadam where yogi differs", OptimizerConfig{Name: OptimizerFedAdam, LR: 1, Beta1: 0.5, Beta2: 0.75, Tau: 0.5}, v(0), []step{
			{v(2), []float64{2.0 / 3}, []float64{1}, []float64{1}},
			{v(0.5), []float64{2.0/3 + 0.75/(sqrt(0.8125)+0.5)}, []float64{0.75}, []float64{0.8125}},
		}},
		// Defaults: η = 10^−2.5, β1 = 0.9, β2 = 0.99, τ = 1e−3. Δ = 1:
		// m = 0.1, v = 0.01, x = 10^−2.5 · 0.1/(0.1 + 0.001).
		{"fedadam defaults", OptimizerConfig{Name: OptimizerFedAdam}, v(0), []step{
			{v(1), []float64{math.Pow(10, -2.5) * 0.1 / 0.101}, []float64{0.1}, []float64{0.01}},
		}},
		// η = 0.1, β1 = 0.9, τ = 1e−3; v = Δ² = 4: x = 0.1 · 0.2/(2 + 0.001).
		{"fedadagrad defaults", OptimizerConfig{Name: OptimizerFedAdagrad}, v(0), []step{
			{v(2), []float64{0.1 * 0.2 / 2.001}, []float64{0.2}, []float64{4}},
		}},
		// η = 10^−2.5; v = 0.01·Δ² (sign −1): as Adam on the first step.
		{"fedyogi defaults", OptimizerConfig{Name: OptimizerFedYogi}, v(0), []step{
			{v(1), []float64{math.Pow(10, -2.5) * 0.1 / 0.101}, []float64{0.1}, []float64{0.01}},
		}},
	}
	near := func(got []float32, want []float64) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if math.Abs(float64(got[i])-want[i]) > 1e-6*math.Max(1, math.Abs(want[i])) {
				return false
			}
		}
		return true
	}
	for _, c := range cases {
		x := c.x
		var st *OptimizerState
		for k, s := range c.steps {
			next, nst, err := c.cfg.Step(x, s.delta, st)
			if err != nil {
				t.Fatalf("%s step %d: %v", c.name, k+1, err)
			}
			if !near(next, s.want) {
				t.Errorf("%s step %d: model %v; want %v", c.name, k+1, next, s.want)
			}
			switch {
			case s.m == nil && nst != nil:
				t.Errorf("%s step %d: state %+v; want none", c.name, k+1, nst)
			case s.m != nil && (nst == nil || !near(nst.M, s.m)):
				t.Errorf("%s step %d: state %+v; want m %v", c.name, k+1, nst, s.m)
			case s.v != nil && !near(nst.V, s.v):
				t.Errorf("%s step %d: v %v; want %v", c.name, k+1, nst.V, s.v)
			case s.m != nil && s.v == nil && len(nst.V) != 0:
				t.Errorf("%s step %d: v %v; want none", c.name, k+1, nst.V)
			}
			x, st = next, nst
		}
	}
}

// TestStepLeavesItsInputs checks that Step modifies neither the model,
// the update nor the state, and that a state decoded from its bytes gives
// the same next step as the state itself.
func TestStepLeavesItsInputs(t *testing.T) {
	for _, name := range []string{OptimizerFedAvg, OptimizerFedAvgM, OptimizerFedAdagrad, OptimizerFedAdam, OptimizerFedYogi} {
		cfg := OptimizerConfig{Name: name}
		x, d := v(1, -2, 3), v(0.5, 0.25, -1)
		_, st, err := cfg.Step(x, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		x0, d0 := slices.Clone(x), slices.Clone(d)
		var m0, v0 []float32
		if st != nil {
			m0, v0 = slices.Clone(st.M), slices.Clone(st.V)
		}
		out, next, err := cfg.Step(x, d, st)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(x, x0) || !slices.Equal(d, d0) || st != nil && (!slices.Equal(st.M, m0) || !slices.Equal(st.V, v0)) {
			t.Errorf("%s: Step modified its inputs", name)
		}
		if len(out) > 0 && &out[0] == &x[0] || next != nil && st != nil && len(next.M) > 0 && &next.M[0] == &st.M[0] {
			t.Errorf("%s: Step returned its inputs' memory", name)
		}
		// Round trip through the blob.
		b, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var dec OptimizerState
		if err := dec.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if st != nil && (!slices.Equal(dec.M, st.M) || !slices.Equal(dec.V, st.V)) || st == nil && !dec.empty() {
			t.Fatalf("%s: state %+v decoded as %+v", name, st, dec)
		}
		again, _, err := cfg.Step(x, d, &dec)
		if err != nil || !slices.Equal(again, out) {
			t.Errorf("%s: the decoded state steps to %v, %v; want %v", name, again, err, out)
		}
	}
}

func TestStepRefuses(t *testing.T) {
	adam := OptimizerConfig{Name: OptimizerFedAdam}
	cases := []struct {
		name string
		cfg  OptimizerConfig
		x, d []float32
		st   *OptimizerState
		want error
	}{
		{"short update", OptimizerConfig{}, v(1, 2), v(1), nil, ErrShape},
		{"m too short", adam, v(1, 2), v(1, 1), &OptimizerState{M: v(0), V: v(0, 0)}, ErrState},
		{"v missing", adam, v(1, 2), v(1, 1), &OptimizerState{M: v(0, 0)}, ErrState},
		{"fedavgm with v", OptimizerConfig{Name: OptimizerFedAvgM}, v(1), v(1), &OptimizerState{M: v(0), V: v(0)}, ErrState},
		{"fedavg with state", OptimizerConfig{}, v(1), v(1), &OptimizerState{M: v(0)}, ErrState},
		{"model overflows", OptimizerConfig{}, v(math.MaxFloat32), v(math.MaxFloat32), nil, ErrNotFinite},
		{"v overflows float32", OptimizerConfig{Name: OptimizerFedAdagrad}, v(0), v(1e20), nil, ErrNotFinite},
		{"bad config", OptimizerConfig{Name: "sgd"}, v(1), v(1), nil, ErrConfig},
	}
	for _, c := range cases {
		if out, _, err := c.cfg.Step(c.x, c.d, c.st); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.name, out, err, c.want)
		}
	}
}

func TestOptimizerConfigValidate(t *testing.T) {
	cases := []struct {
		cfg   OptimizerConfig
		field string // "" when valid
	}{
		{OptimizerConfig{}, ""},
		{OptimizerConfig{Name: OptimizerFedAvg, LR: 0.5}, ""},
		{OptimizerConfig{Name: OptimizerFedAvgM, Momentum: 0.99}, ""},
		{OptimizerConfig{Name: OptimizerFedAdagrad, Beta1: 0.5, Tau: 1e-2}, ""},
		{OptimizerConfig{Name: OptimizerFedAdam, Beta2: 0.999}, ""},
		{OptimizerConfig{Name: OptimizerFedYogi}, ""},
		{OptimizerConfig{Name: "sgd"}, "server_optimizer"},
		{OptimizerConfig{LR: -1}, "server_lr"},
		{OptimizerConfig{LR: math.NaN()}, "server_lr"},
		{OptimizerConfig{LR: math.Inf(1)}, "server_lr"},
		{OptimizerConfig{Name: OptimizerFedAvgM, Momentum: 1}, "server_momentum"},
		{OptimizerConfig{Name: OptimizerFedAdam, Momentum: 0.9}, "server_momentum"},
		{OptimizerConfig{Name: OptimizerFedAdam, Beta1: 1}, "beta1"},
		{OptimizerConfig{Name: OptimizerFedAvgM, Beta1: 0.9}, "beta1"},
		{OptimizerConfig{Name: OptimizerFedYogi, Beta2: -0.1}, "beta2"},
		{OptimizerConfig{Name: OptimizerFedAdagrad, Beta2: 0.99}, "beta2"},
		{OptimizerConfig{Name: OptimizerFedAdam, Tau: -1}, "tau"},
		{OptimizerConfig{Name: OptimizerFedAdam, Tau: math.Inf(1)}, "tau"},
		{OptimizerConfig{Tau: 1e-3}, "tau"},
	}
	for _, c := range cases {
		for _, cfg := range []OptimizerConfig{c.cfg, c.cfg.WithDefaults()} {
			err := cfg.Validate()
			switch {
			case c.field == "" && err != nil:
				t.Errorf("%+v: got %v; want valid", cfg, err)
			case c.field != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field+" ")):
				t.Errorf("%+v: got %v; want an ErrConfig naming %q", cfg, err, c.field)
			}
		}
	}
}

func TestWithDefaults(t *testing.T) {
	cases := []struct{ in, want OptimizerConfig }{
		{OptimizerConfig{}, OptimizerConfig{Name: OptimizerFedAvg, LR: 1}},
		{OptimizerConfig{Name: OptimizerFedAvgM}, OptimizerConfig{Name: OptimizerFedAvgM, LR: 1, Momentum: 0.9}},
		{OptimizerConfig{Name: OptimizerFedAdagrad}, OptimizerConfig{Name: OptimizerFedAdagrad, LR: 0.1, Beta1: 0.9, Tau: 1e-3}},
		{OptimizerConfig{Name: OptimizerFedAdam}, OptimizerConfig{Name: OptimizerFedAdam, LR: DefaultLRAdamYogi, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}},
		{OptimizerConfig{Name: OptimizerFedYogi, LR: 0.01, Tau: 1e-4}, OptimizerConfig{Name: OptimizerFedYogi, LR: 0.01, Beta1: 0.9, Beta2: 0.99, Tau: 1e-4}},
	}
	if d := DefaultLRAdamYogi/math.Pow(10, -2.5) - 1; math.Abs(d) > 1e-15 {
		t.Errorf("DefaultLRAdamYogi %v is not 10^−2.5", DefaultLRAdamYogi)
	}
	for _, c := range cases {
		if got := c.in.WithDefaults(); got != c.want {
			t.Errorf("%+v: got %+v; want %+v", c.in, got, c.want)
		}
	}
}

// TestOptimizerStateEncoding checks the byte layout and every refusal.
func TestOptimizerStateEncoding(t *testing.T) {
	st := &OptimizerState{M: v(1, -2), V: v(0.5, 4)}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 2, 0, 0, 0, 2, 0, 0, 0,
		0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, // 1, −2
		0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0x40} // 0.5, 4
	if !bytes.Equal(b, want) {
		t.Fatalf("got % x; want % x", b, want)
	}
	empty, _ := (*OptimizerState)(nil).MarshalBinary()
	if !bytes.Equal(empty, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("nil state: got % x", empty)
	}
	bad := map[string][]byte{
		"empty":           {},
		"short header":    b[:8],
		"truncated":       b[:len(b)-1],
		"trailing byte":   append(slices.Clone(b), 0),
		"version 0":       append([]byte{0}, b[1:]...),
		"version 2":       append([]byte{2}, b[1:]...),
		"v and m differ":  {1, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"v without m":     {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
		"huge length":     {1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
		"just over limit": {1, 0x01, 0x00, 0x00, 0x10, 0, 0, 0, 0},
		"NaN":             {1, 1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0xc0, 0x7f},
		"infinity":        {1, 1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x80, 0xff},
	}
	for name, in := range bad {
		s := OptimizerState{M: v(7)}
		if err := s.UnmarshalBinary(in); !errors.Is(err, ErrState) {
			t.Errorf("%s: got %v; want ErrState", name, err)
		}
		if !slices.Equal(s.M, v(7)) || s.V != nil {
			t.Errorf("%s: a refused decode changed the state to %+v", name, s)
		}
	}
	for name, s := range map[string]*OptimizerState{
		"NaN":         {M: v(float32(math.NaN()))},
		"v without m": {V: v(1)},
		"v shorter":   {M: v(1, 2), V: v(1)},
	} {
		if _, err := s.MarshalBinary(); !errors.Is(err, ErrState) {
			t.Errorf("marshal %s: got %v; want ErrState", name, err)
		}
	}
}

// FuzzOptimizerState decodes arbitrary bytes: no panic, and whatever
// decodes encodes back to the same bytes.
func FuzzOptimizerState(f *testing.F) {
	for _, st := range []*OptimizerState{nil, {M: v(1, -2)}, {M: v(1, -2), V: v(0.5, 4)}} {
		b, _ := st.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s OptimizerState
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error %v does not wrap ErrState", err)
			}
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", s, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip: % x became % x", b, out)
		}
	})
}
