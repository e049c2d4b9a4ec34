package model

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// network holds the work buffers to run a spec forward and backward on up to
// capacity examples at once. It allocates nothing after newNetwork.
type network struct {
	spec     Spec
	capacity int
	offsets  []int       // offset of each layer's parameters in the flat vector
	acts     [][]float32 // acts[l]: output of layer l, capacity×Out (a Flatten's is its input; none inside a convolution block)
	ins      [][]float32 // ins[l]: the input of layer l in the last forward pass
	deltas   [][]float32 // deltas[l]: gradient with respect to layer l's input, capacity×In
	dinTs    [][]float32 // dinTs[l]: a Dense layer's input gradient, transposed (In×capacity)
	cols     [][]float32 // cols[l]: a Conv layer's patch matrix (one example)
	pres     [][]float32 // pres[l]: a convolution block's output before pooling, then its gradient (one example, see conv_block.go)
	gwts     [][]float32 // gwts[l]: a Conv layer's weight gradient, transposed
	args     [][]int32   // args[l]: where each output of a MaxPool layer came from
	block    []bool      // block[l]: layer l is the Conv of a convolution block (convBlock)
	first    int         // the first layer with parameters: backward stops there
	grad     []float32   // gradient of the mean loss, same layout as the parameters
}

func newNetwork(spec Spec, capacity int) *network {
	return makeNetwork(spec, capacity, true)
}

// makeNetwork is newNetwork, without the buffers of the backward pass
// unless backward is set.
func makeNetwork(spec Spec, capacity int, backward bool) *network {
	n := &network{spec: spec, capacity: capacity, first: -1}
	layers := len(spec.Layers)
	n.acts, n.ins, n.deltas = make([][]float32, layers), make([][]float32, layers), make([][]float32, layers)
	n.cols, n.gwts, n.args = make([][]float32, layers), make([][]float32, layers), make([][]int32, layers)
	n.pres = make([][]float32, layers)
	n.dinTs = make([][]float32, layers)
	n.block = make([]bool, layers)
	for l := range spec.Layers {
		n.block[l] = convBlock(spec.Layers, l)
	}
	off := 0
	for l, ls := range spec.Layers {
		n.offsets = append(n.offsets, off)
		off += ls.NumParams()
		if n.first < 0 && ls.NumParams() > 0 {
			n.first = l
		}
		// Of a convolution block (its Conv at l, ReLU at l+1 and MaxPool at
		// l+2) only the pool's outputs are kept for the batch.
		blockReLU, blockPool := l >= 1 && n.block[l-1], l >= 2 && n.block[l-2]
		if ls.Kind != Flatten && !blockReLU && !n.block[l] {
			n.acts[l] = make([]float32, capacity*ls.Out)
		}
		switch ls.Kind {
		case Conv:
			if n.block[l] {
				n.pres[l] = make([]float32, ls.Out+1)
			}
			if ls.Size > 1 {
				n.cols[l] = make([]float32, ls.C*ls.Size*ls.Size*ls.H*ls.W)
			}
			if backward {
				n.gwts[l] = make([]float32, ls.NumParams()-ls.Channels())
			}
		case MaxPool:
			n.args[l] = make([]int32, capacity*ls.Out)
		}
		if backward && n.first >= 0 && l > n.first && (ls.Kind == Dense || ls.Kind == Conv || ls.Kind == MaxPool && !blockPool) {
			n.deltas[l] = make([]float32, capacity*ls.In)
			if ls.Kind == Dense {
				n.dinTs[l] = make([]float32, capacity*ls.In)
			}
		}
	}
	if backward {
		n.grad = make([]float32, spec.NumParams())
	}
	return n
}

func general(rows, cols int, data []float32) blas32.General {
	return blas32.General{Rows: rows, Cols: cols, Stride: cols, Data: data[:rows*cols]}
}

// dense returns views of a dense layer's weights (In×Out) and biases.
func (n *network) dense(params []float32, l int) (w blas32.General, b []float32) {
	ls := n.spec.Layers[l]
	off := n.offsets[l]
	w = general(ls.In, ls.Out, params[off:off+ls.In*ls.Out])
	return w, params[off+ls.In*ls.Out : off+ls.NumParams()]
}

// conv returns views of a Conv layer's weights (N × C·K·K, PyTorch's
// [N][C][K][K]) and biases.
func (n *network) conv(params []float32, l int) (w, b []float32) {
	ls := n.spec.Layers[l]
	off := n.offsets[l]
	nw := ls.Channels() * ls.C * ls.Size * ls.Size
	return params[off : off+nw], params[off+nw : off+ls.NumParams()]
}

// forward runs rows examples of x through the network and returns the logits
// (rows×Classes, a view of the work buffers).
func (n *network) forward(params, x []float32, rows int) []float32 {
	in := x[:rows*n.spec.Inputs()]
	for l := 0; l < len(n.spec.Layers); l++ {
		ls := n.spec.Layers[l]
		n.ins[l] = in
		if ls.Kind == Flatten {
			continue // the rows are already flat
		}
		if n.block[l] {
			pl := n.spec.Layers[l+2]
			out := n.acts[l+2][:rows*pl.Out]
			w, b := n.conv(params, l)
			convBlockForward(ls, pl, w, b, in, out, n.args[l+2], n.cols[l], n.pres[l], rows)
			in = out
			l += 2
			continue
		}
		out := n.acts[l][:rows*ls.Out]
		switch ls.Kind {
		case Dense:
			w, b := n.dense(params, l)
			for r := range rows {
				copy(out[r*ls.Out:(r+1)*ls.Out], b)
			}
			blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, general(rows, ls.In, in), w, 1, general(rows, ls.Out, out))
		case ReLU:
			for i, v := range in {
				out[i] = max(v, 0)
			}
		case Conv:
			w, b := n.conv(params, l)
			convForward(ls, w, b, in, out, n.cols[l], rows)
		case MaxPool:
			poolForward(ls, in, out, n.args[l], rows)
		}
		in = out
	}
	return in
}

// softmaxLoss turns logits in place into the gradient of the mean
// cross-entropy with respect to them, (softmax − onehot)/rows, and returns the
// summed (not mean) cross-entropy.
func softmaxLoss(logits []float32, y []int32, classes int) float64 {
	rows := len(y)
	var total float64
	inv := float32(1) / float32(rows)
	for r := range rows {
		z := logits[r*classes : (r+1)*classes]
		top := z[0]
		for _, v := range z[1:] {
			top = max(top, v)
		}
		var sum float64
		for i, v := range z {
			e := math.Exp(float64(v - top))
			z[i] = float32(e)
			sum += e
		}
		label := y[r]
		p := float64(z[label]) / sum
		total -= math.Log(max(p, 1e-30))
		scale := float32(1/sum) * inv
		for i := range z {
			z[i] *= scale
		}
		z[label] -= inv
	}
	return total
}

// backward computes the gradient of the mean loss, starting from dlogits
// (rows×Classes, the output of softmaxLoss). It reuses the activations of
// the last forward call on the same x. With lr zero it writes the gradient
// into n.grad; otherwise it takes the plain SGD step params −= lr·gradient
// as it goes, each layer's after its input's gradient no longer needs its
// weights: the largest layers' gradients are then never written out, and
// the step reads and writes their weights once.
func (n *network) backward(params, x, dlogits []float32, rows int, lr float32) {
	d := dlogits
	for l := len(n.spec.Layers) - 1; l >= n.first; l-- {
		ls := n.spec.Layers[l]
		if ls.Kind == MaxPool && l >= 2 && n.block[l-2] {
			l -= 2 // the whole block, at its Conv layer
			cl := n.spec.Layers[l]
			w, _ := n.conv(params, l)
			gw, gb := n.conv(n.grad, l)
			din := n.inputGradient(l, rows)
			convBlockBackward(cl, ls, w, gw, gb, n.gwts[l], n.ins[l][:rows*cl.In], d, din, n.args[l+2], n.cols[l], n.pres[l], rows)
			n.convStep(params, l, lr)
			d = din
			continue
		}
		in := n.ins[l][:rows*ls.In]
		switch ls.Kind {
		case Dense:
			w, b := n.dense(params, l)
			din := n.inputGradient(l, rows)
			if din != nil {
				n.denseInputGradient(w, d, din, l, rows)
			}
			if lr == 0 {
				w, b = n.dense(n.grad, l)
				clear(b)
			}
			// w = beta·w + alpha·inᵀ·d: the gradient (alpha 1, beta 0) or the step (−lr, 1).
			alpha, beta, bscale := float32(1), float32(0), float32(1)
			if lr != 0 {
				alpha, beta, bscale = -lr, 1, -lr
			}
			blas32.Gemm(blas.Trans, blas.NoTrans, alpha, general(rows, ls.In, in), general(rows, ls.Out, d), beta, w)
			for r := range rows {
				for o, v := range d[r*ls.Out : (r+1)*ls.Out] {
					b[o] += bscale * v
				}
			}
			d = din
		case ReLU:
			// The ReLU passes the gradient where its output was positive; it
			// works in place on d.
			out := n.acts[l][:rows*ls.Out]
			for i, v := range out {
				if v <= 0 {
					d[i] = 0
				}
			}
		case Conv:
			w, _ := n.conv(params, l)
			gw, gb := n.conv(n.grad, l)
			din := n.inputGradient(l, rows)
			convBackward(ls, w, gw, gb, n.gwts[l], in, d, din, n.cols[l], rows)
			n.convStep(params, l, lr)
			d = din
		case MaxPool:
			din := n.deltas[l][:rows*ls.In]
			poolBackward(ls, d, din, n.args[l], rows)
			d = din
		}
	}
}

// inputGradient is the buffer for the gradient of layer l's input, rows
// examples of it, or nil for the first layer with parameters, whose
// input's gradient nothing needs.
func (n *network) inputGradient(l, rows int) []float32 {
	if l == n.first {
		return nil
	}
	return n.deltas[l][:rows*n.spec.Layers[l].In]
}

// convStep takes the SGD step params −= lr·gradient for the Conv layer l
// from its gradient in n.grad, unless lr is zero.
func (n *network) convStep(params []float32, l int, lr float32) {
	if lr == 0 {
		return
	}
	off, np := n.offsets[l], n.spec.Layers[l].NumParams()
	p, g := params[off:off+np], n.grad[off:off+np]
	for i, v := range g {
		p[i] -= lr * v
	}
}

// denseInputGradient writes din = d·wᵀ (rows×In) for the Dense layer l.
// The matrix kernels copy a transposed B but read a transposed A in
// place, so it computes dinᵀ = w·dᵀ (In×rows), which transposes only d,
// and then transposes that small result, instead of copying all In×Out
// weights every step.
func (n *network) denseInputGradient(w blas32.General, d, din []float32, l, rows int) {
	ls := n.spec.Layers[l]
	dinT := n.dinTs[l][:ls.In*rows]
	blas32.Gemm(blas.NoTrans, blas.Trans, 1, w, general(rows, ls.Out, d), 0, general(ls.In, rows, dinT))
	transposeInto(din, dinT, ls.In, rows)
}

// lossAndGradient runs one minibatch forward and backward: it returns the
// mean cross-entropy and leaves its gradient in n.grad.
func (n *network) lossAndGradient(params, x []float32, y []int32) float64 {
	rows := len(y)
	logits := n.forward(params, x, rows)
	loss := softmaxLoss(logits, y, n.spec.Classes())
	n.backward(params, x, logits, rows, 0)
	return loss / float64(rows)
}

// sgdStep runs one minibatch forward and backward and takes the plain SGD
// step params −= lr·gradient in the same pass (see backward). It returns
// the mean cross-entropy before the step; a loss that is not finite is
// returned without a step.
func (n *network) sgdStep(params, x []float32, y []int32, lr float32) float64 {
	rows := len(y)
	logits := n.forward(params, x, rows)
	loss := softmaxLoss(logits, y, n.spec.Classes()) / float64(rows)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss
	}
	n.backward(params, x, logits, rows, lr)
	return loss
}
