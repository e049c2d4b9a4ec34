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

// tensor is one tensor of a model file: its name, its shape, where its
// values start in the flat parameter vector, and whether the file holds it
// transposed (a weight matrix in PyTorch's [out, in] layout; the parameter
// vector holds it [in, out]).
type tensor struct {
	name       string
	shape      []int
	offset     int
	transposed bool
}

// count is the tensor's number of values.
func (t tensor) count() int {
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	return n
}

// flat is the index in the parameter vector of the tensor's k-th value in
// the file's order.
func (t tensor) flat(k int) int {
	if !t.transposed {
		return t.offset + k
	}
	out, in := t.shape[0], t.shape[1]
	o, i := k/in, k%in // file: [out][in]; parameters: [in][out]
	return t.offset + i*out + o
}

// tensors are the model's tensors as a torch.nn.Sequential of the same
// architecture names them in its state_dict: the dense layer at position p
// of the spec (ReLUs, pools and Flatten count, as they do in Sequential) is
// "p.weight", [out, in] like nn.Linear's, and "p.bias"; a Conv layer's are
// "p.weight", [out, in, K, K] like nn.Conv2d's, and "p.bias". legacy gives the names and
// layout files written before (dense_0.weight, [in, out]), for reading them.
func (s Spec) tensors(legacy bool) []tensor {
	var out []tensor
	off, dense := 0, 0
	for p, l := range s.Layers {
		if l.Kind == Conv {
			// nn.Conv2d's [out][in][kH][kW], as the parameters hold it.
			n := l.Channels()
			out = append(out, tensor{fmt.Sprintf("%d.weight", p), []int{n, l.C, l.Size, l.Size}, off, false},
				tensor{fmt.Sprintf("%d.bias", p), []int{n}, off + n*l.C*l.Size*l.Size, false})
			off += l.NumParams()
			continue
		}
		if l.Kind != Dense {
			continue
		}
		if legacy {
			out = append(out, tensor{fmt.Sprintf("dense_%d.weight", dense), []int{l.In, l.Out}, off, false},
				tensor{fmt.Sprintf("dense_%d.bias", dense), []int{l.Out}, off + l.In*l.Out, false})
		} else {
			out = append(out, tensor{fmt.Sprintf("%d.weight", p), []int{l.Out, l.In}, off, true},
				tensor{fmt.Sprintf("%d.bias", p), []int{l.Out}, off + l.In*l.Out, false})
		}
		off += l.NumParams()
		dense++
	}
	return out
}

// WriteSafetensors writes the model in the safetensors format with the
// names and layout of a torch.nn.Sequential state_dict of the same
// architecture ("0.weight" [out, in], "0.bias", "2.weight", …), so
// load_state_dict takes it unchanged; the spec is in the metadata.
func (m *Model) WriteSafetensors(w io.Writer, metadata map[string]string) error {
	if err := CheckParams(m.Spec, m.Params); err != nil {
		return err
	}
	tensors := m.Spec.tensors(false)
	header := map[string]any{}
	meta := map[string]string{"accord_model": m.Spec.String(), "format": "pt"}
	for k, v := range metadata {
		meta[k] = v
	}
	header["__metadata__"] = meta
	var pos int64
	for _, t := range tensors {
		header[t.name] = tensorInfo{DType: "F32", Shape: t.shape, Offsets: [2]int64{pos, pos + 4*int64(t.count())}}
		pos += 4 * int64(t.count())
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
	for _, t := range tensors {
		for k := range t.count() {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(m.Params[t.flat(k)]))
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
	tensors := spec.tensors(false)
	if _, ok := raw[tensors[0].name]; !ok {
		tensors = spec.tensors(true) // a file from before PyTorch's layout
	}
	params := make([]float32, spec.NumParams())
	for _, t := range tensors {
		var ti tensorInfo
		if err := json.Unmarshal(raw[t.name], &ti); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %s: %w", t.name, err)
		}
		if ti.DType != "F32" || fmt.Sprint(ti.Shape) != fmt.Sprint(t.shape) {
			return nil, fmt.Errorf("%w: tensor %s is %s %v; want F32 %v", ErrShape, t.name, ti.DType, ti.Shape, t.shape)
		}
		count := t.count()
		// Each bound on its own: hi-lo could overflow.
		lo, hi := ti.Offsets[0], ti.Offsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) || hi-lo != 4*int64(count) {
			return nil, fmt.Errorf("%w: tensor %s's data_offsets [%d, %d] are not %d bytes within the %d of data", ErrShape, t.name, lo, hi, 4*count, len(data))
		}
		for k := range count {
			params[t.flat(k)] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+4*int64(k):]))
		}
	}
	return FromParams(spec, params)
}
