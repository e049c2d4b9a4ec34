package model

import (
	"bytes"
	"slices"
	"testing"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	m := New(MustParseSpec("mlp:6-5-4-3"), 7)
	var buf bytes.Buffer
	if err := m.WriteSafetensors(&buf, map[string]string{"round": "12"}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if hl := int(b[0]) | int(b[1])<<8; (8+hl)%8 != 0 || len(b) != 8+hl+4*m.Spec.NumParams() {
		t.Fatalf("file of %d bytes with header %d; want 8 + header + %d data bytes, data aligned", len(b), hl, 4*m.Spec.NumParams())
	}
	for _, name := range []string{`"dense_0.weight"`, `"dense_2.bias"`, `"shape":[6,5]`, `"accord_model":"mlp:6-5-4-3"`} {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("header lacks %s", name)
		}
	}
	got, err := ReadSafetensors(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Params, m.Params) || got.Spec.String() != m.Spec.String() {
		t.Fatal("model changed in a round trip through safetensors")
	}
	if _, err := ReadSafetensors(bytes.NewReader(b[:len(b)-4])); err == nil {
		t.Error("truncated file read without error")
	}
}
