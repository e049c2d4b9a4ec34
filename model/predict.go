package model

import (
	"fmt"
	"math"
	"sync"
)

// Predictor runs a model forward for inference, reusing its work buffers
// between calls. It is safe for concurrent use: each call takes buffers of
// its own from a pool. The model's parameters must not change while a
// Predictor uses them (serving swaps whole models instead).
type Predictor struct {
	m        *Model
	capacity int
	pool     sync.Pool // *network with room for capacity rows
}

// NewPredictor returns a Predictor of m whose pooled buffers hold batches of
// up to capacity rows (larger batches get buffers of their own).
func NewPredictor(m *Model, capacity int) *Predictor {
	return &Predictor{m: m, capacity: max(capacity, 1)}
}

// Model is the model p runs.
func (p *Predictor) Model() *Model { return p.m }

// Predict returns, for rows examples laid out row after row in x (rows ×
// Spec.Inputs()), each example's class probabilities (the softmax of the
// logits), rows × Spec.Classes() in a new slice. It refuses an x of the
// wrong length or holding a value that is not finite.
func (p *Predictor) Predict(x []float32, rows int) ([]float32, error) {
	spec := p.m.Spec
	if rows <= 0 || len(x) != rows*spec.Inputs() {
		return nil, fmt.Errorf("%w: %d values for %d rows of %d features", ErrShape, len(x), rows, spec.Inputs())
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: input %d (row %d) is %v", ErrNotFinite, i, i/spec.Inputs(), v)
		}
	}
	var n *network
	if rows <= p.capacity {
		if v, ok := p.pool.Get().(*network); ok {
			n = v
		} else {
			n = newNetwork(spec, p.capacity)
		}
		defer p.pool.Put(n)
	} else {
		n = newNetwork(spec, rows)
	}
	logits := n.forward(p.m.Params, x, rows)
	classes := spec.Classes()
	out := make([]float32, rows*classes)
	for r := range rows {
		probabilities(out[r*classes:(r+1)*classes], logits[r*classes:(r+1)*classes])
	}
	return out, nil
}

// Predict is NewPredictor(m, rows).Predict(x, rows), for one-off use.
func Predict(m *Model, x []float32, rows int) ([]float32, error) {
	return NewPredictor(m, rows).Predict(x, rows)
}

// probabilities writes the softmax of logits into dst, in float64 and shifted by
// the maximum so that no exponential overflows.
func probabilities(dst, logits []float32) {
	top := math.Inf(-1)
	for _, v := range logits {
		top = max(top, float64(v))
	}
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v) - top)
		dst[i] = float32(e)
		sum += e
	}
	for i := range dst {
		dst[i] = float32(float64(dst[i]) / sum)
	}
}
