package secagg

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// Server is the coordinator's side of a round. It only ever holds
// advertisements, encrypted shares, the running sum of masked vectors, and
// the shares clients reveal at the end — never one client's input.
type Server struct {
	p        Params
	graph    [][]int
	phase    int
	ads      map[int]Advertisement
	routed   map[int][]EncryptedShare // by recipient
	sent     map[int]bool             // clients that completed phase 1
	u2       []int
	sum      []uint32
	masked   map[int]bool
	u3       []int
	reveals  map[int]map[SecretKind][]Share // owner → kind → shares
	from4    map[int]bool
	lagrange lagrangeCache

	// pending holds, by sender, the parts of a client's shares (phase 1)
	// or reveals (phase 3) taken before its last part: they count once it
	// has come, and not at all if it never does.
	pending        map[int][]EncryptedShare
	pendingReveals map[int][]Reveal
}

// NewServer starts a round.
func NewServer(p Params) (*Server, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Server{p: p, graph: neighbours(p.N, p.K, p.GraphSeed), ads: map[int]Advertisement{}, routed: map[int][]EncryptedShare{},
		sent: map[int]bool{}, sum: make([]uint32, p.Length), masked: map[int]bool{},
		reveals: map[int]map[SecretKind][]Share{}, from4: map[int]bool{},
		pending: map[int][]EncryptedShare{}, pendingReveals: map[int][]Reveal{}}, nil
}

// Neighbours returns client u's neighbours on the round's graph: the clients
// whose advertisements u needs.
func (s *Server) Neighbours(u int) []int {
	if u < 0 || u >= len(s.graph) {
		return nil
	}
	return slices.Clone(s.graph[u])
}

func (s *Server) in(phase int) error {
	if s.phase != phase {
		return fmt.Errorf("%w: server is in phase %d, not %d", ErrPhase, s.phase, phase)
	}
	return nil
}

func (s *Server) valid(id int) error {
	if id < 0 || id >= s.p.N {
		return fmt.Errorf("%w: no client %d", ErrBadMessage, id)
	}
	return nil
}

// ReceiveAdvertisement takes one client's keys (phase 0).
func (s *Server) ReceiveAdvertisement(a Advertisement) error {
	if err := s.in(0); err != nil {
		return err
	}
	if err := s.valid(a.From); err != nil {
		return err
	}
	if _, dup := s.ads[a.From]; dup {
		return fmt.Errorf("%w: second advertisement from %d", ErrBadMessage, a.From)
	}
	s.ads[a.From] = a
	return nil
}

// CloseAdvertise ends phase 0 and returns the advertisements to broadcast.
func (s *Server) CloseAdvertise() ([]Advertisement, error) {
	if err := s.in(0); err != nil {
		return nil, err
	}
	if len(s.ads) < s.p.T {
		return nil, fmt.Errorf("%w: %d clients advertised keys; threshold %d", ErrTooFew, len(s.ads), s.p.T)
	}
	s.phase = 1
	var out []Advertisement
	for _, a := range s.ads {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Advertisement) int { return a.From - b.From })
	return out, nil
}

// ReceiveShares takes one client's encrypted shares (phase 1), all at once.
func (s *Server) ReceiveShares(from int, shares []EncryptedShare) error {
	return s.ReceiveSharesPart(from, shares, true)
}

// ReceiveSharesPart takes part of one client's encrypted shares (phase 1):
// a client whose shares exceed one message sends them in parts, and has
// completed the phase once its last part (last set) was taken. Each part is
// checked as it comes: every share must be from the client, to one of its
// neighbours, to none of them twice (in all its parts), and at most
// MaxShareCiphertext bytes, so a client's parts hold at most one share per
// neighbour. A refused part changes nothing.
func (s *Server) ReceiveSharesPart(from int, shares []EncryptedShare, last bool) error {
	if err := s.in(1); err != nil {
		return err
	}
	if err := s.valid(from); err != nil {
		return err
	}
	if _, ok := s.ads[from]; !ok || s.sent[from] {
		return fmt.Errorf("%w: shares from %d (advertised: %v, already sent: %v)", ErrBadMessage, from, ok, s.sent[from])
	}
	neigh := map[int]bool{}
	for _, v := range s.graph[from] {
		neigh[v] = true
	}
	to := map[int]bool{}
	for _, e := range s.pending[from] {
		to[e.To] = true
	}
	for _, e := range shares {
		switch {
		case e.From != from || !neigh[e.To]:
			return fmt.Errorf("%w: share from %d to %d", ErrBadMessage, e.From, e.To)
		case to[e.To]:
			return fmt.Errorf("%w: a second share from %d to %d", ErrBadMessage, e.From, e.To)
		case len(e.Ciphertext) > MaxShareCiphertext:
			return fmt.Errorf("%w: share from %d to %d of %d bytes; at most %d", ErrBadMessage, e.From, e.To, len(e.Ciphertext), MaxShareCiphertext)
		}
		to[e.To] = true
	}
	if !last {
		s.pending[from] = append(s.pending[from], shares...)
		return nil
	}
	all := append(s.pending[from], shares...)
	delete(s.pending, from)
	s.sent[from] = true
	for _, e := range all {
		s.routed[e.To] = append(s.routed[e.To], e)
	}
	return nil
}

// CloseShareKeys ends phase 1: it returns the clients that completed it (U2)
// and the shares to deliver to each.
func (s *Server) CloseShareKeys() (u2 []int, deliver map[int][]EncryptedShare, err error) {
	if err := s.in(1); err != nil {
		return nil, nil, err
	}
	for v := range s.sent {
		s.u2 = append(s.u2, v)
	}
	slices.Sort(s.u2)
	if len(s.u2) < s.p.T {
		return nil, nil, fmt.Errorf("%w: %d clients shared keys; threshold %d", ErrTooFew, len(s.u2), s.p.T)
	}
	s.phase = 2
	s.pending = nil // clients whose last part never came are not in U2
	deliver = map[int][]EncryptedShare{}
	for _, v := range s.u2 {
		for _, e := range s.routed[v] {
			if s.sent[e.From] {
				deliver[v] = append(deliver[v], e)
			}
		}
	}
	s.routed = nil
	return s.u2, deliver, nil
}

// ReceiveMaskedInput adds one client's masked vector into the sum (phase 2).
func (s *Server) ReceiveMaskedInput(from int, y []uint32) error {
	if err := s.in(2); err != nil {
		return err
	}
	if !s.sent[from] || s.masked[from] {
		return fmt.Errorf("%w: masked input from %d", ErrBadMessage, from)
	}
	if len(y) != s.p.Length {
		return fmt.Errorf("%w: masked input of %d values; want %d", ErrBadMessage, len(y), s.p.Length)
	}
	addVector(s.sum, y)
	s.masked[from] = true
	return nil
}

// CloseMaskedInput ends phase 2 and returns the survivors (U3), whose inputs
// the sum holds.
func (s *Server) CloseMaskedInput() ([]int, error) {
	if err := s.in(2); err != nil {
		return nil, err
	}
	for v := range s.masked {
		s.u3 = append(s.u3, v)
	}
	slices.Sort(s.u3)
	if len(s.u3) < s.p.T {
		return nil, fmt.Errorf("%w: %d masked inputs; threshold %d", ErrTooFew, len(s.u3), s.p.T)
	}
	s.phase = 3
	return s.u3, nil
}

// ReceiveReveals takes one survivor's shares (phase 3), all at once. A
// share of the wrong kind for its owner (a mask seed of a dropped client, a
// mask key of a survivor) is refused: the server never holds both secrets
// of one client.
func (s *Server) ReceiveReveals(from int, rs []Reveal) error {
	return s.ReceiveRevealsPart(from, rs, true)
}

// ReceiveRevealsPart takes part of one survivor's revealed shares (phase 3),
// as ReceiveSharesPart takes shares: the survivor has answered once its
// last part was taken. Besides ReceiveReveals' checks, each share must be
// of a client the survivor holds shares of (itself or a neighbour), and of
// none twice in all its parts. A refused part changes nothing.
func (s *Server) ReceiveRevealsPart(from int, rs []Reveal, last bool) error {
	if err := s.in(3); err != nil {
		return err
	}
	if err := s.valid(from); err != nil {
		return err
	}
	if !s.masked[from] || s.from4[from] {
		return fmt.Errorf("%w: reveals from %d", ErrBadMessage, from)
	}
	holds := map[int]bool{from: true}
	for _, v := range s.graph[from] {
		holds[v] = true
	}
	owners := map[int]bool{}
	for _, r := range s.pendingReveals[from] {
		owners[r.Owner] = true
	}
	for _, r := range rs {
		want := MaskKey
		if s.masked[r.Owner] {
			want = MaskSeed
		}
		switch {
		case !s.sent[r.Owner] || r.Kind != want || r.Share.X != uint32(from+1) || !r.Share.inField():
			return fmt.Errorf("%w: client %d revealed a %v share of %d", ErrUnsafeRequest, from, r.Kind, r.Owner)
		case !holds[r.Owner]:
			return fmt.Errorf("%w: client %d revealed a share of %d, which it holds none of", ErrBadMessage, from, r.Owner)
		case owners[r.Owner]:
			return fmt.Errorf("%w: client %d revealed a second share of %d", ErrBadMessage, from, r.Owner)
		}
		owners[r.Owner] = true
	}
	if !last {
		s.pendingReveals[from] = append(s.pendingReveals[from], rs...)
		return nil
	}
	all := append(s.pendingReveals[from], rs...)
	delete(s.pendingReveals, from)
	s.from4[from] = true
	for _, r := range all {
		if s.reveals[r.Owner] == nil {
			s.reveals[r.Owner] = map[SecretKind][]Share{}
		}
		s.reveals[r.Owner][r.Kind] = append(s.reveals[r.Owner][r.Kind], r.Share)
	}
	return nil
}

// Finish removes the masks and returns Σ x_u over the survivors, mod 2^32.
// It fails (and the round must be aborted) if any needed secret has fewer
// than T shares.
func (s *Server) Finish() ([]uint32, error) {
	if err := s.in(3); err != nil {
		return nil, err
	}
	s.phase = 4
	s.pendingReveals = nil // survivors whose last part never came did not answer
	var masks []mask
	for _, u := range s.u3 {
		seed, err := s.lagrange.combine(s.reveals[u][MaskSeed], s.p.T)
		if err != nil {
			return nil, fmt.Errorf("%w: mask seed of client %d: %v", ErrTooFew, u, err)
		}
		masks = append(masks, mask{seed, -1})
	}
	var dropped []int
	for _, v := range s.u2 {
		if !s.masked[v] {
			dropped = append(dropped, v)
		}
	}
	// Rebuilding a dropped client's pair seeds costs one X25519 agreement per
	// surviving neighbour: spread the dropped clients over the cores.
	pairs := make([][]mask, len(dropped))
	errs := make([]error, len(dropped))
	next := make(chan int, len(dropped))
	for i := range dropped {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(dropped)) {
		wg.Go(func() {
			for i := range next {
				pairs[i], errs[i] = s.droppedPairMasks(dropped[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, p := range pairs {
		masks = append(masks, p...)
	}
	out := s.sum
	addMasks(out, masks)
	return out, nil
}

// droppedPairMasks rebuilds dropped client v's mask key from the revealed
// shares and returns, for each surviving neighbour u, the pair mask u added
// with the sign that takes it out of the sum.
func (s *Server) droppedPairMasks(v int) ([]mask, error) {
	var survivors []int
	for _, u := range s.graph[v] {
		if s.masked[u] {
			survivors = append(survivors, u)
		}
	}
	if len(survivors) == 0 {
		return nil, nil
	}
	raw, err := s.lagrange.combine(s.reveals[v][MaskKey], s.p.T)
	if err != nil {
		return nil, fmt.Errorf("%w: mask key of dropped client %d: %v", ErrTooFew, v, err)
	}
	sk, err := ecdh.X25519().NewPrivateKey(raw[:])
	if err != nil {
		return nil, fmt.Errorf("%w: rebuilt key of client %d: %v", ErrBadMessage, v, err)
	}
	var out []mask
	for _, u := range survivors {
		pub, err := ecdh.X25519().NewPublicKey(s.ads[u].SKey)
		if err != nil {
			return nil, err
		}
		secret, err := sk.ECDH(pub)
		if err != nil {
			return nil, err
		}
		// u added +PRG(s_uv) when u < v: take it out.
		sign := +1
		if u < v {
			sign = -1
		}
		out = append(out, mask{kdf("accord secagg pair", secret), sign})
	}
	return out, nil
}
