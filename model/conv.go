package model

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// vec runs gonum's vector kernels (assembly on amd64).
var vec gonum.Implementation

// Convolution as a matrix product (im2col): for one C×H×W example, the
// patch matrix col has a row for each (input channel c, kernel row i,
// kernel column j), (c·K+i)·K+j, and a column for each output pixel y·W+x,
// holding the input pixel under that kernel tap, or 0 in the padding. The
// weights in PyTorch's [N][C][K][K] layout are an N × C·K·K matrix, so the
// N×H×W output is weights·col plus the bias of each channel: one Sgemm an
// example, through the fast kernels. The backward pass rebuilds col
// (cheaper than keeping it for every example of the batch) for the weight
// gradient, summed over the batch transposed, col·dOutᵀ (the kernels read
// a transposed A in place but copy a transposed B: dOut is the smaller of
// the two), and scatters weightsᵀ·dOut back onto the input (col2im) for
// the gradient of the input.

// im2col fills col (C·K·K × H·W) with the patches of img (C×H×W) for a
// K×K kernel with padding K/2.
//
// Row (c, i, j) of col is channel c shifted by (dy, dx) = (i−K/2, j−K/2).
// The middle row of each column of taps, (c, K/2, j), is channel c
// shifted by dx alone: one contiguous run of img, copied whole, after
// which the few columns that wrapped around a row edge are zeroed. Every
// other row (c, i, j) is that row shifted by dy whole image rows, edges
// already zeroed: one run copied from it. Only K rows of each channel, not
// K·K, then pay for zeroing the wrapped columns.
func im2col(col, img []float32, c, h, w, k int) {
	p := k / 2
	hw := h * w
	for ch := range c {
		src := img[ch*hw : (ch+1)*hw]
		for j := range k {
			mid := col[((ch*k+p)*k+j)*hw:][:hw]
			dx := j - p
			lo, hi := max(0, -dx), min(w, w-dx) // output columns whose tap is inside
			if lo >= hi {
				for i := range k {
					clear(col[((ch*k+i)*k+j)*hw:][:hw])
				}
				continue
			}
			clear(mid[:lo])
			last := (h-1)*w + hi
			copy(mid[lo:last], src[lo+dx:last+dx])
			clear(mid[last:])
			zeroWrapped(mid, w, lo, hi)
			for i := range k {
				if i == p {
					continue
				}
				row := col[((ch*k+i)*k+j)*hw:][:hw]
				dy := i - p
				y0, y1 := max(0, -dy), min(h, h-dy) // output rows whose source row is inside
				if y0 >= y1 {
					clear(row)
					continue
				}
				clear(row[:y0*w])
				copy(row[y0*w:y1*w], mid[(y0+dy)*w:(y1+dy)*w])
				clear(row[y1*w:])
			}
		}
	}
}

// zeroWrapped zeroes, in each row of width w of a patch-matrix row, the
// columns outside [lo, hi): those a copy of the shifted image as one run
// wrapped around a row edge, where the kernel tap is in the padding.
func zeroWrapped(row []float32, w, lo, hi int) {
	for y := range len(row) / w {
		r := row[y*w : (y+1)*w]
		for x := range lo { // one or two values: a loop, not a call to clear
			r[x] = 0
		}
		for x := hi; x < w; x++ {
			r[x] = 0
		}
	}
}

// col2im adds the patch matrix col (C·K·K × H·W) back onto img (C×H×W),
// which it clears first: the adjoint of im2col, in the reverse order. Each
// row (c, i, j) is added, shifted back by dy rows, onto the middle row
// (c, K/2, j), whose wrapped columns are then zeroed before it is added
// onto the image as one run. col is a work buffer: col2im overwrites it.
func col2im(img, col []float32, c, h, w, k int) {
	clear(img[:c*h*w])
	p := k / 2
	hw := h * w
	for ch := range c {
		dst := img[ch*hw : (ch+1)*hw]
		for j := range k {
			dx := j - p
			lo, hi := max(0, -dx), min(w, w-dx)
			if lo >= hi {
				continue
			}
			mid := col[((ch*k+p)*k+j)*hw:][:hw]
			for i := range k {
				dy := i - p
				y0, y1 := max(0, -dy), min(h, h-dy)
				if i == p || y0 >= y1 {
					continue
				}
				row := col[((ch*k+i)*k+j)*hw:][:hw]
				vec.Saxpy((y1-y0)*w, 1, row[y0*w:y1*w], 1, mid[(y0+dy)*w:(y1+dy)*w], 1)
			}
			zeroWrapped(mid, w, lo, hi)
			last := (h-1)*w + hi
			vec.Saxpy(last-lo, 1, mid[lo:last], 1, dst[lo+dx:last+dx], 1)
		}
	}
}

// convForward computes out (rows × N·H·W) = conv(x) + b for the Conv layer
// l with weights wt (N × C·K·K) and biases b; col is a work buffer of
// C·K·K·H·W values.
func convForward(l LayerSpec, wt, b, x, out, col []float32, rows int) {
	n, hw := l.Channels(), l.H*l.W
	wm := general(n, l.C*l.Size*l.Size, wt)
	for r := range rows {
		o := out[r*l.Out : (r+1)*l.Out]
		for ch, v := range b[:n] {
			oc := o[ch*hw : (ch+1)*hw]
			for i := range oc {
				oc[i] = v
			}
		}
		convForwardExample(l, wm, x[r*l.In:(r+1)*l.In], col, o, 1)
	}
}

// convForwardExample computes o = wm·patches(img) + beta·o for one example
// img of the Conv layer l with weight matrix wm (N × C·K·K); col is the
// patch-matrix buffer (unused for 1×1 kernels, whose patches are img).
func convForwardExample(l LayerSpec, wm blas32.General, img, col, o []float32, beta float32) {
	ckk, hw := l.C*l.Size*l.Size, l.H*l.W
	patches := img
	if l.Size != 1 {
		im2col(col, img, l.C, l.H, l.W, l.Size)
		patches = col
	}
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, wm, general(ckk, hw, patches), beta, general(wm.Rows, hw, o))
}

// convBackward sets gw and gb to the gradient of the loss with respect to
// the Conv layer l's weights and biases, given its input x and the
// gradient dout of its output, and writes the gradient of its input into
// din unless din is nil. gwt is a work buffer of len(gw) values.
func convBackward(l LayerSpec, wt, gw, gb, gwt, x, dout, din, col []float32, rows int) {
	n, hw := l.Channels(), l.H*l.W
	clear(gb[:n])
	for r := range rows {
		d := dout[r*l.Out : (r+1)*l.Out]
		for ch := range n {
			gb[ch] += sum(d[ch*hw : (ch+1)*hw])
		}
		var di []float32
		if din != nil {
			di = din[r*l.In : (r+1)*l.In]
		}
		convBackwardExample(l, wt, gwt, x[r*l.In:(r+1)*l.In], d, di, col, r > 0)
	}
	transposeInto(gw, gwt, l.C*l.Size*l.Size, n)
}

// convBackwardExample adds to gwt (C·K·K × N) the weight gradient of the
// Conv layer l for one example, its input img and the gradient d of its
// output (N×H×W), overwriting gwt instead unless accumulate is set, and
// writes the gradient of the input into di unless di is nil.
func convBackwardExample(l LayerSpec, wt, gwt, img, d, di, col []float32, accumulate bool) {
	n, hw, ckk := l.Channels(), l.H*l.W, l.C*l.Size*l.Size
	patches := img
	if l.Size != 1 {
		im2col(col, img, l.C, l.H, l.W, l.Size)
		patches = col
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	dm := general(n, hw, d)
	blas32.Gemm(blas.NoTrans, blas.Trans, 1, general(ckk, hw, patches), dm, beta, general(ckk, n, gwt))
	if di == nil {
		return
	}
	wm := general(n, ckk, wt)
	if l.Size == 1 {
		blas32.Gemm(blas.Trans, blas.NoTrans, 1, wm, dm, 0, general(ckk, hw, di))
		return
	}
	blas32.Gemm(blas.Trans, blas.NoTrans, 1, wm, dm, 0, general(ckk, hw, col))
	col2im(di, col, l.C, l.H, l.W, l.Size)
}

// transposeInto writes the transpose of src (rows × cols) into dst.
func transposeInto(dst, src []float32, rows, cols int) {
	for q := range rows {
		for o, v := range src[q*cols : (q+1)*cols] {
			dst[o*rows+q] = v
		}
	}
}

// sum returns the sum of v, with four running sums so that the additions
// do not wait on each other.
func sum(v []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(v); i += 4 {
		s0 += v[i]
		s1 += v[i+1]
		s2 += v[i+2]
		s3 += v[i+3]
	}
	for ; i < len(v); i++ {
		s0 += v[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// poolForward max-pools x into out for the MaxPool layer l and records in
// arg, for each output, the index within its example's row of the input
// it came from (the first of equal maxima).
func poolForward(l LayerSpec, x, out []float32, arg []int32, rows int) {
	s := l.Size
	oh, ow := l.H/s, l.W/s
	if s == 2 {
		pool2(l, x, out, arg, rows)
		return
	}
	k := 0
	for r := range rows {
		for ch := range l.C {
			base := ch * l.H * l.W
			img := x[r*l.In+base : r*l.In+base+l.H*l.W]
			for y := range oh {
				for xx := range ow {
					best, bi, _ := windowMax(img, l.W, s, y, xx, 0)
					out[k], arg[k] = best, int32(base+bi)
					k++
				}
			}
		}
	}
}

// windowMax is the largest value, plus bias, of the s×s window (y, xx)
// of an image w values wide, and its index in the image (the first of
// equal maxima): NaN if the window holds one, as Go's max (and pool2)
// gives, with the index of the last NaN. special is NaN when the window
// holds a NaN or an infinity, and 0 otherwise (a sum of the values would
// also overflow to infinity). A bias of 0 is not added, which would make
// −0 +0.
func windowMax(img []float32, w, s, y, xx int, bias float32) (best float32, at int, special float32) {
	at = y*s*w + xx*s
	best = img[at]
	if bias != 0 {
		best += bias
	}
	for i := range s {
		row := img[(y*s+i)*w+xx*s:][:s]
		for j, v := range row {
			if bias != 0 {
				v += bias
			}
			special += v - v // 0, or NaN for a NaN or an infinity
			if v > best || v != v {
				best, at = v, (y*s+i)*w+xx*s+j
			}
		}
	}
	return best, at, special
}

// poolBackward routes the gradient dout of the MaxPool layer l's output to
// the inputs that were the maxima, writing the gradient of its input into
// din.
func poolBackward(l LayerSpec, dout, din []float32, arg []int32, rows int) {
	clear(din[:rows*l.In])
	for r := range rows {
		di := din[r*l.In : (r+1)*l.In]
		a := arg[r*l.Out : (r+1)*l.Out]
		for k, v := range dout[r*l.Out : (r+1)*l.Out] {
			di[a[k]] += v
		}
	}
}

// pool2 is poolForward for 2×2 windows.
func pool2(l LayerSpec, x, out []float32, arg []int32, rows int) {
	w, oh, ow := l.W, l.H/2, l.W/2
	k := 0
	for r := range rows {
		for ch := range l.C {
			base := ch * l.H * w
			img := x[r*l.In+base : r*l.In+base+l.H*w]
			for y := range oh {
				top, bot := img[2*y*w:][:2*ow], img[(2*y+1)*w:][:2*ow]
				o, a2 := out[k:k+ow], arg[k:k+ow]
				t0 := int32(base + 2*y*w)
				for xx := range ow {
					// Branch-free: the maxima of training data fall anywhere,
					// so branches on them are mispredicted half the time.
					a, b, c, d := top[2*xx], top[2*xx+1], bot[2*xx], bot[2*xx+1]
					m := max(max(a, b), max(c, d))
					// The first of equal maxima: a, b, c, then d.
					o[xx], a2[xx] = m, t0+int32(2*xx+firstOf4(a, b, c, m, w))
				}
				k += ow
			}
		}
	}
}

// firstOf4 is the offset, in an image w values wide, of the first of a
// 2×2 window's values a (top left), b, c (bottom left) and d equal to its
// maximum m: 0, 1, w or w+1, without a branch (d is the maximum if none
// of the others is).
func firstOf4[T int32 | float32](a, b, c, m T, w int) int {
	return b2i(a != m) * (1 + b2i(b != m)*(w-1+b2i(c != m)))
}

// b2i is 1 for true and 0 for false, without a branch.
func b2i(v bool) int {
	var i int
	if v {
		i = 1
	}
	return i
}
