package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The encoding of an OptimizerState, version 1, little-endian:
//
//	byte 0      version (1)
//	bytes 1–4   uint32 len(M)
//	bytes 5–8   uint32 len(V)
//	then        len(M) float32 of M, then len(V) float32 of V
//
// and nothing after. V is empty or as long as M; every value is finite.
// MarshalBinary and UnmarshalBinary refuse anything else, so that
// decoding then encoding returns the same bytes.
const (
	stateVersion = 1
	stateHeader  = 9
	// maxStateParams bounds len(M) and len(V), as model specs bound
	// parameters (2^28).
	maxStateParams = 1 << 28
)

// MarshalBinary encodes s (nil: the empty state).
func (s *OptimizerState) MarshalBinary() ([]byte, error) {
	var m, v []float32
	if s != nil {
		m, v = s.M, s.V
	}
	if err := stateShape(len(m), len(v)); err != nil {
		return nil, err
	}
	b := make([]byte, stateHeader, stateHeader+4*(len(m)+len(v)))
	b[0] = stateVersion
	binary.LittleEndian.PutUint32(b[1:], uint32(len(m)))
	binary.LittleEndian.PutUint32(b[5:], uint32(len(v)))
	for _, part := range [][]float32{m, v} {
		for i, x := range part {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: value %d is %v", ErrState, i, x)
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b, nil
}

// UnmarshalBinary decodes b into s. It refuses, with an error wrapping
// ErrState, a version other than 1, lengths over 2^28 or of the wrong
// shape, bytes missing or left over, and values that are not finite; it
// allocates only after the length is checked. On error s is unchanged.
func (s *OptimizerState) UnmarshalBinary(b []byte) error {
	if len(b) < stateHeader {
		return fmt.Errorf("%w: %d bytes; the header alone is %d", ErrState, len(b), stateHeader)
	}
	if b[0] != stateVersion {
		return fmt.Errorf("%w: version %d; this build reads version %d", ErrState, b[0], stateVersion)
	}
	nm, nv := binary.LittleEndian.Uint32(b[1:]), binary.LittleEndian.Uint32(b[5:])
	if nm > maxStateParams || nv > maxStateParams {
		return fmt.Errorf("%w: m and v of %d and %d values; at most %d", ErrState, nm, nv, maxStateParams)
	}
	if err := stateShape(int(nm), int(nv)); err != nil {
		return err
	}
	if want := stateHeader + 4*(int(nm)+int(nv)); len(b) != want {
		return fmt.Errorf("%w: %d bytes; m and v of %d and %d values take %d", ErrState, len(b), nm, nv, want)
	}
	decode := func(p []byte, n uint32) ([]float32, error) {
		if n == 0 {
			return nil, nil
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
			if math.IsNaN(float64(out[i])) || math.IsInf(float64(out[i]), 0) {
				return nil, fmt.Errorf("%w: value %d is %v", ErrState, i, out[i])
			}
		}
		return out, nil
	}
	m, err := decode(b[stateHeader:], nm)
	if err != nil {
		return err
	}
	v, err := decode(b[stateHeader+4*int(nm):], nv)
	if err != nil {
		return err
	}
	s.M, s.V = m, v
	return nil
}

// stateShape checks that v is empty or as long as m.
func stateShape(nm, nv int) error {
	if nm > maxStateParams || nv > maxStateParams {
		return fmt.Errorf("%w: m and v of %d and %d values; at most %d", ErrState, nm, nv, maxStateParams)
	}
	if nv != 0 && nv != nm {
		return fmt.Errorf("%w: v has %d values and m %d; want none or as many", ErrState, nv, nm)
	}
	return nil
}
