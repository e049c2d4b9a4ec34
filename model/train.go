package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// TrainConfig sets local training: minibatch SGD with optional momentum,
// weight decay and the FedProx proximal term.
type TrainConfig struct {
	// Epochs is the number of passes over the data (Train only).
	Epochs int
	// BatchSize is the number of examples in a minibatch; the last batch of an
	// epoch may be smaller.
	BatchSize int
	// LearningRate is the SGD step size.
	LearningRate float64
	// Momentum is the heavy-ball coefficient (0 for plain SGD).
	Momentum float64
	// WeightDecay adds WeightDecay·w to the gradient.
	WeightDecay float64
	// ProxMu is FedProx's μ: the objective gains (μ/2)‖w − w_start‖², where
	// w_start is the model when training began (the round's global model).
	ProxMu float64
	// Seed fixes the order in which examples are visited.
	Seed uint64
}

// DefaultTrainConfig is the FedAvg paper's 2NN setting: one epoch of plain SGD
// with batches of 10 at learning rate 0.1.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{Epochs: 1, BatchSize: 10, LearningRate: 0.1}
}

// Validate reports the first out-of-range field.
func (c TrainConfig) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Epochs < 0:
		return fmt.Errorf("%w: epochs %d is negative", ErrBadConfig, c.Epochs)
	case c.BatchSize < 1 || c.BatchSize > 1<<16:
		return fmt.Errorf("%w: batch size %d is not in [1, 65536]", ErrBadConfig, c.BatchSize)
	case !finite(c.LearningRate) || c.LearningRate <= 0:
		return fmt.Errorf("%w: learning rate %v must be positive", ErrBadConfig, c.LearningRate)
	case !finite(c.Momentum) || c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("%w: momentum %v is not in [0, 1)", ErrBadConfig, c.Momentum)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return fmt.Errorf("%w: weight decay %v is negative", ErrBadConfig, c.WeightDecay)
	case !finite(c.ProxMu) || c.ProxMu < 0:
		return fmt.Errorf("%w: FedProx mu %v is negative", ErrBadConfig, c.ProxMu)
	}
	return nil
}

// Trainer trains one model in place, epoch by epoch. It keeps the work
// buffers, the momentum and the FedProx anchor between epochs. A Trainer is
// not safe for concurrent use.
type Trainer struct {
	m        *Model
	cfg      TrainConfig
	net      *network
	rng      *rand.Rand
	anchor   []float32 // w_start for FedProx; nil when ProxMu is 0
	velocity []float32 // nil when Momentum is 0
	xbuf     []float32
	ybuf     []int32
	perm     []int
}

// NewTrainer prepares to train m with cfg. The model's current parameters
// become the FedProx anchor.
func NewTrainer(m *Model, cfg TrainConfig) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckParams(m.Spec, m.Params); err != nil {
		return nil, err
	}
	t := &Trainer{
		m:    m,
		cfg:  cfg,
		net:  newNetwork(m.Spec, cfg.BatchSize),
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0x747261696e)), // "train"
		xbuf: make([]float32, cfg.BatchSize*m.Spec.Inputs()),
		ybuf: make([]int32, cfg.BatchSize),
	}
	if cfg.ProxMu > 0 {
		t.anchor = append([]float32(nil), m.Params...)
	}
	if cfg.Momentum > 0 {
		t.velocity = make([]float32, len(m.Params))
	}
	return t, nil
}

// Epoch makes one pass over ds in a seeded random order and returns the mean
// training loss (cross-entropy, before each step). It stops early with
// ctx's error, leaving the model as trained so far.
func (t *Trainer) Epoch(ctx context.Context, ds *Dataset) (float64, error) {
	if err := ds.checkFits(t.m.Spec); err != nil {
		return 0, err
	}
	n := ds.Len()
	if n == 0 {
		return 0, fmt.Errorf("%w: no examples to train on", ErrShape)
	}
	if cap(t.perm) < n {
		t.perm = make([]int, n)
	}
	t.perm = t.perm[:n]
	for i := range t.perm {
		t.perm[i] = i
	}
	t.rng.Shuffle(n, func(i, j int) { t.perm[i], t.perm[j] = t.perm[j], t.perm[i] })

	d := ds.Features
	var total float64
	for start := 0; start < n; start += t.cfg.BatchSize {
		if start/t.cfg.BatchSize%64 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		rows := min(t.cfg.BatchSize, n-start)
		for r, idx := range t.perm[start : start+rows] {
			copy(t.xbuf[r*d:(r+1)*d], ds.X[idx*d:(idx+1)*d])
			t.ybuf[r] = ds.Y[idx]
		}
		var loss float64
		if t.plainSGD() {
			loss = t.net.sgdStep(t.m.Params, t.xbuf, t.ybuf[:rows], float32(t.cfg.LearningRate))
		} else {
			loss = t.net.lossAndGradient(t.m.Params, t.xbuf, t.ybuf[:rows])
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return 0, fmt.Errorf("%w: loss is %v after %d examples; lower the learning rate", ErrDiverged, loss, start)
		}
		total += loss * float64(rows)
		if !t.plainSGD() {
			t.step()
		}
	}
	return total / float64(n), nil
}

// plainSGD reports whether steps are plain SGD (no momentum, proximal term
// or weight decay): the network then takes each step during its backward
// pass (network.sgdStep).
func (t *Trainer) plainSGD() bool {
	return t.velocity == nil && t.anchor == nil && t.cfg.WeightDecay == 0
}

// step applies one SGD update, with momentum, weight decay and the
// proximal term, from the gradient in t.net.grad.
func (t *Trainer) step() {
	w, g := t.m.Params, t.net.grad
	lr := float32(t.cfg.LearningRate)
	addRegularisers(g, w, t.anchor, float32(t.cfg.WeightDecay), float32(t.cfg.ProxMu))
	if t.velocity != nil {
		mom := float32(t.cfg.Momentum)
		v := t.velocity
		for i := range v {
			v[i] = mom*v[i] + g[i]
		}
		g = v
	}
	for i := range w {
		w[i] -= lr * g[i]
	}
}

// addRegularisers adds the gradients of (wd/2)‖w‖² and (mu/2)‖w − anchor‖²
// to g and returns the sum of those two terms.
func addRegularisers(g, w, anchor []float32, wd, mu float32) float64 {
	var reg float64
	for i, wi := range w {
		gi := wd * wi
		reg += float64(wd) / 2 * float64(wi) * float64(wi)
		if anchor != nil {
			diff := wi - anchor[i]
			gi += mu * diff
			reg += float64(mu) / 2 * float64(diff) * float64(diff)
		}
		g[i] += gi
	}
	return reg
}

// Result summarises a call to Train.
type Result struct {
	// EpochLoss is the mean training loss of each epoch.
	EpochLoss []float64
	// Examples is the number of examples trained on, over all epochs.
	Examples int
}

// Train trains m in place on ds for cfg.Epochs epochs.
func Train(ctx context.Context, m *Model, ds *Dataset, cfg TrainConfig) (Result, error) {
	t, err := NewTrainer(m, cfg)
	if err != nil {
		return Result{}, err
	}
	var res Result
	for range cfg.Epochs {
		loss, err := t.Epoch(ctx, ds)
		if err != nil {
			return res, err
		}
		res.EpochLoss = append(res.EpochLoss, loss)
		res.Examples += ds.Len()
	}
	return res, nil
}
