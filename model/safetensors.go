package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// safetensors layout: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data.

type tensorInfo struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// tensorNames returns each dense layer's tensor names with their shapes and
// offsets in the flat parameter vector: "dense_0.weight" (In×Out, as stored)
// and "dense_0.bias".
func (s Spec) tensorNames() (names []string, shapes [][]int, offsets []int) {
	off, dense := 0, 0
	for _, l := range s.Layers {
		if l.Kind != Dense {
			continue
		}
		names = append(names, fmt.Sprintf("dense_%d.weight", dense), fmt.Sprintf("dense_%d.bias", dense))
		shapes = append(shapes, []int{l.In, l.Out}, []int{l.Out})
		offsets = append(offsets, off, off+l.In*l.Out)
		off += l.NumParams()
		dense++
	}
	return names, shapes, offsets
}

// WriteSafetensors writes the model in the safetensors format, one F32
// tensor per weight matrix and bias vector, with the spec in the metadata.
// Weights are stored In×Out: PyTorch's nn.Linear wants their transpose.
func (m *Model) WriteSafetensors(w io.Writer, metadata map[string]string) error {
	if err := CheckParams(m.Spec, m.Params); err != nil {
		return err
	}
	names, shapes, offsets := m.Spec.tensorNames()
	header := map[string]any{}
	meta := map[string]string{"accord_model": m.Spec.String(), "format": "pt"}
	for k, v := range metadata {
		meta[k] = v
	}
	header["__metadata__"] = meta
	var pos int64
	for i, name := range names {
		n := 1
		for _, d := range shapes[i] {
			n *= d
		}
		header[name] = tensorInfo{DType: "F32", Shape: shapes[i], Offsets: [2]int64{pos, pos + 4*int64(n)}}
		pos += 4 * int64(n)
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hb)%8 != 0 { // pad the header so the data is 8-byte aligned
		hb = append(hb, ' ')
	}
	if err := binary.Write(w, binary.LittleEndian, uint64(len(hb))); err != nil {
		return err
	}
	if _, err := w.Write(hb); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	for i := range names {
		n := 1
		for _, d := range shapes[i] {
			n *= d
		}
		for _, v := range m.Params[offsets[i] : offsets[i]+n] {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			if len(buf) == cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	_, err = w.Write(buf)
	return err
}

// maxSafetensorsHeader bounds the JSON header ReadSafetensors accepts.
const maxSafetensorsHeader = 100 << 20

// ReadSafetensors reads a model written by WriteSafetensors (the spec comes
// from the metadata; every tensor must be present with the right shape).
// It allocates no more than the bytes it reads: lengths in the file are
// checked against the data present first.
func ReadSafetensors(r io.Reader) (*Model, error) {
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("safetensors header length: %w", err)
	}
	if n > maxSafetensorsHeader {
		return nil, fmt.Errorf("%w: safetensors header of %d bytes", ErrShape, n)
	}
	hb, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("safetensors header: %w", err)
	}
	if uint64(len(hb)) != n {
		return nil, fmt.Errorf("safetensors header: %d bytes of %d: %w", len(hb), n, io.ErrUnexpectedEOF)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, fmt.Errorf("safetensors header: %w", err)
	}
	var meta map[string]string
	if err := json.Unmarshal(raw["__metadata__"], &meta); err != nil || meta["accord_model"] == "" {
		return nil, errors.New("safetensors: no accord_model in the metadata")
	}
	spec, err := ParseSpec(meta["accord_model"])
	if err != nil {
		return nil, err
	}
	size := int64(spec.NumParams()) * 4
	data, err := io.ReadAll(io.LimitReader(r, size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) < size {
		return nil, fmt.Errorf("%w: %d bytes of tensor data; model %s needs %d", ErrShape, len(data), spec, size)
	}
	names, shapes, offsets := spec.tensorNames()
	params := make([]float32, spec.NumParams())
	for i, name := range names {
		var ti tensorInfo
		if err := json.Unmarshal(raw[name], &ti); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		if ti.DType != "F32" || fmt.Sprint(ti.Shape) != fmt.Sprint(shapes[i]) {
			return nil, fmt.Errorf("%w: tensor %s is %s %v; want F32 %v", ErrShape, name, ti.DType, ti.Shape, shapes[i])
		}
		count := 1
		for _, d := range shapes[i] {
			count *= d
		}
		// Each bound on its own: hi-lo could overflow.
		lo, hi := ti.Offsets[0], ti.Offsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) || hi-lo != 4*int64(count) {
			return nil, fmt.Errorf("%w: tensor %s's data_offsets [%d, %d] are not %d bytes within the %d of data", ErrShape, name, lo, hi, 4*count, len(data))
		}
		for k := range count {
			params[offsets[i]+k] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+4*int64(k):]))
		}
	}
	return FromParams(spec, params)
}
