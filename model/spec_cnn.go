package model

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits on a cnn spec beyond MaxParams and MaxDenseLayers, so that a
// hostile spec cannot make training allocate gigabytes of activations.
const (
	// maxKernel is the largest convolution kernel (odd sizes only).
	maxKernel = 15
	// maxChannels is the most channels a convolution may output.
	maxChannels = 4096
	// maxActivation is the most values one layer may output per example.
	maxActivation = 1 << 20
)

// parseCNN reads the part of a cnn spec after "cnn:":
// HxWxC, then layers cKxN, pS and fN, then the number of classes.
func parseCNN(quoted, body string) (Spec, error) {
	bad := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%w %q: "+format, append([]any{ErrBadSpec, quoted}, args...)...)
	}
	if strings.Count(body, "-") > MaxDenseLayers {
		return bad("more than %d layers", MaxDenseLayers)
	}
	fields := strings.Split(body, "-")
	if len(fields) < 2 {
		return bad("want cnn:HxWxC-LAYERS-CLASSES, for example cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10")
	}
	dims, ok := ints(fields[0], 3)
	if !ok {
		return bad("input %q is not HxWxC", short(fields[0]))
	}
	h, w, c := dims[0], dims[1], dims[2]
	if h*w*c > maxWidth {
		return bad("input %dx%dx%d has more than %d values", h, w, c, maxWidth)
	}
	spec := Spec{Family: "cnn", Widths: []int{h * w * c}}
	width := h * w * c // of the current rows
	flat := false      // whether the layers so far end in fully connected ones
	params := 0
	add := func(l LayerSpec) bool {
		spec.Layers = append(spec.Layers, l)
		params += l.NumParams()
		return params <= MaxParams
	}
	flatten := func() {
		if !flat {
			spec.Layers = append(spec.Layers, LayerSpec{Kind: Flatten, In: width, Out: width, C: c, H: h, W: w})
			flat = true
		}
	}
	for i, f := range fields[1:] {
		last := i == len(fields)-2
		var ok bool
		switch {
		case last:
			classes, err := strconv.Atoi(f)
			if err != nil || classes < 2 || classes > maxWidth {
				return bad("classes %q is not an integer in [2, %d]", short(f), maxWidth)
			}
			flatten()
			ok = add(LayerSpec{Kind: Dense, In: width, Out: classes})
			spec.Widths = append(spec.Widths, classes)
		case strings.HasPrefix(f, "c"):
			kn, good := ints(f[1:], 2)
			if !good || kn[0]%2 == 0 || kn[0] > maxKernel || kn[1] > maxChannels {
				return bad("convolution %q is not cKxN with K odd in [1, %d] and N in [1, %d]", short(f), maxKernel, maxChannels)
			}
			if flat {
				return bad("convolution %q after a fully connected layer", short(f))
			}
			k, n := kn[0], kn[1]
			out := n * h * w
			if out > maxActivation || c*k*k*h*w > 16*maxActivation {
				return bad("convolution %q on %dx%dx%d outputs too many values", short(f), h, w, c)
			}
			ok = add(LayerSpec{Kind: Conv, In: width, Out: out, C: c, H: h, W: w, Size: k}) &&
				add(LayerSpec{Kind: ReLU, In: out, Out: out})
			c, width = n, out
		case strings.HasPrefix(f, "p"):
			s, err := strconv.Atoi(f[1:])
			if len(f) < 2 || f[1] < '0' || f[1] > '9' || err != nil || s < 2 || s > h || s > w {
				return bad("pooling %q is not pS with S in [2, %d]", short(f), min(h, w))
			}
			if flat {
				return bad("pooling %q after a fully connected layer", short(f))
			}
			out := c * (h / s) * (w / s)
			ok = add(LayerSpec{Kind: MaxPool, In: width, Out: out, C: c, H: h, W: w, Size: s})
			h, w, width = h/s, w/s, out
		case strings.HasPrefix(f, "f"):
			n, err := strconv.Atoi(f[1:])
			if len(f) < 2 || f[1] < '0' || f[1] > '9' || err != nil || n < 1 || n > maxWidth {
				return bad("fully connected layer %q is not fN with N in [1, %d]", short(f), maxWidth)
			}
			flatten()
			ok = add(LayerSpec{Kind: Dense, In: width, Out: n}) && add(LayerSpec{Kind: ReLU, In: n, Out: n})
			width = n
			spec.Widths = append(spec.Widths, n)
		default:
			return bad("layer %q is not cKxN, pS or fN", short(f))
		}
		if !ok {
			return bad("more than %d parameters", MaxParams)
		}
	}
	if len(spec.Layers) > 2*MaxDenseLayers {
		return bad("more than %d layers", 2*MaxDenseLayers)
	}
	return spec, nil
}

// ints parses n positive integers of at most maxWidth separated by "x".
func ints(s string, n int) ([]int, bool) {
	parts := strings.Split(s, "x")
	if len(parts) != n {
		return nil, false
	}
	out := make([]int, n)
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 || v > maxWidth || p[0] < '0' || p[0] > '9' {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// short shortens a field of a spec for an error message.
func short(f string) string {
	if len(f) > 20 {
		return f[:20] + "…"
	}
	return f
}

// cnnString writes a cnn spec in the form parseCNN reads.
func (s Spec) cnnString() string {
	var b strings.Builder
	first := s.Layers[0]
	fmt.Fprintf(&b, "cnn:%dx%dx%d", first.H, first.W, first.C)
	for i, l := range s.Layers {
		switch l.Kind {
		case Conv:
			fmt.Fprintf(&b, "-c%dx%d", l.Size, l.Channels())
		case MaxPool:
			fmt.Fprintf(&b, "-p%d", l.Size)
		case Dense:
			if i+1 < len(s.Layers) {
				fmt.Fprintf(&b, "-f%d", l.Out)
			} else {
				fmt.Fprintf(&b, "-%d", l.Out)
			}
		}
	}
	return b.String()
}
