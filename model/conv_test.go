package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseCNNSpec(t *testing.T) {
	cases := []struct {
		in     string
		params int
		layers []LayerKind
	}{
		{fedAvgCNN, 1_663_370, []LayerKind{Conv, ReLU, MaxPool, Conv, ReLU, MaxPool, Flatten, Dense, ReLU, Dense}},
		{"cnn:28x28x1-10", 7850, []LayerKind{Flatten, Dense}},
		{"cnn:8x6x3-c3x4-p3-5", 4*(3*9+1) + 4*2*2*5 + 5, []LayerKind{Conv, ReLU, MaxPool, Flatten, Dense}},
		{"cnn:5x5x2-c1x3-f4-f4-2", 3*3 + 75*4 + 4 + 20 + 10, []LayerKind{Conv, ReLU, Flatten, Dense, ReLU, Dense, ReLU, Dense}},
		{"cnn:7x7x1-p2-3", 9*3 + 3, []LayerKind{MaxPool, Flatten, Dense}}, // 7x7 pools to 3x3
	}
	for _, c := range cases {
		spec, err := ParseSpec(c.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", c.in, err)
			continue
		}
		var kinds []LayerKind
		for _, l := range spec.Layers {
			kinds = append(kinds, l.Kind)
		}
		if got := spec.NumParams(); got != c.params || !slices.Equal(kinds, c.layers) {
			t.Errorf("ParseSpec(%q): %d parameters, layers %v; want %d, %v", c.in, got, kinds, c.params, c.layers)
		}
		if spec.String() != c.in {
			t.Errorf("ParseSpec(%q).String() = %q", c.in, spec.String())
		}
	}
	spec := MustParseSpec(fedAvgCNN)
	if spec.Inputs() != 784 || spec.Classes() != 10 || spec.Widths[0] != 784 || spec.Widths[len(spec.Widths)-1] != 10 {
		t.Errorf("FedAvg CNN reads %d inputs into %d classes (widths %v); want 784 and 10", spec.Inputs(), spec.Classes(), spec.Widths)
	}
	for _, bad := range []string{
		"cnn:28x28x1", "cnn:28x28-10", "cnn:28x28x1x1-10", "cnn:0x28x1-10", "cnn:28x28x1-c4x32-10", "cnn:28x28x1-c5x0-10",
		"cnn:28x28x1-c17x2-10", "cnn:28x28x1-c5-10", "cnn:28x28x1-p1-10", "cnn:28x28x1-p29-10", "cnn:28x28x1-p-10",
		"cnn:28x28x1-f10-c3x2-10", "cnn:28x28x1-f10-p2-10", "cnn:28x28x1-c5x32-1", "cnn:28x28x1-x5-10", "cnn:28x28x1-f+5-10",
		"cnn:28x28x1-c+5x2-10", "cnn:256x256x1-c5x4096-10", "cnn:28x28x1-f65536-f65536-10", "cnn:28x28x1-c5x32--10",
		"cnn:1x1x1" + string(bytes.Repeat([]byte("-f1"), MaxDenseLayers+1)) + "-2",
	} {
		if _, err := ParseSpec(bad); !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParseSpec(%q): got %v; want ErrBadSpec", bad, err)
		}
	}
}

// layerCheck compares a layer's analytic gradients, with respect to its
// input and its parameters, with central differences of L = Σ r·y, which
// it computes in float64 (r random, y the layer's float32 output).
// forward computes y from x and p; backward returns dL/dx and dL/dp for
// dL/dy = r. Convolutions are linear in x and in p, so the differences are
// exact up to rounding whatever eps; max-pooling is piecewise linear, and a
// coordinate whose step moves an argmax is skipped (changed reports it).
func layerCheck(t *testing.T, x, p []float32, outLen int,
	forward func(x, p []float32) []float32, backward func(x, p, r []float32) (dx, dp []float32), changed func() bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	r := make([]float32, outLen)
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	objective := func() float64 {
		var s float64
		for i, v := range forward(x, p) {
			s += float64(r[i]) * float64(v)
		}
		return s
	}
	forward(x, p)
	dx, dp := backward(x, p, r)
	dx, dp = slices.Clone(dx), slices.Clone(dp)
	const eps = 1e-2
	for _, v := range []struct {
		name string
		vals []float32
		grad []float32
	}{{"input", x, dx}, {"parameter", p, dp}} {
		if v.grad == nil {
			continue
		}
		skipped := 0
		for i := range v.vals {
			orig := v.vals[i]
			v.vals[i] = orig + eps
			up := objective()
			kink := changed != nil && changed()
			v.vals[i] = orig - eps
			down := objective()
			kink = kink || changed != nil && changed()
			v.vals[i] = orig
			forward(x, p)
			if kink {
				skipped++
				continue
			}
			numeric := (up - down) / (2 * eps)
			if d := math.Abs(numeric - float64(v.grad[i])); d > 1e-3*max(1, math.Abs(numeric)) {
				t.Errorf("d/d%s[%d]: analytic %g; finite difference %g", v.name, i, v.grad[i], numeric)
			}
		}
		if skipped > len(v.vals)/10 {
			t.Errorf("%d of %d %ss skipped at a kink", skipped, len(v.vals), v.name)
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

func TestConvGradient(t *testing.T) {
	for _, c := range []struct{ c, h, w, k, n, rows int }{
		{1, 5, 5, 3, 2, 2}, {3, 4, 6, 5, 4, 3}, {2, 3, 3, 1, 3, 2}, {2, 7, 2, 3, 2, 1}, {1, 2, 2, 5, 1, 2},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d_k%d_n%d", c.h, c.w, c.c, c.k, c.n), func(t *testing.T) {
			l := LayerSpec{Kind: Conv, In: c.c * c.h * c.w, Out: c.n * c.h * c.w, C: c.c, H: c.h, W: c.w, Size: c.k}
			rng := rand.New(rand.NewPCG(1, uint64(c.k)))
			x := randSlice(rng, c.rows*l.In)
			p := randSlice(rng, l.NumParams())
			nw := c.n * c.c * c.k * c.k
			out, col := make([]float32, c.rows*l.Out), make([]float32, c.c*c.k*c.k*c.h*c.w)
			dx, dp, gwt := make([]float32, len(x)), make([]float32, len(p)), make([]float32, nw)
			forward := func(x, p []float32) []float32 {
				convForward(l, p[:nw], p[nw:], x, out, col, c.rows)
				return out
			}
			backward := func(x, p, r []float32) ([]float32, []float32) {
				convBackward(l, p[:nw], dp[:nw], dp[nw:], gwt, x, r, dx, col, c.rows)
				return dx, dp
			}
			layerCheck(t, x, p, len(out), forward, backward, nil)
			// Against the definition, on the first output of each channel's
			// top-left pixel and a middle one.
			forward(x, p)
			for ch := range c.n {
				for _, yx := range [][2]int{{0, 0}, {c.h / 2, c.w / 2}} {
					want := float64(p[nw+ch])
					for ci := range c.c {
						for i := range c.k {
							for j := range c.k {
								sy, sx := yx[0]+i-c.k/2, yx[1]+j-c.k/2
								if sy >= 0 && sy < c.h && sx >= 0 && sx < c.w {
									want += float64(p[((ch*c.c+ci)*c.k+i)*c.k+j]) * float64(x[(ci*c.h+sy)*c.w+sx])
								}
							}
						}
					}
					if got := out[(ch*c.h+yx[0])*c.w+yx[1]]; math.Abs(float64(got)-want) > 1e-4 {
						t.Errorf("output [%d][%d][%d] = %g; want %g", ch, yx[0], yx[1], got, want)
					}
				}
			}
		})
	}
}

func TestMaxPoolGradient(t *testing.T) {
	for _, c := range []struct{ c, h, w, s, rows int }{{1, 4, 4, 2, 2}, {3, 6, 4, 2, 2}, {2, 7, 5, 2, 1}, {2, 6, 6, 3, 2}} {
		t.Run(fmt.Sprintf("%dx%dx%d_p%d", c.h, c.w, c.c, c.s), func(t *testing.T) {
			l := LayerSpec{Kind: MaxPool, In: c.c * c.h * c.w, Out: c.c * (c.h / c.s) * (c.w / c.s), C: c.c, H: c.h, W: c.w, Size: c.s}
			rng := rand.New(rand.NewPCG(2, uint64(c.s)))
			x := randSlice(rng, c.rows*l.In)
			out, arg, dx := make([]float32, c.rows*l.Out), make([]int32, c.rows*l.Out), make([]float32, len(x))
			var ref []int32
			forward := func(x, _ []float32) []float32 {
				poolForward(l, x, out, arg, c.rows)
				return out
			}
			backward := func(x, _, r []float32) ([]float32, []float32) {
				ref = slices.Clone(arg)
				poolBackward(l, r, dx, arg, c.rows)
				return dx, nil
			}
			layerCheck(t, x, nil, len(out), forward, backward, func() bool { return !slices.Equal(arg, ref) })
			// Each output is the maximum of its window.
			forward(x, nil)
			oh, ow := c.h/c.s, c.w/c.s
			for k, v := range out {
				r, ch, y, xx := k/l.Out, k%l.Out/(oh*ow), k%(oh*ow)/ow, k%ow
				best := float32(math.Inf(-1))
				for i := range c.s {
					for j := range c.s {
						best = max(best, x[r*l.In+(ch*c.h+y*c.s+i)*c.w+xx*c.s+j])
					}
				}
				if v != best {
					t.Fatalf("output %d = %g; want the window's maximum %g", k, v, best)
				}
			}
		})
	}
}

// TestCNNGradient checks the whole CNN's gradient, every layer kind in
// one network, against finite differences of the objective, with and
// without the FedProx term.
func TestCNNGradient(t *testing.T) {
	for _, c := range []struct {
		spec string
		mu   float32
	}{{"cnn:6x5x2-c3x3-p2-c3x4-f6-3", 0}, {"cnn:6x5x2-c3x3-p2-c3x4-f6-3", 0.5}, {"cnn:4x4x1-c1x2-p2-3", 0}} {
		t.Run(fmt.Sprintf("%s_mu%g", c.spec, c.mu), func(t *testing.T) {
			spec := MustParseSpec(c.spec)
			rng := rand.New(rand.NewPCG(5, 6))
			m, anchor := New(spec, 3), New(spec, 4).Params
			const rows = 3
			net := newNetwork(spec, rows)
			x, y := randomBatch(rng, spec, rows)
			params := m.Params
			_, grad := objective(net, params, x, y, anchor, 0, c.mu)
			const eps = 1e-3
			worst, kinks := 0.0, 0
			for i := range params {
				orig := params[i]
				params[i] = orig + eps
				up, _ := objective(net, params, x, y, anchor, 0, c.mu)
				upPattern := reluPattern(net)
				params[i] = orig - eps
				down, _ := objective(net, params, x, y, anchor, 0, c.mu)
				params[i] = orig
				if reluPattern(net) != upPattern {
					kinks++
					continue
				}
				numeric := (up - down) / (2 * eps)
				diff := math.Abs(numeric-float64(grad[i])) / max(1e-2, math.Abs(numeric)+math.Abs(float64(grad[i])))
				worst = max(worst, diff)
				if diff > 2e-2 {
					t.Errorf("d/dparam[%d]: analytic %g; finite difference %g", i, grad[i], numeric)
				}
			}
			// A convolution's weight moves every pixel of its channel, so in
			// a network this small more of them cross a kink than in an MLP.
			if kinks > len(params)/4 {
				t.Errorf("%d of %d parameters crossed a kink", kinks, len(params))
			}
			t.Logf("worst relative error %.2g over %d parameters (%d skipped at a kink)", worst, len(params), kinks)
		})
	}
}

// TestCNNSafetensorsLayout: the FedAvg CNN's file has the state_dict of
// torch.nn.Sequential(Conv2d(1,32,5,padding=2), ReLU(), MaxPool2d(2),
// Conv2d(32,64,5,padding=2), ReLU(), MaxPool2d(2), Flatten(),
// Linear(3136,512), ReLU(), Linear(512,10)): names, shapes and order, and
// fc1's inputs in Flatten's channel-major order.
func TestCNNSafetensorsLayout(t *testing.T) {
	m := New(MustParseSpec(fedAvgCNN), 1)
	var buf bytes.Buffer
	if err := m.WriteSafetensors(&buf, nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	hl := binary.LittleEndian.Uint64(b)
	var header map[string]tensorInfo
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(b[8:8+hl], &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "__metadata__")
	hb, _ := json.Marshal(raw)
	if err := json.Unmarshal(hb, &header); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		shape []int
	}{
		{"0.weight", []int{32, 1, 5, 5}}, {"0.bias", []int{32}}, {"3.weight", []int{64, 32, 5, 5}}, {"3.bias", []int{64}},
		{"7.weight", []int{512, 3136}}, {"7.bias", []int{512}}, {"9.weight", []int{10, 512}}, {"9.bias", []int{10}},
	}
	if len(header) != len(want) {
		t.Errorf("%d tensors; want %d", len(header), len(want))
	}
	var pos int64
	for _, w := range want {
		ti, ok := header[w.name]
		if !ok || !slices.Equal(ti.Shape, w.shape) || ti.Offsets[0] != pos {
			t.Errorf("tensor %s: %+v; want shape %v at byte %d", w.name, ti, w.shape, pos)
		}
		pos = ti.Offsets[1]
	}
	data := b[8+hl:]
	value := func(name string, k int) float32 {
		return math.Float32frombits(binary.LittleEndian.Uint32(data[header[name].Offsets[0]+4*int64(k):]))
	}
	// Conv weights lie as nn.Conv2d's [out][in][i][j], the parameters' own order.
	if got, want := value("3.weight", ((5*32+7)*5+2)*5+4), m.Params[832+((5*32+7)*5+2)*5+4]; got != want {
		t.Errorf("3.weight[5][7][2][4] = %g; want %g", got, want)
	}
	// 7.weight[o][c·49 + y·7 + x] multiplies channel c's pixel (y, x) of the
	// second pool's output, which the network's rows hold at c·49 + y·7 + x.
	const fc1 = 52096
	for _, ocyx := range [][4]int{{0, 0, 0, 0}, {3, 1, 0, 0}, {511, 63, 6, 6}, {100, 17, 3, 5}} {
		in := ocyx[1]*49 + ocyx[2]*7 + ocyx[3]
		if got, want := value("7.weight", ocyx[0]*3136+in), m.Params[fc1+in*512+ocyx[0]]; got != want {
			t.Errorf("7.weight[%d][%d] = %g; want W[%d][%d] = %g", ocyx[0], in, got, in, ocyx[0], want)
		}
	}
	got, err := ReadSafetensors(bytes.NewReader(b))
	if err != nil || !slices.Equal(got.Params, m.Params) || got.Spec.String() != fedAvgCNN {
		t.Fatalf("round trip: %v", err)
	}
}

// TestCNNMatchesPyTorch loads CNNs' safetensors files into the equivalent
// torch.nn.Sequential (load_state_dict, strict) and compares PyTorch's
// logits with ours on the same inputs. It needs /usr/bin/python3 with torch
// and numpy.
func TestCNNMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with torch and numpy")
	}
	for _, s := range []string{"cnn:12x10x3-c5x4-p2-c3x6-p2-f16-5", fedAvgCNN} {
		t.Run(s, func(t *testing.T) {
			spec := MustParseSpec(s)
			m := New(spec, 9)
			const rows = 4
			x, _ := randomBatch(rand.New(rand.NewPCG(1, 9)), spec, rows)
			dir := t.TempDir()
			var buf bytes.Buffer
			if err := m.WriteSafetensors(&buf, nil); err != nil {
				t.Fatal(err)
			}
			xb := make([]byte, 0, 4*len(x))
			for _, v := range x {
				xb = binary.LittleEndian.AppendUint32(xb, math.Float32bits(v))
			}
			model, in, out := filepath.Join(dir, "m.safetensors"), filepath.Join(dir, "x.f32"), filepath.Join(dir, "y.f32")
			if err := os.WriteFile(model, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(in, xb, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/usr/bin/python3", "testdata/torch_cnn_forward.py", model, in, out)
			cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("torch_cnn_forward.py: %v\n%s", err, b)
			}
			yb, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			logits := makeNetwork(spec, rows, false).forward(m.Params, x, rows)
			if len(yb) != 4*len(logits) {
				t.Fatalf("PyTorch wrote %d bytes; want %d", len(yb), 4*len(logits))
			}
			worst := 0.0
			for i, v := range logits {
				worst = max(worst, math.Abs(float64(v-math.Float32frombits(binary.LittleEndian.Uint32(yb[4*i:])))))
			}
			if worst >= 1e-4 {
				t.Errorf("max |ours − PyTorch's| = %g; want < 1e-4", worst)
			}
			t.Logf("max |ours − PyTorch's| = %.2g over %d logits", worst, len(logits))
		})
	}
}

// TestIm2colMatchesDefinition checks im2col against its definition, entry
// by entry, and col2im as its adjoint (⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩),
// on shapes with kernels wider than the image and non-square images.
func TestIm2colMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range []struct{ c, h, w, k int }{
		{1, 28, 28, 5}, {2, 14, 14, 5}, {3, 5, 7, 3}, {1, 3, 2, 5}, {2, 1, 1, 3}, {1, 4, 4, 1}, {2, 6, 3, 7},
	} {
		hw, ckk := s.h*s.w, s.c*s.k*s.k
		img := make([]float32, s.c*hw)
		for i := range img {
			img[i] = float32(rng.NormFloat64())
		}
		col := make([]float32, ckk*hw)
		for i := range col {
			col[i] = float32(rng.NormFloat64()) // im2col must overwrite every entry
		}
		im2col(col, img, s.c, s.h, s.w, s.k)
		p := s.k / 2
		for ch := range s.c {
			for i := range s.k {
				for j := range s.k {
					for y := range s.h {
						for x := range s.w {
							want := float32(0)
							if sy, sx := y+i-p, x+j-p; sy >= 0 && sy < s.h && sx >= 0 && sx < s.w {
								want = img[ch*hw+sy*s.w+sx]
							}
							if got := col[((ch*s.k+i)*s.k+j)*hw+y*s.w+x]; got != want {
								t.Fatalf("%+v: col[(%d,%d,%d), (%d,%d)] = %g; want %g", s, ch, i, j, y, x, got, want)
							}
						}
					}
				}
			}
		}
		c := make([]float32, ckk*hw)
		for i := range c {
			c[i] = float32(rng.NormFloat64())
		}
		var lhs float64
		for i, v := range col {
			lhs += float64(v) * float64(c[i])
		}
		back := make([]float32, s.c*hw)
		for i := range back {
			back[i] = 1 // col2im must clear it
		}
		col2im(back, c, s.c, s.h, s.w, s.k)
		var rhs float64
		for i, v := range img {
			rhs += float64(v) * float64(back[i])
		}
		if math.Abs(lhs-rhs) > 1e-3*(1+math.Abs(lhs)) {
			t.Errorf("%+v: ⟨im2col(x), c⟩ = %g but ⟨x, col2im(c)⟩ = %g", s, lhs, rhs)
		}
	}
}
