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
	// Conv is a 2-D convolution of Size×Size kernels, stride 1, zero
	// padding Size/2 on every side ("same": the output is H×W, like
	// PyTorch's nn.Conv2d(C, Channels(), Size, padding=Size//2)).
	Conv LayerKind = "conv"
	// MaxPool is max-pooling over Size×Size windows with stride Size; rows
	// and columns left over at the bottom and right are dropped
	// (nn.MaxPool2d(Size)).
	MaxPool LayerKind = "maxpool"
	// Flatten turns C×H×W images into rows of C·H·W values, channel-major
	// as they already lie (nn.Flatten); it moves no data.
	Flatten LayerKind = "flatten"
)

// LayerSpec describes one layer. In and Out are the widths of its input and
// output rows. Images lie in rows channel-major (NCHW): value [c][y][x] of
// a C×H×W image is at c·H·W + y·W + x.
type LayerSpec struct {
	Kind    LayerKind
	In, Out int
	// C, H and W are the channels, height and width of the input image of
	// a Conv, MaxPool or Flatten layer (In = C·H·W); zero for the others.
	C, H, W int
	// Size is a Conv's kernel size or a MaxPool's window; zero for the others.
	Size int
}

// Channels is the number of channels a Conv or MaxPool layer outputs.
func (l LayerSpec) Channels() int {
	switch l.Kind {
	case Conv:
		return l.Out / (l.H * l.W)
	case MaxPool:
		return l.C
	}
	return 0
}

// NumParams is the number of parameters the layer owns.
func (l LayerSpec) NumParams() int {
	switch l.Kind {
	case Dense:
		return l.In*l.Out + l.Out
	case Conv:
		return l.Channels() * (l.C*l.Size*l.Size + 1)
	}
	return 0
}

// Spec is a model architecture: a family name and its layers. The last
// layer's outputs are the logits of a softmax over the classes.
type Spec struct {
	// Family is "logreg", "mlp" or "cnn".
	Family string
	// Widths are the widths from the spec string: inputs, hidden layers,
	// classes. For a cnn they are the input's H·W·C, the fully connected
	// layers' widths and the classes.
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

// ParseSpec parses a spec such as "logreg:784-10", "mlp:784-200-200-10" or
// "cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10" (the grammar of cnn specs is in
// the package documentation). It refuses a spec of more than MaxDenseLayers
// layers or MaxParams parameters without reading further.
func ParseSpec(s string) (Spec, error) {
	quoted := s
	if len(quoted) > 80 {
		quoted = quoted[:80] + "…"
	}
	family, dims, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Spec{}, fmt.Errorf("%w %q: want FAMILY:IN-...-CLASSES, for example mlp:784-200-200-10", ErrBadSpec, quoted)
	}
	if family == "cnn" {
		return parseCNN(quoted, dims)
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
		return Spec{}, fmt.Errorf("%w %q: unknown family %q (want logreg, mlp or cnn)", ErrBadSpec, quoted, family)
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
	if s.Family == "cnn" {
		return s.cnnString()
	}
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
