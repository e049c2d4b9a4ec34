package dp

import (
	"fmt"
	"math"
	"slices"
)

// Accountant accumulates the RDP of a job's rounds, each a sampled Gaussian
// step with its own sampling rate q and noise multiplier z. It is part of a
// job's replicated state, JSON-encoded inside the coordinators' Raft state:
// its fields are exported and a JSON round trip is exact (Go prints floats
// in their shortest round-tripping form). RDP values stay finite so that
// they always encode: an order without a guarantee holds math.MaxFloat64.
//
// The zero Accountant is ready to use and tracks DefaultOrders. An
// Accountant is not safe for concurrent use.
type Accountant struct {
	// Orders are the Rényi orders tracked, each > 1.
	Orders []float64 `json:"orders"`
	// RDP is the accumulated RDP at each order, as long as Orders.
	RDP []float64 `json:"rdp"`
	// Steps counts the steps composed so far.
	Steps uint64 `json:"steps"`
}

// NewAccountant returns an accountant over DefaultOrders with nothing spent.
func NewAccountant() *Accountant {
	return &Accountant{Orders: slices.Clone(DefaultOrders), RDP: make([]float64, len(DefaultOrders))}
}

// init gives a zero Accountant its orders.
func (a *Accountant) init() {
	if a.Orders == nil && a.RDP == nil {
		a.Orders = slices.Clone(DefaultOrders)
		a.RDP = make([]float64, len(a.Orders))
	}
}

// Validate checks an accountant decoded from outside: at least one order,
// each finite and > 1, and as many non-negative RDP values as orders.
func (a *Accountant) Validate() error {
	if len(a.Orders) == 0 && len(a.RDP) == 0 {
		return nil // the zero Accountant
	}
	if len(a.Orders) != len(a.RDP) {
		return fmt.Errorf("%w: accountant has %d orders and %d RDP values", ErrParams, len(a.Orders), len(a.RDP))
	}
	for i, o := range a.Orders {
		if !(o > 1) || math.IsInf(o, 0) {
			return fmt.Errorf("%w: accountant order %v (want > 1)", ErrParams, o)
		}
		if r := a.RDP[i]; !(r >= 0) || math.IsInf(r, 0) {
			return fmt.Errorf("%w: accountant RDP %v at order %v", ErrParams, r, o)
		}
	}
	return nil
}

// Compose adds steps steps of the sampled Gaussian mechanism at sampling
// rate q and noise multiplier z: steps × SampledGaussianRDP(q, z) at every
// order. Invalid q or z (see SampledGaussianRDP) spend the whole budget:
// every order then holds math.MaxFloat64 and Epsilon returns +Inf.
//
// SampledGaussianRDP rests on math.Exp and math.Log, whose last bits can
// differ between CPUs; a replicated state machine should therefore not call
// Compose itself but apply ComposeRDP to a vector its leader computed.
func (a *Accountant) Compose(q, z float64, steps uint64) {
	a.init()
	a.add(SampledGaussianRDP(q, z, a.Orders), steps)
}

// ComposeRDP adds steps steps whose per-step RDP at a.Orders is stepRDP
// (as computed by SampledGaussianRDP). It uses only IEEE multiplications and
// additions, each rounded explicitly, so every machine gets the same bits:
// a coordinator's FSM can apply it to a vector the leader wrote into the
// log. It refuses a vector of the wrong length or with a negative or NaN
// entry; +Inf entries are stored as math.MaxFloat64.
func (a *Accountant) ComposeRDP(stepRDP []float64, steps uint64) error {
	a.init()
	if len(stepRDP) != len(a.Orders) {
		return fmt.Errorf("%w: %d RDP values for %d orders", ErrParams, len(stepRDP), len(a.Orders))
	}
	for _, r := range stepRDP {
		if !(r >= 0) {
			return fmt.Errorf("%w: per-step RDP %v", ErrParams, r)
		}
	}
	a.add(stepRDP, steps)
	return nil
}

// add composes steps copies of stepRDP, which is as long as a.Orders. An
// accountant whose RDP slice no longer matches its orders (corrupt state)
// loses every guarantee rather than be trusted.
func (a *Accountant) add(stepRDP []float64, steps uint64) {
	if len(a.RDP) != len(a.Orders) {
		a.RDP = make([]float64, len(a.Orders))
		for i := range a.RDP {
			a.RDP[i] = math.MaxFloat64
		}
	}
	if steps == 0 {
		return
	}
	n := float64(steps)
	for i, r := range stepRDP {
		// float64(...) forbids fusing the product into the sum (an FMA
		// on some architectures), which would change the last bit.
		v := a.RDP[i] + float64(n*r)
		if !(v < math.MaxFloat64) { // +Inf, or NaN in a corrupt state
			v = math.MaxFloat64
		}
		a.RDP[i] = v
	}
	a.Steps += steps
}

// Epsilon returns the ε spent so far at δ (see the package-level Epsilon)
// and the order that gives it.
func (a *Accountant) Epsilon(delta float64) (eps, order float64) {
	a.init()
	return Epsilon(a.Orders, a.RDP, delta)
}

// EpsilonAfter returns the ε that would have been spent at δ once steps
// more steps at (q, z) were composed, leaving a unchanged: a job stops
// before a round that would take it past its budget.
func (a *Accountant) EpsilonAfter(q, z float64, steps uint64, delta float64) float64 {
	b := a.Clone()
	b.Compose(q, z, steps)
	eps, _ := b.Epsilon(delta)
	return eps
}

// Clone returns a deep copy of a.
func (a *Accountant) Clone() *Accountant {
	return &Accountant{Orders: slices.Clone(a.Orders), RDP: slices.Clone(a.RDP), Steps: a.Steps}
}
