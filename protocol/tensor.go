package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"unsafe"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ChunkBytes is the most data one stream message carries: models and updates
// travel as streams of chunks, never as one giant message.
const ChunkBytes = 1 << 20

// ErrTensor means bytes do not decode to the expected float32 vector.
var ErrTensor = errors.New("bad tensor")

// littleEndian reports whether this machine keeps words in memory as the
// wire does (little endian): its vectors then go to and from the wire by
// one copy, instead of a conversion per value.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// wordBytes is the memory of v as bytes, four a value.
func wordBytes[T float32 | uint32](v []T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

// EncodeFloat32 returns v as little-endian float32 bytes.
func EncodeFloat32(v []float32) []byte { return encodeWords(v) }

// EncodeUint32 returns v as little-endian bytes (a masked input).
func EncodeUint32(v []uint32) []byte { return encodeWords(v) }

// encodeWords returns v's four-byte values little endian: its memory as
// it is on a little-endian machine, each value rewritten from the native
// order to little endian on others.
func encodeWords[T float32 | uint32](v []T) []byte {
	b := make([]byte, 4*len(v))
	copy(b, wordBytes(v))
	if !littleEndian {
		for i := 0; i < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(b[i:]))
		}
	}
	return b
}

// wordsAt checks that b holds whole four-byte values that fit dst from
// element offset on, and returns that part of dst and of b.
func wordsAt[T float32 | uint32](dst []T, offset int, b []byte) ([]T, []byte, error) {
	// offset > len(dst) first: offset+len(b)/4 could overflow.
	if len(b)%4 != 0 || offset < 0 || offset > len(dst) || len(b)/4 > len(dst)-offset {
		return nil, nil, fmt.Errorf("%w: %d bytes at element %d do not fit %d elements", ErrTensor, len(b), offset, len(dst))
	}
	out := dst[offset : offset+len(b)/4]
	return out, b[:4*len(out)], nil
}

// DecodeFloat32Into decodes little-endian float32 bytes into dst starting at
// element offset and refuses non-finite values.
func DecodeFloat32Into(dst []float32, offset int, b []byte) error {
	out, b, err := wordsAt(dst, offset, b)
	if err != nil {
		return err
	}
	// An infinity or a NaN has an exponent of all ones: adding one to it
	// carries into the sign bit. The loop only notes that one came (no
	// branch on the data); the slow path finds it.
	var special uint32
	if littleEndian {
		copy(wordBytes(out), b)
		for _, u := range unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(out))), len(out)) {
			special |= (u&0x7f800000 + 0x00800000) >> 31
		}
	} else {
		for i := range out {
			u := binary.LittleEndian.Uint32(b[4*i:])
			special |= (u&0x7f800000 + 0x00800000) >> 31
			out[i] = math.Float32frombits(u)
		}
	}
	if special != 0 {
		for i, x := range out {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("%w: element %d is %v", ErrTensor, offset+i, x)
			}
		}
	}
	return nil
}

// DecodeUint32Into decodes little-endian uint32 bytes (a masked input)
// into dst starting at element offset.
func DecodeUint32Into(dst []uint32, offset int, b []byte) error {
	out, b, err := wordsAt(dst, offset, b)
	if err != nil {
		return err
	}
	if littleEndian {
		copy(wordBytes(out), b)
		return nil
	}
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return nil
}

// DecodeFloat32 decodes a whole vector.
func DecodeFloat32(b []byte) ([]float32, error) {
	v := make([]float32, len(b)/4)
	return v, DecodeFloat32Into(v, 0, b)
}

// Digest is the content address of a blob: "sha256:" and the hex digest.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Chunks splits b into pieces of at most ChunkBytes (one empty piece for an
// empty b).
func Chunks(b []byte) [][]byte {
	var out [][]byte
	for len(b) > ChunkBytes {
		out = append(out, b[:ChunkBytes])
		b = b[ChunkBytes:]
	}
	return append(out, b)
}

// MaxBlobBytes bounds a blob received in chunks.
const MaxBlobBytes = 1 << 30

// ErrBlob means chunks do not make the blob expected: too large, or not
// hashing to its digest.
var ErrBlob = errors.New("bad blob")

// ReceiveBlob reads chunks until recv returns io.EOF and joins their data.
// When want is not empty, the result must hash to it.
func ReceiveBlob(recv func() ([]byte, error), want string) ([]byte, error) {
	var blob []byte
	for {
		data, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(blob)+len(data) > MaxBlobBytes {
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrBlob, MaxBlobBytes)
		}
		blob = append(blob, data...)
	}
	if want != "" {
		if got := Digest(blob); got != want {
			return nil, fmt.Errorf("%w: content hashes to %s, not %s", ErrBlob, got, want)
		}
	}
	return blob, nil
}

// ReceiveModel reads a PullModel stream to its end: the model's bytes,
// and its first chunk, which carries the digest and the model spec (nil
// if the stream had no chunk). It does not check the digest; callers
// that trust it only once checked compare it with Digest(blob).
func ReceiveModel(stream interface {
	Recv() (*pb.ModelChunk, error)
}) (blob []byte, first *pb.ModelChunk, err error) {
	blob, err = ReceiveBlob(func() ([]byte, error) {
		ch, err := stream.Recv()
		if first == nil && err == nil {
			first = ch
		}
		return ch.GetData(), err
	}, "")
	return blob, first, err
}
