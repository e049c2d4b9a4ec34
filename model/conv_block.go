package model

import (
	"math"
)

// A convolution block is a Conv layer, its ReLU and a MaxPool after it
// (c5x32-p2 in a spec). The network runs the three as one, an example at
// a time, instead of layer by layer over the whole batch:
//
//   - forward, each example's convolution (without its bias) goes into a
//     one-example buffer, pre, and is pooled from there while it is in
//     the cache, adding the bias and applying the ReLU to the four values
//     of a window and its maximum;
//   - backward, each example's gradient is scattered from the pooled
//     outputs into pre and the convolution's backward pass
//     (convBackwardExample) reads it from there.
//
// At batch 64 the FedAvg CNN's first convolution output, its ReLU output
// and their gradient would be 6.4 MB each (the second's 3.2 MB), written
// and read back from beyond the L2 cache; the block keeps none of them,
// and skips the passes that filled each output with its bias, applied the
// ReLU and cleared the gradient of the pool's input.
//
// Max-pooling commutes with the ReLU and with adding a bias, so the
// block's outputs are the layers'. Its record of where each output came
// from, arg, holds the index of the window's first maximum in the
// example's convolution output, as a MaxPool's does, or, when that
// maximum is not positive and the ReLU stops the gradient, N·H·W: pre
// has one value more, which takes those gradients and is never read.

// convBlock reports whether layer l of layers starts a convolution block.
func convBlock(layers []LayerSpec, l int) bool {
	return layers[l].Kind == Conv && l+2 < len(layers) &&
		layers[l+1].Kind == ReLU && layers[l+2].Kind == MaxPool
}

// convBlockForward runs the block of the Conv layer cl and the MaxPool
// layer pl on rows examples of x, writing the pooled outputs into out and
// their origins into arg. wt and b are the convolution's weights and
// biases; col is its patch-matrix buffer, pre a buffer of cl.Out+1
// values.
func convBlockForward(cl, pl LayerSpec, wt, b, x, out []float32, arg []int32, col, pre []float32, rows int) {
	wm := general(cl.Channels(), cl.C*cl.Size*cl.Size, wt)
	for r := range rows {
		convForwardExample(cl, wm, x[r*cl.In:(r+1)*cl.In], col, pre, 0)
		o, a := out[r*pl.Out:(r+1)*pl.Out], arg[r*pl.Out:(r+1)*pl.Out]
		if pl.Size == 2 {
			poolReLU2(pl, pre, b, o, a)
		} else {
			poolReLU(pl, pre, b, o, a)
		}
	}
}

// poolReLU2 max-pools one example's convolution output pre (without its
// biases b) in 2×2 windows for the MaxPool layer l, adding the bias and
// applying the ReLU, into out, and records the origins in arg.
//
// It compares the values' bits as integers, which compiles to conditional
// moves (Go's max of floats takes a dozen instructions to order NaNs and
// signed zeros, and branches on the data are mispredicted half the
// time). Positive floats order as their bits do and every other value's
// bits are negative, so the largest is the window's maximum whenever that
// is positive, and otherwise the ReLU makes the output 0 whichever it is.
// A window with a NaN or an infinity outputs NaN, so that a convolution
// that diverged makes the loss NaN, as it would through the layers.
func poolReLU2(l LayerSpec, pre, b, out []float32, arg []int32) {
	w, oh, ow := l.W, l.H/2, l.W/2
	stopped := int32(l.In) // the slot of gradients the ReLU stops
	k := 0
	for ch := range l.C {
		base := ch * l.H * w
		img := pre[base : base+l.H*w]
		bias := b[ch]
		for y := range oh {
			top, bot := img[2*y*w:][:2*ow], img[(2*y+1)*w:][:2*ow]
			o, a2 := out[k:k+ow], arg[k:k+ow]
			t0 := int32(base + 2*y*w)
			for xx := range ow {
				// The bias goes on each value before the comparisons, as
				// the Conv layer adds it.
				fa, fb, fc, fd := top[2*xx]+bias, top[2*xx+1]+bias, bot[2*xx]+bias, bot[2*xx+1]+bias
				a, bb, c, d := bits(fa), bits(fb), bits(fc), bits(fd)
				m := max(max(a, bb), max(c, d))
				// The first of equal maxima: a, b, c, then d.
				off := int32(firstOf4(a, bb, c, m, w))
				on := int32(b2i(m > 0)) // the ReLU
				// NaNs and infinities have the largest bits but for the sign.
				const abs, inf, nan = 0x7fffffff, 0x7f800000, 0x7fc00000
				bad := int32(b2i(max(max(a&abs, bb&abs), max(c&abs, d&abs)) >= inf))
				o[xx] = math.Float32frombits(uint32(m&-on | nan&-bad))
				a2[xx] = on*(t0+int32(2*xx)+off) + (1-on)*stopped
			}
			k += ow
		}
	}
}

// bits is v's bits as an int32: positive for positive v, ordered as v.
func bits(v float32) int32 { return int32(math.Float32bits(v)) }

// poolReLU is poolReLU2 for windows of any size.
func poolReLU(l LayerSpec, pre, b, out []float32, arg []int32) {
	s := l.Size
	oh, ow := l.H/s, l.W/s
	k := 0
	for ch := range l.C {
		base := ch * l.H * l.W
		img := pre[base : base+l.H*l.W]
		bias := b[ch]
		for y := range oh {
			for xx := range ow {
				best, bi, special := windowMax(img, l.W, s, y, xx, bias)
				if best > 0 {
					out[k], arg[k] = best+special, int32(base+bi)
				} else {
					out[k], arg[k] = max(special, 0), int32(l.In)
				}
				k++
			}
		}
	}
}

// convBlockBackward is the backward pass of the block of the Conv layer
// cl and the MaxPool layer pl, given the gradient dout of the pooled
// outputs and the origins arg recorded by convBlockForward: it sets gw and
// gb to the convolution's weight and bias gradients and writes the
// gradient of its input x into din unless din is nil. gwt, col and pre
// are work buffers (len(gw), the patch matrix, cl.Out+1 values).
func convBlockBackward(cl, pl LayerSpec, wt, gw, gb, gwt, x, dout, din []float32, arg []int32, col, pre []float32, rows int) {
	n := cl.Channels()
	per := pl.Out / n // pooled outputs per channel
	clear(gb[:n])
	for r := range rows {
		d, a := dout[r*pl.Out:(r+1)*pl.Out], arg[r*pl.Out:(r+1)*pl.Out]
		clear(pre[:cl.Out+1])
		stopped := int32(cl.Out)
		for ch := range n {
			// The bias gradient is the sum of the gradients that pass
			// the ReLU, in two running sums.
			var s0, s1 float32
			dc, ac := d[ch*per:(ch+1)*per], a[ch*per:(ch+1)*per]
			for k, v := range dc {
				i := ac[k]
				pre[i] = v
				v *= float32(b2i(i != stopped))
				if k&1 == 0 {
					s0 += v
				} else {
					s1 += v
				}
			}
			gb[ch] += s0 + s1
		}
		var di []float32
		if din != nil {
			di = din[r*cl.In : (r+1)*cl.In]
		}
		convBackwardExample(cl, wt, gwt, x[r*cl.In:(r+1)*cl.In], pre[:cl.Out], di, col, r > 0)
	}
	transposeInto(gw, gwt, cl.C*cl.Size*cl.Size, n)
}
