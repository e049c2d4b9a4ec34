package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Errors returned by this package.
var (
	// ErrParams means the round parameters are inconsistent.
	ErrParams = errors.New("bad secure aggregation parameters")
	// ErrTooFew means fewer clients than the threshold survived a phase.
	ErrTooFew = errors.New("too few clients survived")
	// ErrPhase means a call came in the wrong phase or twice.
	ErrPhase = errors.New("wrong phase")
	// ErrBadMessage means a message is malformed, unsigned or not addressed
	// to its receiver.
	ErrBadMessage = errors.New("bad message")
	// ErrUnsafeRequest means the server asked for something that would
	// reveal a client's input.
	ErrUnsafeRequest = errors.New("unsafe unmasking request")
)

// Params fix one round; every client and the server hold the same.
type Params struct {
	// N is the cohort size; clients are numbered 0…N−1.
	N int
	// K is each client's number of neighbours (N−1: complete graph, SecAgg).
	K int
	// T is the threshold: shares needed to rebuild a secret.
	T int
	// Length is the vector length.
	Length int
	// GraphSeed relabels the Harary graph (drawn by the server each round).
	GraphSeed uint64
	// Session names the protocol run (for example a job's round attempt);
	// advertisement signatures cover it, so keys signed for one run are
	// refused in another.
	Session []byte
}

// Validate checks that the parameters can work. A cohort above MaxClients
// is refused: a hostile task could otherwise make a client build a graph
// of billions of edges.
func (p Params) Validate() error {
	k := min(p.K, p.N-1)
	switch {
	case p.N < 2 || p.N > MaxClients || p.Length < 1:
		return fmt.Errorf("%w: %d clients (want 2–%d), vectors of %d", ErrParams, p.N, MaxClients, p.Length)
	case k < 1:
		return fmt.Errorf("%w: degree %d", ErrParams, p.K)
	case p.T < 2 || p.T > k+1:
		return fmt.Errorf("%w: threshold %d must be in [2, degree+1 = %d]", ErrParams, p.T, k+1)
	}
	return nil
}

// shareholders returns u and its neighbours: who holds shares of u's secrets.
func (p Params) shareholders(graph [][]int, u int) []int {
	return slices.Sorted(slices.Values(append([]int{u}, graph[u]...)))
}

// Advertisement is a client's two public keys, signed.
type Advertisement struct {
	From     int
	CKey     []byte // X25519 public key for encrypting shares
	SKey     []byte // X25519 public key for pairwise masks
	Sig      []byte
	Identity string // who signed (the certificate's name)
}

// SignedBytes is what the advertisement's signature covers: its sender's
// index, both keys, the round's graph seed and the session.
func (a Advertisement) SignedBytes(p Params) []byte {
	b := []byte("accord secagg advertise")
	b = binary.LittleEndian.AppendUint64(b, p.GraphSeed)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Session)))
	b = append(b, p.Session...)
	b = binary.LittleEndian.AppendUint32(b, uint32(a.From))
	b = append(b, a.CKey...)
	return append(b, a.SKey...)
}

// EncryptedShare carries, encrypted for To, its shares of From's mask seed
// and mask secret key.
type EncryptedShare struct {
	From, To   int
	Ciphertext []byte
}

// MaxShareCiphertext bounds an encrypted share: a GCM nonce and tag around
// the JSON of two shares take 288 bytes at most
// (TestShareCiphertextBound). The server refuses larger ones, so a client's
// shares cost it at most this much per neighbour.
const MaxShareCiphertext = 512

// SecretKind says which of a client's secrets a share belongs to.
type SecretKind int

const (
	// MaskSeed is b_u, revealed for survivors.
	MaskSeed SecretKind = iota + 1
	// MaskKey is s_u's secret key, revealed for clients that dropped.
	MaskKey
)

// Reveal is one share of Owner's secret of the given kind.
type Reveal struct {
	Owner int
	Kind  SecretKind
	Share Share
}

// Signer signs advertisements with a client's identity key; Verifier checks
// another client's signature. The coordinator only relays keys, so it cannot
// substitute them.
type (
	Signer   func(msg []byte) ([]byte, error)
	Verifier func(from int, identity string, msg, sig []byte) bool
)

type heldPair struct{ Seed, Key Share }

// Client is one client's side of a round.
type Client struct {
	p        Params
	id       int
	identity string
	x        []uint32 // the input, masked in place by MaskedInput
	sign     Signer
	verify   Verifier
	// neighbours are the client's on the round's graph, sorted.
	neighbours []int
	cKey       *ecdh.PrivateKey
	sKey       *ecdh.PrivateKey
	seed       [32]byte
	peers      map[int]Advertisement // accepted neighbours' advertisements
	held       map[int]heldPair      // shares other clients gave us (and ours)
	aeads      map[int]cipher.AEAD   // share ciphers by peer, from the c-key agreement
	u2         map[int]bool
	phase      int
}

// NewClient prepares client id with input x (already quantised).
func NewClient(p Params, id int, identity string, x []uint32, sign Signer, verify Verifier) (*Client, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if id < 0 || id >= p.N || len(x) != p.Length {
		return nil, fmt.Errorf("%w: client %d of %d with %d values (want %d)", ErrParams, id, p.N, len(x), p.Length)
	}
	return &Client{p: p, id: id, identity: identity, x: slices.Clone(x), sign: sign, verify: verify,
		neighbours: neighboursOf(p.N, p.K, p.GraphSeed, id), held: map[int]heldPair{}, aeads: map[int]cipher.AEAD{}}, nil
}

// Neighbours returns the client's neighbours on the round's graph: whose
// advertisements it needs, and to whom it sends shares.
func (c *Client) Neighbours() []int { return slices.Clone(c.neighbours) }

func (c *Client) step(want int) error {
	if c.phase != want {
		return fmt.Errorf("%w: client %d is in phase %d, asked for phase %d", ErrPhase, c.id, c.phase, want)
	}
	c.phase++
	return nil
}

// Advertise makes the client's key pairs and returns its signed
// advertisement (phase 0).
func (c *Client) Advertise() (Advertisement, error) {
	if err := c.step(0); err != nil {
		return Advertisement{}, err
	}
	var err error
	if c.cKey, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		return Advertisement{}, err
	}
	if c.sKey, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		return Advertisement{}, err
	}
	a := Advertisement{From: c.id, CKey: c.cKey.PublicKey().Bytes(), SKey: c.sKey.PublicKey().Bytes(), Identity: c.identity}
	if a.Sig, err = c.sign(a.SignedBytes(c.p)); err != nil {
		return Advertisement{}, err
	}
	return a, nil
}

func kdf(label string, secret []byte) [32]byte {
	return sha256.Sum256(append([]byte(label), secret...))
}

func shareAEAD(own *ecdh.PrivateKey, peerPub []byte) (cipher.AEAD, error) {
	pub, err := ecdh.X25519().NewPublicKey(peerPub)
	if err != nil {
		return nil, err
	}
	secret, err := own.ECDH(pub)
	if err != nil {
		return nil, err
	}
	key := kdf("accord secagg share key", secret)
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func shareAD(from, to int) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte("accord secagg share"), uint32(from)), uint32(to))
}

// ShareKeys checks the neighbours' advertisements, draws the mask seed, and
// returns its shares and those of the mask key, encrypted for each neighbour
// (phase 1). The client's own share stays with it.
func (c *Client) ShareKeys(ads []Advertisement) ([]EncryptedShare, error) {
	if err := c.step(1); err != nil {
		return nil, err
	}
	c.peers = map[int]Advertisement{}
	neigh := map[int]bool{}
	for _, v := range c.neighbours {
		neigh[v] = true
	}
	for _, a := range ads {
		if !neigh[a.From] {
			continue
		}
		if !c.verify(a.From, a.Identity, a.SignedBytes(c.p), a.Sig) {
			return nil, fmt.Errorf("%w: client %d's advertisement is not signed by %q", ErrBadMessage, a.From, a.Identity)
		}
		c.peers[a.From] = a
	}
	holders := []int{c.id}
	for v := range c.peers {
		holders = append(holders, v)
	}
	slices.Sort(holders)
	if len(holders) < c.p.T {
		return nil, fmt.Errorf("%w: client %d has %d shareholders; threshold %d", ErrTooFew, c.id, len(holders), c.p.T)
	}
	if _, err := rand.Read(c.seed[:]); err != nil {
		return nil, err
	}
	xs := make([]uint32, len(holders))
	for i, v := range holders {
		xs[i] = uint32(v + 1)
	}
	seedShares, err := splitSecret(c.seed, c.p.T, xs)
	if err != nil {
		return nil, err
	}
	var sk [32]byte
	copy(sk[:], c.sKey.Bytes())
	keyShares, err := splitSecret(sk, c.p.T, xs)
	if err != nil {
		return nil, err
	}
	var out []EncryptedShare
	for i, v := range holders {
		pair := heldPair{Seed: seedShares[i], Key: keyShares[i]}
		if v == c.id {
			c.held[c.id] = pair
			continue
		}
		aead, err := shareAEAD(c.cKey, c.peers[v].CKey)
		if err != nil {
			return nil, fmt.Errorf("%w: client %d's key: %v", ErrBadMessage, v, err)
		}
		c.aeads[v] = aead
		plain, _ := json.Marshal(pair)
		nonce := make([]byte, aead.NonceSize())
		rand.Read(nonce)
		out = append(out, EncryptedShare{From: c.id, To: v, Ciphertext: aead.Seal(nonce, nonce, plain, shareAD(c.id, v))})
	}
	return out, nil
}

func (c *Client) pairSeed(v int) ([32]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(c.peers[v].SKey)
	if err != nil {
		return [32]byte{}, err
	}
	secret, err := c.sKey.ECDH(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return kdf("accord secagg pair", secret), nil
}

// MaskedInput decrypts the shares addressed to this client and returns
// y = x + PRG(b) + Σ ±PRG(s_uv) over neighbours in u2, the clients that
// completed phase 1 (phase 2).
func (c *Client) MaskedInput(in []EncryptedShare, u2 []int) ([]uint32, error) {
	if err := c.step(2); err != nil {
		return nil, err
	}
	c.u2 = map[int]bool{}
	for _, v := range u2 {
		c.u2[v] = true
	}
	if !c.u2[c.id] {
		return nil, fmt.Errorf("%w: the survivors of phase 1 do not include this client", ErrBadMessage)
	}
	for _, e := range in {
		aead, ok := c.aeads[e.From]
		if e.To != c.id || !ok || !c.u2[e.From] {
			return nil, fmt.Errorf("%w: share from %d to %d", ErrBadMessage, e.From, e.To)
		}
		if len(e.Ciphertext) < aead.NonceSize() {
			return nil, fmt.Errorf("%w: share from %d", ErrBadMessage, e.From)
		}
		n := aead.NonceSize()
		plain, err := aead.Open(nil, e.Ciphertext[:n], e.Ciphertext[n:], shareAD(e.From, c.id))
		if err != nil {
			return nil, fmt.Errorf("%w: share from %d does not decrypt", ErrBadMessage, e.From)
		}
		var pair heldPair
		if err := json.Unmarshal(plain, &pair); err != nil {
			return nil, fmt.Errorf("%w: share from %d", ErrBadMessage, e.From)
		}
		c.held[e.From] = pair
	}
	masks := []mask{{c.seed, +1}}
	for v := range c.peers {
		if !c.u2[v] {
			continue
		}
		s, err := c.pairSeed(v)
		if err != nil {
			return nil, err
		}
		if c.id < v {
			masks = append(masks, mask{s, +1})
		} else {
			masks = append(masks, mask{s, -1})
		}
	}
	// The client's own copy of its input is masked in place: it is not
	// needed after this phase, which runs once.
	y := c.x
	c.x = nil
	addMasks(y, masks)
	return y, nil
}

// Unmask returns this client's shares for the round's end (phase 3): of the
// mask seed of each neighbour that survived (in u3), and of the mask key of
// each neighbour that completed phase 1 but not phase 2. It answers once,
// and never reveals both secrets of one client.
func (c *Client) Unmask(u3 []int) ([]Reveal, error) {
	if err := c.step(3); err != nil {
		return nil, err
	}
	alive := map[int]bool{}
	for _, v := range u3 {
		if !c.u2[v] {
			return nil, fmt.Errorf("%w: client %d is named a survivor but did not complete phase 1", ErrUnsafeRequest, v)
		}
		alive[v] = true
	}
	if len(alive) < c.p.T || !alive[c.id] {
		return nil, fmt.Errorf("%w: %d survivors named; threshold %d", ErrTooFew, len(alive), c.p.T)
	}
	var out []Reveal
	for v, pair := range c.held {
		switch {
		case alive[v]:
			out = append(out, Reveal{Owner: v, Kind: MaskSeed, Share: pair.Seed})
		case c.u2[v]:
			out = append(out, Reveal{Owner: v, Kind: MaskKey, Share: pair.Key})
		}
	}
	slices.SortFunc(out, func(a, b Reveal) int { return a.Owner - b.Owner })
	return out, nil
}
