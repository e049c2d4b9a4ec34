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
	acts     [][]float32 // acts[l]: output of layer l, capacity×Out
	deltas   [][]float32 // deltas[l]: gradient with respect to layer l's input, capacity×In
	grad     []float32   // gradient of the mean loss, same layout as the parameters
}

func newNetwork(spec Spec, capacity int) *network {
	n := &network{spec: spec, capacity: capacity, grad: make([]float32, spec.NumParams())}
	off := 0
	for _, l := range spec.Layers {
		n.offsets = append(n.offsets, off)
		off += l.NumParams()
		n.acts = append(n.acts, make([]float32, capacity*l.Out))
		n.deltas = append(n.deltas, make([]float32, capacity*l.In))
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

// forward runs rows examples of x through the network and returns the logits
// (rows×Classes, a view of the work buffers).
func (n *network) forward(params, x []float32, rows int) []float32 {
	in := x[:rows*n.spec.Inputs()]
	for l, ls := range n.spec.Layers {
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

// backward computes the gradient of the mean loss into n.grad, starting from
// dlogits (rows×Classes, the output of softmaxLoss). It reuses the
// activations of the last forward call on the same x.
func (n *network) backward(params, x, dlogits []float32, rows int) {
	d := dlogits
	for l := len(n.spec.Layers) - 1; l >= 0; l-- {
		ls := n.spec.Layers[l]
		var in []float32
		if l == 0 {
			in = x[:rows*ls.In]
		} else {
			in = n.acts[l-1][:rows*ls.In]
		}
		switch ls.Kind {
		case Dense:
			w, _ := n.dense(params, l)
			gw, gb := n.dense(n.grad, l)
			blas32.Gemm(blas.Trans, blas.NoTrans, 1, general(rows, ls.In, in), general(rows, ls.Out, d), 0, gw)
			clear(gb)
			for r := range rows {
				for o, v := range d[r*ls.Out : (r+1)*ls.Out] {
					gb[o] += v
				}
			}
			if l == 0 {
				return
			}
			din := n.deltas[l][:rows*ls.In]
			blas32.Gemm(blas.NoTrans, blas.Trans, 1, general(rows, ls.Out, d), w, 0, general(rows, ls.In, din))
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
		}
	}
}

// lossAndGradient runs one minibatch forward and backward: it returns the
// mean cross-entropy and leaves its gradient in n.grad.
func (n *network) lossAndGradient(params, x []float32, y []int32) float64 {
	rows := len(y)
	logits := n.forward(params, x, rows)
	loss := softmaxLoss(logits, y, n.spec.Classes())
	n.backward(params, x, logits, rows)
	return loss / float64(rows)
}
