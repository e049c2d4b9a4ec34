package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// objective returns the full training objective at params on one batch (mean
// cross-entropy plus weight decay and FedProx terms) and its gradient.
func objective(net *network, params, x []float32, y []int32, anchor []float32, wd, mu float32) (float64, []float32) {
	loss := net.lossAndGradient(params, x, y)
	loss += addRegularisers(net.grad, params, anchor, wd, mu)
	return loss, append([]float32(nil), net.grad...)
}

func randomBatch(rng *rand.Rand, spec Spec, rows int) ([]float32, []int32) {
	x := make([]float32, rows*spec.Inputs())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]int32, rows)
	for i := range y {
		y[i] = int32(rng.IntN(spec.Classes()))
	}
	return x, y
}

// TestGradientMatchesFiniteDifferences checks the analytic gradient of every
// layer type against central differences of the objective, with and without
// weight decay and the FedProx term.
func TestGradientMatchesFiniteDifferences(t *testing.T) {
	cases := []struct {
		spec    string
		wd, mu  float32
		batches int
	}{
		{"logreg:7-3", 0, 0, 4},
		{"mlp:6-5-4", 0, 0, 5},
		{"mlp:5-8-6-3", 0, 0, 3},
		{"mlp:5-8-6-3", 0.1, 0, 3},
		{"mlp:5-8-6-3", 0, 0.5, 3},
		{"mlp:5-8-6-3", 0.01, 1, 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_wd%g_mu%g", c.spec, c.wd, c.mu), func(t *testing.T) {
			spec := MustParseSpec(c.spec)
			rng := rand.New(rand.NewPCG(7, 8))
			m := New(spec, 3)
			anchor := New(spec, 4).Params
			net := newNetwork(spec, c.batches)
			x, y := randomBatch(rng, spec, c.batches)
			params := m.Params
			_, grad := objective(net, params, x, y, anchor, c.wd, c.mu)
			// Small enough that no ReLU input crosses zero, large enough for float32.
			const eps = 1e-3
			worst, kinks := 0.0, 0
			for i := range params {
				orig := params[i]
				params[i] = orig + eps
				up, _ := objective(net, params, x, y, anchor, c.wd, c.mu)
				upPattern := reluPattern(net)
				params[i] = orig - eps
				down, _ := objective(net, params, x, y, anchor, c.wd, c.mu)
				params[i] = orig
				if reluPattern(net) != upPattern {
					kinks++ // a ReLU switched between the two points: no derivative to compare
					continue
				}
				numeric := (up - down) / (2 * eps)
				diff := math.Abs(numeric-float64(grad[i])) / max(1e-2, math.Abs(numeric)+math.Abs(float64(grad[i])))
				worst = max(worst, diff)
				if diff > 2e-2 {
					t.Errorf("d/dparam[%d]: analytic %g; finite difference %g", i, grad[i], numeric)
				}
			}
			if kinks > len(params)/10 {
				t.Errorf("%d of %d parameters crossed a ReLU kink; the check proves little", kinks, len(params))
			}
			t.Logf("worst relative error %.2g over %d parameters (%d skipped at a kink)", worst, len(params), kinks)
		})
	}
}

// TestFedProxAddsProximalGradient checks that the FedProx term adds exactly
// μ(w − w_global) to the gradient, and that one SGD step moves the weights by
// −lr times that whole gradient.
func TestFedProxAddsProximalGradient(t *testing.T) {
	spec := MustParseSpec("mlp:4-6-3")
	rng := rand.New(rand.NewPCG(1, 1))
	x, y := randomBatch(rng, spec, 5)
	global := New(spec, 1)
	local := New(spec, 2) // away from the global model, as after some local steps
	const mu = 0.3
	net := newNetwork(spec, 5)
	_, plain := objective(net, local.Params, x, y, nil, 0, 0)
	_, prox := objective(net, local.Params, x, y, global.Params, 0, mu)
	for i := range plain {
		want := plain[i] + mu*(local.Params[i]-global.Params[i])
		if d := math.Abs(float64(prox[i] - want)); d > 1e-6 {
			t.Fatalf("gradient[%d] with FedProx: got %g; want %g", i, prox[i], want)
		}
	}

	// One step of Trainer.Epoch on the whole batch.
	cfg := TrainConfig{Epochs: 1, BatchSize: 5, LearningRate: 0.05, ProxMu: mu}
	m := global.Clone()
	copy(m.Params, local.Params)
	tr, err := NewTrainer(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	copy(tr.anchor, global.Params) // anchor the step at the global model
	before := append([]float32(nil), m.Params...)
	ds := &Dataset{X: x, Y: y, Features: 4, Classes: 3}
	if _, err := tr.Epoch(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	for i := range before {
		want := before[i] - float32(cfg.LearningRate)*prox[i]
		if d := math.Abs(float64(m.Params[i] - want)); d > 1e-5 {
			t.Fatalf("param[%d] after one step: got %g; want %g", i, m.Params[i], want)
		}
	}
}

// reluPattern is which ReLU outputs were positive in the last forward pass,
// and where each max-pooling output came from.
func reluPattern(net *network) string {
	var b []byte
	for l, ls := range net.spec.Layers {
		if ls.Kind == MaxPool {
			b = fmt.Appendf(b, "%v", net.args[l])
		}
		if ls.Kind != ReLU {
			continue
		}
		for _, v := range net.acts[l] {
			if v > 0 {
				b = append(b, '1')
			} else {
				b = append(b, '0')
			}
		}
	}
	return string(b)
}

// TestFusedStepMatchesGradientStep checks that the plain SGD step taken
// during the backward pass (network.sgdStep, what Trainer uses without
// momentum, weight decay or FedProx) lands where the gradient and then
// params −= lr·gradient do, for dense and convolutional networks.
func TestFusedStepMatchesGradientStep(t *testing.T) {
	for _, spec := range []string{"logreg:7-3", "mlp:6-5-4", "cnn:6x5x2-c3x4-p2-f6-3", "cnn:8x8x1-c3x3-p2-c1x4-p2-5"} {
		t.Run(spec, func(t *testing.T) {
			s := MustParseSpec(spec)
			rng := rand.New(rand.NewPCG(5, 6))
			const rows, lr = 4, 0.3
			x, y := randomBatch(rng, s, rows)
			fused, plain := New(s, 9), New(s, 9)
			before := append([]float32(nil), fused.Params...)
			lossFused := newNetwork(s, rows).sgdStep(fused.Params, x, y, lr)
			net := newNetwork(s, rows)
			lossPlain := net.lossAndGradient(plain.Params, x, y)
			for i, g := range net.grad {
				plain.Params[i] -= lr * g
			}
			if lossFused != lossPlain {
				t.Errorf("loss %g; want %g", lossFused, lossPlain)
			}
			moved := false
			for i, want := range plain.Params {
				got := fused.Params[i]
				if math.Abs(float64(got-want)) > 1e-5*(1+math.Abs(float64(want))) {
					t.Fatalf("parameter %d after the fused step is %g; want %g", i, got, want)
				}
				moved = moved || got != before[i]
			}
			if !moved {
				t.Fatal("the fused step changed no parameter")
			}
		})
	}
}
