package dp

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
)

// TestAccountantJSONRoundTrip: the accountant lives in the replicated job
// state, so a JSON round trip must give back the same bits.
func TestAccountantJSONRoundTrip(t *testing.T) {
	a := NewAccountant()
	a.Compose(0.01, 1.1, 100)
	a.Compose(0.02, 0.9, 7)
	a.Compose(1, 3, 2)
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var got Accountant
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, a) {
		t.Fatalf("after a JSON round trip: %+v; want %+v", got, *a)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	e1, o1 := a.Epsilon(1e-5)
	e2, o2 := got.Epsilon(1e-5)
	if e1 != e2 || o1 != o2 || a.Steps != 109 {
		t.Errorf("decoded accountant: ε %v at %v after %d steps; want %v at %v after 109", e2, o2, got.Steps, e1, o1)
	}
}

// TestAccountantComposesPerRound checks that rounds with different q and z
// add up, that ComposeRDP gives Compose's bits, and that EpsilonAfter
// predicts without spending.
func TestAccountantComposesPerRound(t *testing.T) {
	a, b := NewAccountant(), NewAccountant()
	a.Compose(0.01, 1.1, 50)
	a.Compose(0.05, 2, 10)
	if err := b.ComposeRDP(SampledGaussianRDP(0.01, 1.1, DefaultOrders), 50); err != nil {
		t.Fatal(err)
	}
	if err := b.ComposeRDP(SampledGaussianRDP(0.05, 2, DefaultOrders), 10); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("ComposeRDP: %+v; Compose gave %+v", b, a)
	}
	before := a.Clone()
	predicted := a.EpsilonAfter(0.01, 1.1, 40, 1e-5)
	if !reflect.DeepEqual(a, before) {
		t.Fatal("EpsilonAfter changed the accountant")
	}
	a.Compose(0.01, 1.1, 40)
	if eps, _ := a.Epsilon(1e-5); eps != predicted {
		t.Errorf("ε after composing 40 steps: %v; EpsilonAfter predicted %v", eps, predicted)
	}
	single := SampledGaussianRDP(0.01, 1.1, DefaultOrders)
	for i, r := range before.RDP {
		if want := 50*single[i] + 10*SampledGaussianRDP(0.05, 2, DefaultOrders[i:i+1])[0]; math.Abs(r-want) > 1e-12*want {
			t.Fatalf("order %v: accumulated %v; want %v", DefaultOrders[i], r, want)
		}
	}
}

func TestZeroAccountantIsUsable(t *testing.T) {
	var a Accountant
	if eps, _ := a.Epsilon(1e-5); eps != 0 {
		t.Errorf("ε of an empty accountant: %v; want 0", eps)
	}
	a.Compose(0.01, 1.1, 100)
	b := NewAccountant()
	b.Compose(0.01, 1.1, 100)
	if !reflect.DeepEqual(&a, b) {
		t.Errorf("zero accountant after Compose: %+v; want %+v", a, *b)
	}
}

// TestAccountantNeverHoldsInfinity: invalid parameters spend everything,
// and the state still encodes as JSON.
func TestAccountantNeverHoldsInfinity(t *testing.T) {
	a := NewAccountant()
	a.Compose(0.01, 0, 1) // z = 0: no noise
	if _, err := json.Marshal(a); err != nil {
		t.Fatalf("accountant with no guarantee does not encode: %v", err)
	}
	if eps, _ := a.Epsilon(1e-5); !math.IsInf(eps, 1) {
		t.Errorf("ε after a noiseless step: %v; want +Inf", eps)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestAccountantRefusesBadState(t *testing.T) {
	a := NewAccountant()
	if err := a.ComposeRDP([]float64{1, 2}, 1); !errors.Is(err, ErrParams) {
		t.Errorf("ComposeRDP with 2 values for %d orders: %v; want ErrParams", len(a.Orders), err)
	}
	bad := make([]float64, len(a.Orders))
	bad[3] = -1
	if err := a.ComposeRDP(bad, 1); !errors.Is(err, ErrParams) {
		t.Errorf("ComposeRDP with a negative value: %v; want ErrParams", err)
	}
	for _, c := range []Accountant{
		{Orders: []float64{2, 3}, RDP: []float64{1}},
		{Orders: []float64{1}, RDP: []float64{1}},
		{Orders: []float64{2}, RDP: []float64{math.NaN()}},
		{Orders: []float64{2}, RDP: []float64{-1}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrParams) {
			t.Errorf("Validate(%+v): %v; want ErrParams", c, err)
		}
	}
	// A corrupt accountant (RDP shorter than orders) loses every guarantee.
	c := &Accountant{Orders: []float64{2, 3}, RDP: []float64{0.1}}
	c.Compose(0.01, 1, 1)
	if eps, _ := c.Epsilon(1e-5); !math.IsInf(eps, 1) {
		t.Errorf("ε of a corrupt accountant after Compose: %v; want +Inf", eps)
	}
}
