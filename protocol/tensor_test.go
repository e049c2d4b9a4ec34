package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestTensorRoundTripAndChunks(t *testing.T) {
	v := []float32{1, -2.5, 3e-7, float32(math.MaxFloat32)}
	got, err := DecodeFloat32(EncodeFloat32(v))
	if err != nil || !slices.Equal(got, v) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	bad := EncodeFloat32([]float32{1, float32(math.Inf(1))})
	if _, err := DecodeFloat32(bad); !errors.Is(err, ErrTensor) {
		t.Errorf("infinity decoded: %v", err)
	}
	if _, err := DecodeFloat32([]byte{1, 2, 3}); !errors.Is(err, ErrTensor) {
		t.Errorf("3 bytes decoded: %v", err)
	}
	big := make([]byte, 2*ChunkBytes+5)
	chunks := Chunks(big)
	if len(chunks) != 3 || len(chunks[2]) != 5 {
		t.Errorf("chunks of %d bytes: %d pieces", len(big), len(chunks))
	}
	if len(Chunks(nil)) != 1 {
		t.Error("an empty blob must still make one (empty) chunk")
	}
}

func TestReceiveBlob(t *testing.T) {
	chunks := func(parts ...[]byte) func() ([]byte, error) {
		return func() ([]byte, error) {
			if len(parts) == 0 {
				return nil, io.EOF
			}
			p := parts[0]
			parts = parts[1:]
			return p, nil
		}
	}
	whole := []byte("federated")
	got, err := ReceiveBlob(chunks([]byte("feder"), []byte("ated")), Digest(whole))
	if err != nil || string(got) != "federated" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ReceiveBlob(chunks([]byte("tampered")), Digest(whole)); !errors.Is(err, ErrBlob) {
		t.Errorf("wrong content: got %v; want ErrBlob", err)
	}
	broken := errors.New("connection reset")
	if _, err := ReceiveBlob(func() ([]byte, error) { return nil, broken }, ""); !errors.Is(err, broken) {
		t.Errorf("stream error: got %v; want it passed through", err)
	}
}

// TestDecodeFloat32IntoRefusesChunksOutsideTheVector is the fuzzer's
// first find: an offset near MaxInt made offset+len(b)/4 overflow, pass
// the bounds check and index out of range.
func TestDecodeFloat32IntoRefusesChunksOutsideTheVector(t *testing.T) {
	one := EncodeFloat32([]float32{1})
	cases := []struct {
		name   string
		n      int
		offset int
		b      []byte
		ok     bool
	}{
		{"last element", 2, 1, one, true},
		{"empty chunk at the end", 2, 2, nil, true},
		{"one past the end", 2, 2, one, false},
		{"negative offset", 2, -1, one, false},
		{"offset past the end, empty chunk", 2, 3, nil, false},
		{"offset that overflows", 2, math.MaxInt, one, false},
		{"length not a multiple of 4", 2, 0, []byte{1, 2, 3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := DecodeFloat32Into(make([]float32, c.n), c.offset, c.b)
			if c.ok && err != nil || !c.ok && !errors.Is(err, ErrTensor) {
				t.Errorf("got %v; want ok = %v", err, c.ok)
			}
		})
	}
}

// BenchmarkDecodeFloat32Into decodes the 2NN's 199,210 parameters, as
// the leader does for every update.
func BenchmarkDecodeFloat32Into(b *testing.B) {
	v := make([]float32, 199_210)
	for i := range v {
		v[i] = float32(i) * 1e-6
	}
	enc := EncodeFloat32(v)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if err := DecodeFloat32Into(v, 0, enc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWirePathsAgree: the copy this little-endian machine makes and the
// conversion per value other machines make give the same bytes and
// values, and refuse the same non-finite value.
func TestWirePathsAgree(t *testing.T) {
	if !littleEndian {
		t.Skip("this machine is big endian: only the conversion per value runs")
	}
	defer func() { littleEndian = true }()
	v := make([]float32, 1001)
	u := make([]uint32, 1001)
	for i := range v {
		v[i] = float32(i)*0.37 - 100
		u[i] = uint32(i) * 2654435761
	}
	run := func(le bool) (fb, ub []byte, fv []float32, uv []uint32, bad error) {
		littleEndian = le
		fb, ub = EncodeFloat32(v), EncodeUint32(u)
		fv, uv = make([]float32, len(v)+2), make([]uint32, len(u)+2)
		if err := DecodeFloat32Into(fv, 2, fb); err != nil {
			t.Fatal(err)
		}
		if err := DecodeUint32Into(uv, 2, ub); err != nil {
			t.Fatal(err)
		}
		nan := slices.Clone(fb)
		binary.LittleEndian.PutUint32(nan[4*500:], 0x7fc00000)
		return fb, ub, fv, uv, DecodeFloat32Into(make([]float32, len(v)), 0, nan)
	}
	fb1, ub1, fv1, uv1, bad1 := run(true)
	fb2, ub2, fv2, uv2, bad2 := run(false)
	if !bytes.Equal(fb1, fb2) || !bytes.Equal(ub1, ub2) || !slices.Equal(fv1, fv2) || !slices.Equal(uv1, uv2) {
		t.Fatal("the copy and the conversion per value differ")
	}
	if !slices.Equal(fv1[2:], v) || !slices.Equal(uv1[2:], u) {
		t.Fatal("a round trip changed the values")
	}
	if bad1 == nil || bad2 == nil || bad1.Error() != bad2.Error() || !strings.Contains(bad1.Error(), "element 500 is NaN") {
		t.Fatalf("a NaN at element 500: %v and %v; want both refused naming it", bad1, bad2)
	}
}
