package model

import (
	"bytes"
	"encoding/binary"
	"math"
	"runtime"
	"slices"
	"strings"
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
	// torch.nn.Sequential(Linear(6, 5), ReLU(), Linear(5, 4), ReLU(),
	// Linear(4, 3)).state_dict(): 0.weight [5, 6], 0.bias, 2.weight [4, 5],
	// 2.bias, 4.weight [3, 4], 4.bias.
	for _, name := range []string{`"0.weight":{"dtype":"F32","shape":[5,6]`, `"0.bias":{"dtype":"F32","shape":[5]`,
		`"2.weight":{"dtype":"F32","shape":[4,5]`, `"4.weight":{"dtype":"F32","shape":[3,4]`, `"4.bias"`,
		`"accord_model":"mlp:6-5-4-3"`, `"format":"pt"`, `"round":"12"`} {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("header lacks %s", name)
		}
	}
	// 0.weight[o][i] is nn.Linear's weight: output o from input i, which
	// the trainer keeps at W[i][o] (params[i*5+o]).
	data := b[8+(int(b[0])|int(b[1])<<8):]
	value := func(k int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(data[4*k:])) }
	for o := range 5 {
		for i := range 6 {
			if got, want := value(o*6+i), m.Params[i*5+o]; got != want {
				t.Fatalf("0.weight[%d][%d] = %v; want W[%d][%d] = %v", o, i, got, i, o, want)
			}
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

// safetensorsFile lays out a safetensors file with the given JSON header
// and data.
func safetensorsFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

// TestReadSafetensorsRefusesCraftedFiles: crafted headers are errors, not
// panics, and a header's lengths allocate nothing the file does not hold.
func TestReadSafetensorsRefusesCraftedFiles(t *testing.T) {
	// logreg:2-2 has dense_0.weight (2×2, 16 bytes) and dense_0.bias (8 bytes).
	header := func(weight, bias string) string {
		return `{"__metadata__":{"accord_model":"logreg:2-2"},` +
			`"dense_0.weight":{"dtype":"F32","shape":[2,2],"data_offsets":` + weight + `},` +
			`"dense_0.bias":{"dtype":"F32","shape":[2],"data_offsets":` + bias + `}}`
	}
	data := make([]byte, 24)
	cases := []struct {
		name string
		file []byte
	}{
		{"offsets [8,0] (the reported panic)", safetensorsFile(header("[0,16]", "[8,0]"), data)},
		{"offsets reversed by a multiple of 4", safetensorsFile(header("[16,0]", "[16,24]"), data)},
		{"negative start", safetensorsFile(header("[-8,8]", "[16,24]"), data)},
		{"range past the data", safetensorsFile(header("[0,16]", "[24,32]"), data)},
		{"range whose length overflows", safetensorsFile(header("[0,16]", "[-9223372036854775808,9223372036854775807]"), data)},
		{"range not a multiple of 4", safetensorsFile(header("[0,16]", "[16,23]"), data)},
		{"range of the wrong length", safetensorsFile(header("[0,12]", "[16,24]"), data)},
		{"wrong dtype", safetensorsFile(strings.Replace(header("[0,16]", "[16,24]"), "F32", "F16", 1), data)},
		{"wrong shape", safetensorsFile(strings.Replace(header("[0,16]", "[16,24]"), "[2,2]", "[4,1]", 1), data)},
		{"missing tensor", safetensorsFile(`{"__metadata__":{"accord_model":"logreg:2-2"}}`, data)},
		{"no metadata", safetensorsFile(`{}`, data)},
		{"header not JSON", safetensorsFile(`{"__metadata__":`, data)},
		{"header longer than the file", binary.LittleEndian.AppendUint64(nil, 100<<20)},
		{"header over the limit", binary.LittleEndian.AppendUint64(nil, 1<<62)},
		{"data shorter than the model", safetensorsFile(header("[0,16]", "[16,24]"), data[:20])},
		{"a huge model with no data", safetensorsFile(`{"__metadata__":{"accord_model":"mlp:65536-4096-2"}}`, nil)},
		{"a model over MaxParams", safetensorsFile(`{"__metadata__":{"accord_model":"mlp:65536-65536-2"}}`, nil)},
		{"NaN data", safetensorsFile(header("[0,16]", "[16,24]"), append(make([]byte, 20), 0, 0, 0xc0, 0x7f))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			m, err := ReadSafetensors(bytes.NewReader(c.file))
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("read a model of %d parameters; want an error", len(m.Params))
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("allocated %d bytes for a file of %d", grew, len(c.file))
			}
		})
	}
	// The same layout with good offsets reads.
	if _, err := ReadSafetensors(bytes.NewReader(safetensorsFile(header("[0,16]", "[16,24]"), data))); err != nil {
		t.Errorf("well-formed file: %v", err)
	}
}

// TestReadLegacySafetensors: files written before the PyTorch layout
// (dense_N.weight, [in, out]) still read.
func TestReadLegacySafetensors(t *testing.T) {
	m := New(MustParseSpec("mlp:3-2-2"), 1)
	header := `{"__metadata__":{"accord_model":"mlp:3-2-2"},` +
		`"dense_0.weight":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]},"dense_0.bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},` +
		`"dense_1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[32,48]},"dense_1.bias":{"dtype":"F32","shape":[2],"data_offsets":[48,56]}}`
	var data []byte
	for _, v := range m.Params {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	got, err := ReadSafetensors(bytes.NewReader(safetensorsFile(header, data)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Params, m.Params) {
		t.Fatal("a legacy file read into other parameters")
	}
}
