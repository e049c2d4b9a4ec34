package secagg

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

// TestShareCiphertextBound checks MaxShareCiphertext against the largest
// share a client can encrypt (every number at its widest in JSON) and
// against real ones.
func TestShareCiphertextBound(t *testing.T) {
	var worst heldPair
	for _, s := range []*Share{&worst.Seed, &worst.Key} {
		s.X = math.MaxUint32
		for i := range s.Y {
			s.Y[i] = prime - 1
		}
	}
	plain, err := json.Marshal(worst)
	if err != nil {
		t.Fatal(err)
	}
	const gcm = 12 + 16 // nonce before, tag after
	if n := gcm + len(plain); n != 288 || n > MaxShareCiphertext {
		t.Errorf("widest share: %d bytes; want 288, within MaxShareCiphertext %d", n, MaxShareCiphertext)
	}
	p := Params{N: 4, K: 3, T: 2, Length: 1, GraphSeed: 1}
	ids := newIdentities(p.N)
	var clients []*Client
	var ads []Advertisement
	for i := range p.N {
		c, _ := NewClient(p, i, fmt.Sprint("client-", i), []uint32{0}, ids.signer(i), ids.verifier())
		a, _ := c.Advertise()
		clients, ads = append(clients, c), append(ads, a)
	}
	shares, err := clients[0].ShareKeys(ads)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range shares {
		if len(e.Ciphertext) > gcm+len(plain) {
			t.Errorf("share to %d: %d bytes; want at most %d", e.To, len(e.Ciphertext), gcm+len(plain))
		}
	}
}

// TestServerTakesSharesAndRevealsInParts sends clients' shares and
// reveals in parts: each part is checked as it comes (a second share to one
// neighbour, a share to a non-neighbour, an oversized one, a second share
// of one owner, a share of a client it holds none of are refused and change
// nothing), a client counts once its last part came, and one whose last
// part never came is not in U2. The sum is exact.
func TestServerTakesSharesAndRevealsInParts(t *testing.T) {
	p := Params{N: 7, K: 4, T: 3, Length: 3, GraphSeed: 9} // a Harary graph: two non-neighbours each
	ids := newIdentities(p.N)
	srv, err := NewServer(p)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*Client, p.N)
	for i := range p.N {
		clients[i], _ = NewClient(p, i, fmt.Sprint("client-", i), []uint32{uint32(i), 1, 100}, ids.signer(i), ids.verifier())
		a, _ := clients[i].Advertise()
		if err := srv.ReceiveAdvertisement(a); err != nil {
			t.Fatal(err)
		}
	}
	ads, _ := srv.CloseAdvertise()
	shares := make([][]EncryptedShare, p.N)
	for i := range p.N {
		if shares[i], err = clients[i].ShareKeys(ads); err != nil {
			t.Fatal(err)
		}
	}
	graph := neighbours(p.N, p.K, p.GraphSeed)
	stranger := -1 // a client 0 is not linked to
	for v := 1; v < p.N; v++ {
		if !slices.Contains(graph[0], v) {
			stranger = v
		}
	}
	if stranger < 0 {
		t.Fatalf("client 0 is linked to everyone: %v", graph[0])
	}
	big := shares[0][2]
	big.Ciphertext = make([]byte, MaxShareCiphertext+1)
	toStranger := shares[0][2]
	toStranger.To = stranger
	steps := []struct {
		name  string
		part  []EncryptedShare
		last  bool
		valid bool
	}{
		{"shares to two neighbours", shares[0][:2], false, true},
		{"one of them again", shares[0][1:3], false, false},
		{"an oversized share", []EncryptedShare{big}, false, false},
		{"a share to a non-neighbour", []EncryptedShare{toStranger}, false, false},
		{"the rest, last", shares[0][2:], true, true},
		{"more after the last part", shares[0][:1], true, false},
	}
	for _, s := range steps {
		err := srv.ReceiveSharesPart(0, s.part, s.last)
		if s.valid != (err == nil) || err != nil && !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: got %v; want valid %v (or ErrBadMessage)", s.name, err, s.valid)
		}
	}
	// Client 1 sends a first part and never its last.
	if err := srv.ReceiveSharesPart(1, shares[1][:2], false); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < p.N; i++ {
		if err := srv.ReceiveShares(i, shares[i]); err != nil {
			t.Fatal(err)
		}
	}
	u2, deliver, err := srv.CloseShareKeys()
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 2, 3, 4, 5, 6}; !slices.Equal(u2, want) {
		t.Fatalf("U2 = %v; want %v (client 1 never sent its last part)", u2, want)
	}
	for v, in := range deliver {
		for _, e := range in {
			if e.From == 1 {
				t.Errorf("client %d is delivered a share of client 1, which never finished", v)
			}
		}
	}
	want := make([]uint32, p.Length)
	for _, u := range u2 {
		y, err := clients[u].MaskedInput(deliver[u], u2)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.ReceiveMaskedInput(u, y); err != nil {
			t.Fatal(err)
		}
		for j, x := range []uint32{uint32(u), 1, 100} {
			want[j] += x
		}
	}
	u3, err := srv.CloseMaskedInput()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range u3 {
		rs, err := clients[u].Unmask(u3)
		if err != nil {
			t.Fatal(err)
		}
		if u == 0 {
			foreign := rs[0]
			foreign.Owner = stranger
			refused := [][]Reveal{rs[:2], {rs[1]}, {foreign}}
			if err := srv.ReceiveRevealsPart(0, refused[0], false); err != nil {
				t.Fatal(err)
			}
			if err := srv.ReceiveRevealsPart(0, refused[1], false); !errors.Is(err, ErrBadMessage) {
				t.Errorf("a second share of one owner: got %v; want ErrBadMessage", err)
			}
			if err := srv.ReceiveRevealsPart(0, refused[2], false); !errors.Is(err, ErrBadMessage) {
				t.Errorf("a share of a non-neighbour: got %v; want ErrBadMessage", err)
			}
			rs = rs[2:]
		}
		if err := srv.ReceiveRevealsPart(u, rs, true); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := srv.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum, want) {
		t.Errorf("sum %v; want %v", sum, want)
	}
}
