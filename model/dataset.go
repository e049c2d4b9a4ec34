package model

import (
	"fmt"
	"math"
)

// Dataset is a set of labelled examples: row i of X, Features floats long,
// has class Y[i] in [0, Classes).
type Dataset struct {
	X        []float32
	Y        []int32
	Features int
	Classes  int
}

// Len is the number of examples.
func (d *Dataset) Len() int { return len(d.Y) }

// Row returns example i's features (not a copy).
func (d *Dataset) Row(i int) []float32 { return d.X[i*d.Features : (i+1)*d.Features] }

// Subset returns the examples at idx, in that order, as a new dataset.
func (d *Dataset) Subset(idx []int) *Dataset {
	out := &Dataset{
		X:        make([]float32, 0, len(idx)*d.Features),
		Y:        make([]int32, 0, len(idx)),
		Features: d.Features,
		Classes:  d.Classes,
	}
	for _, i := range idx {
		out.X = append(out.X, d.Row(i)...)
		out.Y = append(out.Y, d.Y[i])
	}
	return out
}

// Validate checks that the dataset is well formed: X holds Len()·Features
// finite values and every label is a class.
func (d *Dataset) Validate() error {
	if d.Features < 1 || d.Classes < 2 {
		return fmt.Errorf("%w: dataset has %d features and %d classes", ErrShape, d.Features, d.Classes)
	}
	if len(d.X) != len(d.Y)*d.Features {
		return fmt.Errorf("%w: dataset has %d labels but %d values (want %d×%d)", ErrShape, len(d.Y), len(d.X), len(d.Y), d.Features)
	}
	for i, v := range d.X {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: example %d, feature %d is %v", ErrNotFinite, i/d.Features, i%d.Features, v)
		}
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= d.Classes {
			return fmt.Errorf("%w: example %d has label %d, outside [0, %d)", ErrShape, i, y, d.Classes)
		}
	}
	return nil
}

// checkFits checks that the dataset is valid and that spec can read it.
func (d *Dataset) checkFits(spec Spec) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Features != spec.Inputs() || d.Classes != spec.Classes() {
		return fmt.Errorf("%w: dataset has %d features and %d classes; model %s wants %d and %d",
			ErrShape, d.Features, d.Classes, spec, spec.Inputs(), spec.Classes())
	}
	return nil
}
