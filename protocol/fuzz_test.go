package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/aggregate/secagg"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Fuzz targets for what a peer sends: update and model chunks, float32
// tensors, and secure aggregation's messages. Each must return an error on
// bad input, never panic. `make fuzz` runs them; the seeds and what the
// fuzzers found are in testdata/fuzz/.

// chunked replays pieces of blob, cut at the lengths in cuts, as a stream's
// Recv would: a cut of 255 is a broken stream.
func chunked(blob, cuts []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		if len(cuts) == 0 {
			if len(blob) == 0 {
				return nil, io.EOF
			}
			b := blob
			blob = nil
			return b, nil
		}
		n := int(cuts[0])
		cuts = cuts[1:]
		if n == 255 {
			return nil, errors.New("stream broken")
		}
		n = min(n, len(blob))
		b := blob[:n]
		blob = blob[n:]
		return b, nil
	}
}

func FuzzReceiveBlob(f *testing.F) {
	f.Add([]byte("model bytes"), []byte{3, 0, 4}, "")
	f.Add([]byte("model bytes"), []byte{}, Digest([]byte("model bytes")))
	f.Add([]byte("model bytes"), []byte{2, 255}, Digest([]byte("model bytes")))
	f.Add([]byte{}, []byte{0, 0, 0}, "sha256:00")
	f.Fuzz(func(t *testing.T, blob, cuts []byte, want string) {
		broken := bytes.IndexByte(cuts, 255) >= 0
		for _, want := range []string{want, Digest(blob)} {
			got, err := ReceiveBlob(chunked(blob, cuts), want)
			switch {
			case broken:
				if err == nil {
					t.Fatalf("a broken stream received %d bytes without error", len(got))
				}
			case want != "" && want != Digest(blob):
				if !errors.Is(err, ErrBlob) {
					t.Fatalf("blob hashing to %s accepted for %q: %v", Digest(blob), want, err)
				}
			case err != nil:
				t.Fatalf("whole stream refused: %v", err)
			case !bytes.Equal(got, blob):
				t.Fatalf("got %d bytes; want the %d sent", len(got), len(blob))
			}
		}
	})
}

func FuzzDecodeFloat32(f *testing.F) {
	f.Add(EncodeFloat32([]float32{1, -2.5, 3e-7}), 3, 0)
	f.Add(EncodeFloat32([]float32{1, float32(math.NaN())}), 4, 2)
	f.Add(EncodeFloat32([]float32{float32(math.Inf(-1))}), 1, 0)
	f.Add([]byte{1, 2, 3}, 8, 1)
	f.Add(EncodeFloat32([]float32{1}), 2, math.MaxInt)
	f.Add(EncodeFloat32([]float32{1, 2}), 4, -1)
	f.Fuzz(func(t *testing.T, b []byte, n, offset int) {
		v, err := DecodeFloat32(b)
		if err == nil {
			if len(b)%4 != 0 || !bytes.Equal(EncodeFloat32(v), b) {
				t.Fatalf("%d bytes decoded to %d values that do not encode back", len(b), len(v))
			}
			for i, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					t.Fatalf("value %d decoded as %v", i, x)
				}
			}
		} else if !errors.Is(err, ErrTensor) {
			t.Fatalf("error %v is not ErrTensor", err)
		}
		// A chunk of an update, placed at offset in a vector of n values.
		dst := make([]float32, max(0, n%4096))
		err = DecodeFloat32Into(dst, offset, b)
		fits := len(b)%4 == 0 && offset >= 0 && offset <= len(dst) && len(b)/4 <= len(dst)-offset
		if err == nil && !fits {
			t.Fatalf("%d bytes at element %d of %d accepted", len(b), offset, len(dst))
		}
		if err != nil && !errors.Is(err, ErrTensor) {
			t.Fatalf("error %v is not ErrTensor", err)
		}
	})
}

func FuzzChunks(f *testing.F) {
	f.Add([]byte{}, uint32(0))
	f.Add([]byte("abc"), uint32(ChunkBytes))
	f.Add([]byte{0xff, 1}, uint32(2*ChunkBytes+5))
	f.Fuzz(func(t *testing.T, pattern []byte, size uint32) {
		// Blobs up to 3 chunks and a bit, filled with the pattern.
		n := int(size % (3*ChunkBytes + 7))
		if len(pattern) == 0 {
			n = 0
		}
		blob := make([]byte, n)
		for i := 0; i < n; i += len(pattern) {
			copy(blob[i:], pattern)
		}
		chunks := Chunks(blob)
		if len(chunks) == 0 {
			t.Fatal("no chunks")
		}
		for i, c := range chunks {
			if len(c) > ChunkBytes || i < len(chunks)-1 && len(c) != ChunkBytes {
				t.Fatalf("chunk %d of %d has %d bytes", i, len(chunks), len(c))
			}
		}
		next := 0
		got, err := ReceiveBlob(func() ([]byte, error) {
			if next == len(chunks) {
				return nil, io.EOF
			}
			next++
			return chunks[next-1], nil
		}, Digest(blob))
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("round trip of %d bytes in %d chunks: %d bytes, %v", n, len(chunks), len(got), err)
		}
	})
}

// An honest secure round of 4 clients, played once: the messages the fuzz
// targets replay around the one they mutate. Client 3 drops after sharing
// keys, so its mask key is revealed and Finish rebuilds its pair masks.
const (
	fuzzN       = 4
	fuzzT       = 3
	fuzzLength  = 6
	fuzzDropped = 3
)

type honestRound struct {
	params  secagg.Params
	inputs  [][]uint32
	ads     []secagg.Advertisement
	shares  map[int][]secagg.EncryptedShare // by sender
	deliver map[int][]secagg.EncryptedShare // by recipient
	u2      []int
	masked  map[int][]uint32
	reveals map[int][]secagg.Reveal
	sum     []uint32
}

var (
	acceptAll = func(int, string, []byte, []byte) bool { return true }
	noSig     = func([]byte) ([]byte, error) { return []byte("sig"), nil }
)

func identity(i int) string { return fmt.Sprint("client-", i) }

func fuzzParams() secagg.Params {
	return secagg.Params{N: fuzzN, K: fuzzN - 1, T: fuzzT, Length: fuzzLength, GraphSeed: 7, Session: SecAggSession("job-000000000001", 1, 1, 0)}
}

// newClients makes the round's clients and their advertisements.
func newClients(tb testing.TB, p secagg.Params, inputs [][]uint32) ([]*secagg.Client, []secagg.Advertisement) {
	tb.Helper()
	clients := make([]*secagg.Client, p.N)
	ads := make([]secagg.Advertisement, p.N)
	for i := range p.N {
		var err error
		if clients[i], err = secagg.NewClient(p, i, identity(i), inputs[i], noSig, acceptAll); err != nil {
			tb.Fatal(err)
		}
		if ads[i], err = clients[i].Advertise(); err != nil {
			tb.Fatal(err)
		}
	}
	return clients, ads
}

func playHonestRound(tb testing.TB) *honestRound {
	tb.Helper()
	h := &honestRound{params: fuzzParams(), shares: map[int][]secagg.EncryptedShare{}, masked: map[int][]uint32{}, reveals: map[int][]secagg.Reveal{}}
	for i := range fuzzN {
		h.inputs = append(h.inputs, []uint32{uint32(i), 1, 2, 3, 4, 1 << 31})
	}
	clients, ads := newClients(tb, h.params, h.inputs)
	h.ads = ads
	srv := h.serverIn(tb, 1)
	for i, c := range clients {
		s, err := c.ShareKeys(ads)
		if err != nil {
			tb.Fatal(err)
		}
		h.shares[i] = s
		if err := srv.ReceiveShares(i, s); err != nil {
			tb.Fatal(err)
		}
	}
	var err error
	if h.u2, h.deliver, err = srv.CloseShareKeys(); err != nil {
		tb.Fatal(err)
	}
	for i, c := range clients {
		if i == fuzzDropped {
			continue
		}
		if h.masked[i], err = c.MaskedInput(h.deliver[i], h.u2); err != nil {
			tb.Fatal(err)
		}
		if err := srv.ReceiveMaskedInput(i, h.masked[i]); err != nil {
			tb.Fatal(err)
		}
	}
	u3, err := srv.CloseMaskedInput()
	if err != nil {
		tb.Fatal(err)
	}
	for i, c := range clients {
		if i == fuzzDropped {
			continue
		}
		if h.reveals[i], err = c.Unmask(u3); err != nil {
			tb.Fatal(err)
		}
		if err := srv.ReceiveReveals(i, h.reveals[i]); err != nil {
			tb.Fatal(err)
		}
	}
	if h.sum, err = srv.Finish(); err != nil {
		tb.Fatal(err)
	}
	want := make([]uint32, fuzzLength)
	for i, x := range h.inputs {
		for j := range x {
			if i != fuzzDropped {
				want[j] += x[j]
			}
		}
	}
	if !slices.Equal(h.sum, want) {
		tb.Fatalf("honest round sums to %v; want %v", h.sum, want)
	}
	return h
}

// serverIn returns a new server for the round, fed the honest messages up
// to the start of phase.
func (h *honestRound) serverIn(tb testing.TB, phase int) *secagg.Server {
	tb.Helper()
	srv, err := secagg.NewServer(h.params)
	if err != nil {
		tb.Fatal(err)
	}
	if phase == 0 {
		return srv
	}
	for _, a := range h.ads {
		if err := srv.ReceiveAdvertisement(a); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := srv.CloseAdvertise(); err != nil {
		tb.Fatal(err)
	}
	if phase == 1 {
		return srv
	}
	for i := range fuzzN {
		if err := srv.ReceiveShares(i, h.shares[i]); err != nil {
			tb.Fatal(err)
		}
	}
	if _, _, err := srv.CloseShareKeys(); err != nil {
		tb.Fatal(err)
	}
	if phase == 2 {
		return srv
	}
	for i, y := range h.masked {
		if err := srv.ReceiveMaskedInput(i, y); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := srv.CloseMaskedInput(); err != nil {
		tb.Fatal(err)
	}
	return srv
}

func marshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzAdvertisementFromWire: an advertisement as the coordinator receives
// it from a client, and as a client receives it among its neighbours' from
// the coordinator.
func FuzzAdvertisementFromWire(f *testing.F) {
	h := playHonestRound(f)
	for i, a := range h.ads {
		f.Add(marshal(f, AdvertisementToWire(a, []byte("cert"))))
		short := AdvertisementToWire(a, nil)
		short.CKey = short.CKey[:i]
		f.Add(marshal(f, short))
	}
	f.Add(marshal(f, &pb.SecAggAdvertisement{From: 1 << 31, CKey: make([]byte, 32), SKey: make([]byte, 32)}))
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		a := &pb.SecAggAdvertisement{}
		if proto.Unmarshal(b, a) != nil {
			return
		}
		ad := AdvertisementFromWire(a, identity(int(a.GetFrom())))
		if ad.From < 0 || uint32(ad.From) != a.GetFrom() {
			t.Fatalf("client %d decoded as %d", a.GetFrom(), ad.From)
		}
		// The coordinator takes it in the first phase, in place of the
		// sender's honest advertisement.
		srv := h.serverIn(t, 0)
		if err := srv.ReceiveAdvertisement(ad); err == nil {
			for _, honest := range h.ads {
				if honest.From != ad.From {
					if err := srv.ReceiveAdvertisement(honest); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := srv.CloseAdvertise(); err != nil {
				t.Fatal(err)
			}
		}
		// A client shares its keys with the hostile advertisement among
		// its neighbours'; verify accepts every signature, so the keys
		// themselves are what the client must check.
		clients, ads := newClients(t, h.params, h.inputs)
		if ad.From < fuzzN && ad.From != 0 {
			ads[ad.From] = ad
		}
		shares, err := clients[0].ShareKeys(ads)
		if err == nil && len(shares) != fuzzN-1 {
			t.Fatalf("%d shares for %d neighbours", len(shares), fuzzN-1)
		}
	})
}

// FuzzSharesFromWire: encrypted shares as the coordinator receives them
// from a client (SecAggShareKeysRequest), and as a client receives them.
func FuzzSharesFromWire(f *testing.F) {
	h := playHonestRound(f)
	for i := range fuzzN {
		f.Add(marshal(f, &pb.SecAggShareKeysRequest{Shares: SharesToWire(h.shares[i])}))
	}
	bad := SharesToWire(h.shares[1])
	bad[0].Ciphertext = bad[0].Ciphertext[:5]
	bad[1].To = 1 << 31
	f.Add(marshal(f, &pb.SecAggShareKeysRequest{Shares: bad}))
	f.Add(marshal(f, &pb.SecAggShareKeysRequest{Shares: []*pb.SecAggShare{{From: 0, To: 0}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &pb.SecAggShareKeysRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		shares := SharesFromWire(req.GetShares())
		if len(shares) != len(req.GetShares()) {
			t.Fatalf("%d shares decoded from %d", len(shares), len(req.GetShares()))
		}
		from := 0
		if len(shares) > 0 {
			from = shares[0].From
		}
		srv := h.serverIn(t, 1)
		if err := srv.ReceiveShares(from, shares); err == nil {
			for i := range fuzzN {
				if i != from {
					if err := srv.ReceiveShares(i, h.shares[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, _, err := srv.CloseShareKeys(); err != nil {
				t.Fatal(err)
			}
		}
		// A client receives them as the shares delivered to it; it can
		// check only what decrypts.
		clients, ads := newClients(t, h.params, h.inputs)
		for _, c := range clients {
			if _, err := c.ShareKeys(ads); err != nil {
				t.Fatal(err)
			}
		}
		y, err := clients[0].MaskedInput(shares, []int{0, 1, 2, 3})
		if err == nil && len(y) != fuzzLength {
			t.Fatalf("masked input of %d values; want %d", len(y), fuzzLength)
		}
	})
}

// FuzzRevealsFromWire: a survivor's revealed shares as the coordinator
// receives them (SecAggUnmaskRequest), then the round's end.
func FuzzRevealsFromWire(f *testing.F) {
	h := playHonestRound(f)
	for i := range fuzzN {
		if i != fuzzDropped {
			f.Add(marshal(f, &pb.SecAggUnmaskRequest{Reveals: RevealsToWire(h.reveals[i])}))
		}
	}
	wrongKind := RevealsToWire(h.reveals[0])
	wrongKind[0].Kind = pb.SecAggReveal_KIND_MASK_KEY
	f.Add(marshal(f, &pb.SecAggUnmaskRequest{Reveals: wrongKind}))
	short := RevealsToWire(h.reveals[1])
	short[0].Y = short[0].Y[:2]
	f.Add(marshal(f, &pb.SecAggUnmaskRequest{Reveals: short}))
	f.Add(marshal(f, &pb.SecAggUnmaskRequest{Reveals: []*pb.SecAggReveal{{Owner: 1 << 31, Kind: 7, X: 1, Y: []uint64{0, 0, 0, 0, math.MaxUint64}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &pb.SecAggUnmaskRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		reveals, err := RevealsFromWire(req.GetReveals())
		if err != nil {
			if !errors.Is(err, ErrSecAgg) {
				t.Fatalf("error %v is not ErrSecAgg", err)
			}
			return
		}
		from := 0
		if len(reveals) > 0 {
			from = int(reveals[0].Share.X) - 1
		}
		srv := h.serverIn(t, 3)
		if err := srv.ReceiveReveals(from, reveals); err != nil {
			return
		}
		for i, rs := range h.reveals {
			if i != from {
				if err := srv.ReceiveReveals(i, rs); err != nil {
					t.Fatal(err)
				}
			}
		}
		sum, err := srv.Finish()
		if err == nil && len(sum) != fuzzLength {
			t.Fatalf("sum of %d values; want %d", len(sum), fuzzLength)
		}
	})
}

// FuzzTaskParts: Task messages as a participant's stream brings them, some
// parts of a task too large for one message, reassembled. Whatever comes,
// Add never panics and a task it returns whole carries no more items than
// allowed.
func FuzzTaskParts(f *testing.F) {
	var ads []*pb.SecAggAdvertisement
	for v := range 3 {
		ads = append(ads, &pb.SecAggAdvertisement{From: uint32(v + 1), CKey: make([]byte, 32), SKey: make([]byte, 32), Certificate: make([]byte, 100)})
	}
	task := &pb.Task{Kind: pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, JobId: "job-0123456789ab", Round: 1, Attempt: 1,
		Secagg: &pb.SecAggTask{Advertisements: ads}}
	parts, err := SplitSecAggTask(task, 300)
	if err != nil || len(parts) != 3 {
		f.Fatalf("%d parts (%v); want 3", len(parts), err)
	}
	p := make([][]byte, len(parts))
	for i, m := range parts {
		p[i] = marshal(f, m)
	}
	f.Add(p[0], p[1], p[2])
	f.Add(p[0], p[2], p[1])
	f.Add(p[1], p[1], p[0])
	f.Add(p[0], marshal(f, task), p[1])
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		const maxItems = 3
		var tp TaskParts
		for _, raw := range [][]byte{a, b, c} {
			m := &pb.Task{}
			if proto.Unmarshal(raw, m) != nil {
				continue
			}
			got, _ := tp.Add(m, maxItems)
			if got == nil || got == m {
				continue
			}
			st := got.GetSecagg()
			if len(st.GetAdvertisements()) > maxItems || len(st.GetShares()) > maxItems || st.GetPart() != 0 || st.GetParts() != 0 {
				t.Fatalf("reassembled a task of %d advertisements and %d shares (part %d of %d); at most %d allowed",
					len(st.GetAdvertisements()), len(st.GetShares()), st.GetPart(), st.GetParts(), maxItems)
			}
		}
	})
}
