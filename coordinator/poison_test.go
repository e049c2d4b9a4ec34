package coordinator

import (
	"math"
	"testing"

	"github.com/accord-fl/accord/model"
)

// A new model is committed only if its parameters are finite and its loss
// on a probe batch is too.
func TestProbeModel(t *testing.T) {
	spec := model.MustParseSpec("logreg:8-3")
	fill := func(v float32) []float32 {
		p := make([]float32, spec.NumParams())
		for i := range p {
			p[i] = v
		}
		return p
	}
	cases := []struct {
		name   string
		params []float32
		ok     bool
	}{
		{"an ordinary model", model.New(spec, 1).Params, true},
		{"a NaN parameter", func() []float32 { p := fill(0.1); p[3] = float32(math.NaN()); return p }(), false},
		{"an infinite parameter", func() []float32 { p := fill(0.1); p[0] = float32(math.Inf(-1)); return p }(), false},
		{"finite, but its logits overflow", fill(3e38), false},
	}
	for _, c := range cases {
		if err := probeModel(spec, c.params); (err == nil) != c.ok {
			t.Errorf("%s: %v; want ok=%v", c.name, err, c.ok)
		}
	}
}
