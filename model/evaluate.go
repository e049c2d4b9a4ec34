package model

import (
	"context"
)

// evalBatch is the number of examples evaluated per matrix product.
const evalBatch = 256

// Metrics are a model's mean cross-entropy and accuracy on a dataset.
type Metrics struct {
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	Examples int     `json:"examples"`
}

// Evaluate computes m's loss and accuracy on ds.
func Evaluate(ctx context.Context, m *Model, ds *Dataset) (Metrics, error) {
	if err := CheckParams(m.Spec, m.Params); err != nil {
		return Metrics{}, err
	}
	if err := ds.checkFits(m.Spec); err != nil {
		return Metrics{}, err
	}
	net := makeNetwork(m.Spec, max(1, min(evalBatch, ds.Len())), false)
	classes := m.Spec.Classes()
	var loss float64
	correct := 0
	for start := 0; start < ds.Len(); start += evalBatch {
		if err := ctx.Err(); err != nil {
			return Metrics{}, err
		}
		rows := min(evalBatch, ds.Len()-start)
		x := ds.X[start*ds.Features : (start+rows)*ds.Features]
		y := ds.Y[start : start+rows]
		logits := net.forward(m.Params, x, rows)
		for r, label := range y {
			z := logits[r*classes : (r+1)*classes]
			best := 0
			for c, v := range z {
				if v > z[best] {
					best = c
				}
			}
			if best == int(label) {
				correct++
			}
		}
		loss += softmaxLoss(logits, y, classes)
	}
	n := max(ds.Len(), 1)
	return Metrics{Loss: loss / float64(n), Accuracy: float64(correct) / float64(n), Examples: ds.Len()}, nil
}
