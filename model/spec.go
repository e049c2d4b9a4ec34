package model

import (
	"fmt"
	"strconv"
	"strings"
)

// LayerKind names a layer type.
type LayerKind string

// Layer kinds.
const (
	// Dense is a fully connected layer: out = in·W + b.
	Dense LayerKind = "dense"
	// ReLU is max(0, x), elementwise.
	ReLU LayerKind = "relu"
)

// LayerSpec describes one layer. In and Out are the widths of its input and
// output rows.
type LayerSpec struct {
	Kind    LayerKind
	In, Out int
}

// NumParams is the number of parameters the layer owns.
func (l LayerSpec) NumParams() int {
	if l.Kind == Dense {
		return l.In*l.Out + l.Out
	}
	return 0
}

// Spec is a model architecture: a family name and its layers. The last
// layer's outputs are the logits of a softmax over the classes.
type Spec struct {
	// Family is "logreg" or "mlp".
	Family string
	// Widths are the widths from the spec string: inputs, hidden layers, classes.
	Widths []int
	// Layers are the layers in order.
	Layers []LayerSpec
}

// maxWidth bounds a layer's width so that a hostile spec cannot ask for
// terabytes of parameters.
const maxWidth = 1 << 16

// Limits on what a spec may describe, checked by ParseSpec while it reads,
// so that a hostile spec costs nothing to refuse. A coordinator may set
// lower limits of its own.
const (
	// MaxDenseLayers is the most dense layers a model may have.
	MaxDenseLayers = 64
	// MaxParams is the most parameters a model may have: as float32, its
	// parameters then fill at most 1 GiB, the most a blob may hold
	// (protocol.MaxBlobBytes).
	MaxParams = 1 << 28
)

// ParseSpec parses a spec such as "logreg:784-10" or "mlp:784-200-200-10".
// It refuses a spec of more than MaxDenseLayers layers or MaxParams
// parameters without reading further.
func ParseSpec(s string) (Spec, error) {
	quoted := s
	if len(quoted) > 80 {
		quoted = quoted[:80] + "…"
	}
	family, dims, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Spec{}, fmt.Errorf("%w %q: want FAMILY:IN-...-CLASSES, for example mlp:784-200-200-10", ErrBadSpec, quoted)
	}
	var widths []int
	params := 0
	for more := true; more; {
		var f string
		f, dims, more = strings.Cut(dims, "-")
		if len(widths) > MaxDenseLayers {
			return Spec{}, fmt.Errorf("%w %q: more than %d layers", ErrBadSpec, quoted, MaxDenseLayers)
		}
		w, err := strconv.Atoi(f)
		if err != nil || w < 1 || w > maxWidth {
			if len(f) > 20 {
				f = f[:20] + "…"
			}
			return Spec{}, fmt.Errorf("%w %q: width %q is not an integer in [1, %d]", ErrBadSpec, quoted, f, maxWidth)
		}
		if n := len(widths); n > 0 {
			// At most 2^32+2^16 a layer, after at most MaxParams: no overflow.
			if params += widths[n-1]*w + w; params > MaxParams {
				return Spec{}, fmt.Errorf("%w %q: more than %d parameters", ErrBadSpec, quoted, MaxParams)
			}
		}
		widths = append(widths, w)
	}
	switch family {
	case "logreg":
		if len(widths) != 2 {
			return Spec{}, fmt.Errorf("%w %q: logreg takes exactly IN-CLASSES", ErrBadSpec, quoted)
		}
	case "mlp":
		if len(widths) < 3 {
			return Spec{}, fmt.Errorf("%w %q: mlp needs at least one hidden layer (IN-H-CLASSES)", ErrBadSpec, quoted)
		}
	default:
		if len(family) > 20 {
			family = family[:20] + "…"
		}
		return Spec{}, fmt.Errorf("%w %q: unknown family %q (want logreg or mlp)", ErrBadSpec, quoted, family)
	}
	if widths[len(widths)-1] < 2 {
		return Spec{}, fmt.Errorf("%w %q: need at least 2 classes", ErrBadSpec, quoted)
	}
	spec := Spec{Family: family, Widths: widths}
	for i := 0; i+1 < len(widths); i++ {
		spec.Layers = append(spec.Layers, LayerSpec{Kind: Dense, In: widths[i], Out: widths[i+1]})
		if i+2 < len(widths) {
			spec.Layers = append(spec.Layers, LayerSpec{Kind: ReLU, In: widths[i+1], Out: widths[i+1]})
		}
	}
	return spec, nil
}

// MustParseSpec is ParseSpec for specs written in the program; it panics on error.
func MustParseSpec(s string) Spec {
	spec, err := ParseSpec(s)
	if err != nil {
		panic(err)
	}
	return spec
}

// String returns the spec in the form ParseSpec reads.
func (s Spec) String() string {
	parts := make([]string, len(s.Widths))
	for i, w := range s.Widths {
		parts[i] = strconv.Itoa(w)
	}
	return s.Family + ":" + strings.Join(parts, "-")
}

// Inputs is the number of features the model reads.
func (s Spec) Inputs() int { return s.Widths[0] }

// Classes is the number of classes the model predicts.
func (s Spec) Classes() int { return s.Widths[len(s.Widths)-1] }

// NumParams is the length of the model's parameter vector.
func (s Spec) NumParams() int {
	n := 0
	for _, l := range s.Layers {
		n += l.NumParams()
	}
	return n
}
