package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestConvBlockMatchesLayers runs the fused convolution block (Conv, ReLU,
// MaxPool an example at a time) and the three layers one after the other
// on the same batch, and checks that the pooled outputs, where each came
// from, and the gradients of the weights, the biases and the input agree.
func TestConvBlockMatchesLayers(t *testing.T) {
	for _, c := range []struct{ c, h, w, k, n, s, rows int }{
		{1, 28, 28, 5, 32, 2, 3}, // the FedAvg CNN's first block
		{4, 14, 14, 5, 6, 2, 2},  // its second, narrower
		{2, 7, 5, 3, 3, 2, 2},    // odd sizes: the last row and column are not pooled
		{3, 6, 6, 1, 4, 2, 3},    // 1×1 kernel: no patch matrix
		{2, 6, 7, 3, 2, 3, 2},    // 3×3 windows
		{1, 3, 3, 5, 2, 3, 1},    // a kernel wider than the image
	} {
		t.Run(fmt.Sprintf("%dx%dx%d_k%d_n%d_p%d", c.h, c.w, c.c, c.k, c.n, c.s), func(t *testing.T) {
			cl := LayerSpec{Kind: Conv, In: c.c * c.h * c.w, Out: c.n * c.h * c.w, C: c.c, H: c.h, W: c.w, Size: c.k}
			pl := LayerSpec{Kind: MaxPool, In: cl.Out, Out: c.n * (c.h / c.s) * (c.w / c.s), C: c.n, H: c.h, W: c.w, Size: c.s}
			rng := rand.New(rand.NewPCG(8, uint64(c.k*100+c.s)))
			x := randSlice(rng, c.rows*cl.In)
			p := randSlice(rng, cl.NumParams())
			nw := c.n * c.c * c.k * c.k
			wt, b := p[:nw], p[nw:]
			// Half the channels shifted well below zero, so that the ReLU
			// stops the gradient of many of their windows.
			for ch := 0; ch < c.n; ch += 2 {
				b[ch] = -1.5 * float32(math.Sqrt(float64(c.c*c.k*c.k)))
			}
			dout := randSlice(rng, c.rows*pl.Out)
			col := make([]float32, c.c*c.k*c.k*c.h*c.w)

			// The layers.
			conv, relu := make([]float32, c.rows*cl.Out), make([]float32, c.rows*cl.Out)
			want, wantArg := make([]float32, c.rows*pl.Out), make([]int32, c.rows*pl.Out)
			convForward(cl, wt, b, x, conv, col, c.rows)
			for i, v := range conv {
				relu[i] = max(v, 0)
			}
			poolForward(pl, relu, want, wantArg, c.rows)
			dconv := make([]float32, c.rows*cl.Out)
			poolBackward(pl, dout, dconv, wantArg, c.rows)
			for i, v := range relu { // the ReLU's mask
				if v <= 0 {
					dconv[i] = 0
				}
			}
			wantG, wantDin := make([]float32, len(p)), make([]float32, len(x))
			convBackward(cl, wt, wantG[:nw], wantG[nw:], make([]float32, nw), x, dconv, wantDin, col, c.rows)

			// The block.
			got, arg := make([]float32, c.rows*pl.Out), make([]int32, c.rows*pl.Out)
			pre := make([]float32, cl.Out+1)
			for i := range pre {
				pre[i] = float32(math.NaN()) // the block must overwrite what it reads
			}
			convBlockForward(cl, pl, wt, b, x, got, arg, col, pre, c.rows)
			stopped := 0
			for k := range got {
				if !close32(got[k], want[k]) {
					t.Fatalf("pooled output %d = %g; want %g", k, got[k], want[k])
				}
				switch {
				case want[k] > 0 && arg[k] != wantArg[k]:
					t.Fatalf("pooled output %d came from %d; want %d", k, arg[k], wantArg[k])
				case want[k] <= 0 && arg[k] != int32(cl.Out):
					t.Fatalf("pooled output %d is %g but its origin is %d; want %d (the ReLU stops its gradient)", k, want[k], arg[k], cl.Out)
				case want[k] <= 0:
					stopped++
				}
			}
			if stopped == 0 || stopped == len(got) {
				t.Fatalf("%d of %d outputs stopped by the ReLU: the test checks too little", stopped, len(got))
			}
			for _, withDin := range []bool{true, false} {
				g := randSlice(rng, len(p)) // the block must overwrite the gradient
				var din []float32
				if withDin {
					din = randSlice(rng, len(x))
				}
				convBlockBackward(cl, pl, wt, g[:nw], g[nw:], make([]float32, nw), x, dout, din, arg, col, pre, c.rows)
				for i := range g {
					if !close32(g[i], wantG[i]) {
						t.Fatalf("din %v: parameter gradient %d = %g; want %g", withDin, i, g[i], wantG[i])
					}
				}
				for i := range din {
					if !close32(din[i], wantDin[i]) {
						t.Fatalf("input gradient %d = %g; want %g", i, din[i], wantDin[i])
					}
				}
			}
		})
	}
}

// TestConvBlockPropagatesNaN: a NaN or an infinity in a window of the
// convolution's output makes the pooled output NaN, whatever its sign
// bit, so that a convolution that diverged makes the loss NaN.
func TestConvBlockPropagatesNaN(t *testing.T) {
	negNaN := math.Float32frombits(0xffc00000) // x86's NaN from Inf − Inf
	for _, s := range []int{2, 3} {
		for _, bad := range []float32{negNaN, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			pl := LayerSpec{Kind: MaxPool, In: 36, Out: 36 / (s * s), C: 1, H: 6, W: 6, Size: s}
			pre := make([]float32, pl.In+1)
			for i := range pre {
				pre[i] = 1
			}
			pre[0] = bad
			out, arg := make([]float32, pl.Out), make([]int32, pl.Out)
			if s == 2 {
				poolReLU2(pl, pre, []float32{0}, out, arg)
			} else {
				poolReLU(pl, pre, []float32{0}, out, arg)
			}
			if !math.IsNaN(float64(out[0])) {
				t.Errorf("p%d, a window holding %g: pooled %g; want NaN", s, bad, out[0])
			}
			if out[1] != 1 {
				t.Errorf("p%d: the next window pooled %g; want 1", s, out[1])
			}
		}
	}
}

// TestMaxPoolPoolsAsMax: the MaxPool layer pools each window as Go's
// max does, for every window size: a NaN anywhere in it (a diverged
// input) gives NaN; infinities are values like any other.
func TestMaxPoolPoolsAsMax(t *testing.T) {
	for _, s := range []int{2, 3} {
		negNaN := math.Float32frombits(0xffc00000)
		for _, c := range []struct {
			bad, want float32
			from      int32 // the input the output came from (any, for NaN)
		}{
			{float32(math.NaN()), float32(math.NaN()), -1}, {negNaN, negNaN, -1}, {float32(math.Inf(1)), float32(math.Inf(1)), 1}, {float32(math.Inf(-1)), 1, 0},
		} {
			pl := LayerSpec{Kind: MaxPool, In: 36, Out: 36 / (s * s), C: 1, H: 6, W: 6, Size: s}
			x := make([]float32, pl.In)
			for i := range x {
				x[i] = 1
			}
			x[1] = c.bad // not the window's first value
			out, arg := make([]float32, pl.Out), make([]int32, pl.Out)
			poolForward(pl, x, out, arg, 1)
			if got := out[0]; !(got == c.want || math.IsNaN(float64(got)) && math.IsNaN(float64(c.want))) || c.from >= 0 && arg[0] != c.from {
				t.Errorf("p%d, a window holding %g: pooled %g from %d; want %g from %d", s, c.bad, got, arg[0], c.want, c.from)
			}
			if out[1] != 1 {
				t.Errorf("p%d: the next window pooled %g; want 1", s, out[1])
			}
		}
	}
}

// close32 reports whether got and want agree to float32 rounding of sums
// taken in another order.
func close32(got, want float32) bool {
	return math.Abs(float64(got-want)) <= 1e-5*(1+math.Abs(float64(want)))
}
