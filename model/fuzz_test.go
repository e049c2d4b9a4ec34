package model

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// Fuzz targets for the model specs and files Accord reads from elsewhere
// (job files, tasks, safetensors downloads). `make fuzz` runs them.

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"logreg:784-10", "mlp:784-200-200-10", " mlp:2-3-2 ", "mlp:784-10", "logreg:8-3",
		"mlp:784-65536-65536-65536-65536-65536-65536-65536-65536-10", "logreg:65535-4096",
		"mlp:1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-2",
		"mlp:+1-0x10-2", "logreg:-1-2", ":", "mlp:", "logreg:9223372036854775807-2", "mlp:784--10",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("error %v is not ErrBadSpec", err)
			}
			return
		}
		if n := spec.NumParams(); n < 1 || n > MaxParams {
			t.Fatalf("%q: %d parameters accepted", s, n)
		}
		if spec.Inputs() < 1 || spec.Classes() < 2 || len(spec.Widths) > MaxDenseLayers+1 {
			t.Fatalf("%q: accepted %d inputs, %d classes, %d widths", s, spec.Inputs(), spec.Classes(), len(spec.Widths))
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again.String() != spec.String() || !slices.Equal(again.Layers, spec.Layers) {
			t.Fatalf("%q does not round-trip through %q: %v", s, spec.String(), err)
		}
	})
}

func FuzzReadSafetensors(f *testing.F) {
	for _, s := range []string{"logreg:2-2", "mlp:3-4-2", "logreg:1-3"} {
		var buf bytes.Buffer
		if err := New(MustParseSpec(s), 1).WriteSafetensors(&buf, map[string]string{"round": "3"}); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	const weight, bias = `"dense_0.weight":{"dtype":"F32","shape":[2,2],"data_offsets":`, `"dense_0.bias":{"dtype":"F32","shape":[2],"data_offsets":`
	meta := `{"__metadata__":{"accord_model":"logreg:2-2"},`
	f.Add(safetensorsFile(meta+weight+`[0,16]},`+bias+`[8,0]}}`, make([]byte, 24)))
	f.Add(safetensorsFile(meta+weight+`[0,16]},`+bias+`[16,24]}}`, make([]byte, 24)))
	f.Add(safetensorsFile(`{"__metadata__":{"accord_model":"mlp:65536-4096-2"}}`, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadSafetensors(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := CheckParams(m.Spec, m.Params); err != nil {
			t.Fatalf("read a model that does not check: %v", err)
		}
		if 4*len(m.Params) > len(b) {
			t.Fatalf("%d parameters from a file of %d bytes", len(m.Params), len(b))
		}
		var buf bytes.Buffer
		if err := m.WriteSafetensors(&buf, nil); err != nil {
			t.Fatal(err)
		}
		again, err := ReadSafetensors(&buf)
		if err != nil || !slices.Equal(again.Params, m.Params) || again.Spec.String() != m.Spec.String() {
			t.Fatalf("model read does not round-trip: %v", err)
		}
	})
}
