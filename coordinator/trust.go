package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
)

// principal is who a call comes from: the identity and the serial of the
// certificate that vouches for it.
type principal struct {
	pki.Identity
	Serial string
}

// onBehalfOfKey is the metadata a coordinator adds when it forwards a
// participant's call to the leader: the participant it authenticated. Only
// a peer with a coordinator certificate may vouch like this, and only for
// participants: an admin's identity comes from its signature, which every
// coordinator checks itself.
const onBehalfOfKey = "accord-on-behalf-of"

// forwardContext carries the caller's identity to the leader.
func forwardContext(ctx context.Context, id principal) context.Context {
	if id.Role != pki.RoleParticipant {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, onBehalfOfKey, strings.Join([]string{string(id.Role), id.Name, id.Organization, id.Serial}, "|"))
}

// vouchedParticipant returns the participant a coordinator forwarded for,
// if any.
func vouchedParticipant(ctx context.Context) (principal, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return principal{}, false
	}
	v := md.Get(onBehalfOfKey)
	if len(v) != 1 {
		return principal{}, false
	}
	parts := strings.Split(v[0], "|")
	if len(parts) != 4 || parts[0] != string(pki.RoleParticipant) {
		return principal{}, false
	}
	return principal{Identity: pki.Identity{Role: pki.RoleParticipant, Name: parts[1], Organization: parts[2]}, Serial: parts[3]}, true
}

// peerCertificate returns who a gRPC call's peer is, by its verified
// certificate.
func peerCertificate(ctx context.Context) (principal, *x509.Certificate, error) {
	id, cert, err := pki.PeerCertificate(ctx)
	if err != nil {
		return principal{}, nil, err
	}
	return principal{Identity: id, Serial: pki.SerialOf(cert)}, cert, nil
}

// caller returns the identity of a call's peer if its role is one of roles
// and its certificate is not revoked. A coordinator forwarding a
// participant's call vouches for the participant.
func (c *Coordinator) caller(ctx context.Context, roles ...pki.Role) (principal, error) {
	id, _, err := peerCertificate(ctx)
	if err != nil {
		return principal{}, err
	}
	if c.fsm.IsRevoked(id.Serial) {
		return principal{}, fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, id.Name, id.Serial)
	}
	if id.Role == pki.RoleCoordinator {
		if vouched, ok := vouchedParticipant(ctx); ok {
			if c.fsm.IsRevoked(vouched.Serial) {
				return principal{}, fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, vouched.Name, vouched.Serial)
			}
			id = vouched
		}
	}
	for _, r := range roles {
		if id.Role == r {
			return id, nil
		}
	}
	return principal{}, fmt.Errorf("%w: %s is a %s", state.ErrForbidden, id.Name, id.Role)
}

// adminCaller authenticates an admin call to method: the request must carry
// a fresh signature by an admin certificate of the federation that is not
// revoked, over this very request, not seen before by this coordinator. The
// peer is that admin, or a coordinator forwarding its call (whose word
// counts for nothing: the signature does). release gives the nonce back
// if the call fails, so that gRPC's retry of an unavailable call is not
// taken for a replay; the FSM refuses a replayed action for good.
func (c *Coordinator) adminCaller(ctx context.Context, method string, req proto.Message) (id principal, s *adminauth.Signed, release func(), err error) {
	peerID, _, err := peerCertificate(ctx)
	if err != nil {
		return principal{}, nil, nil, err
	}
	if peerID.Role != pki.RoleAdmin && peerID.Role != pki.RoleCoordinator {
		return principal{}, nil, nil, fmt.Errorf("%w: %s is a %s", state.ErrForbidden, peerID.Name, peerID.Role)
	}
	if c.fsm.IsRevoked(peerID.Serial) {
		return principal{}, nil, nil, fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, peerID.Name, peerID.Serial)
	}
	if s, err = adminauth.FromIncoming(ctx, method, req); err != nil {
		if peerID.Role == pki.RoleCoordinator {
			return principal{}, nil, nil, fmt.Errorf("%w: coordinator %s cannot act for an admin without the admin's signature: %w", state.ErrForbidden, peerID.Name, err)
		}
		return principal{}, nil, nil, err
	}
	now := time.Now()
	signer, cert, err := s.VerifyAt(c.cfg.CA, now)
	if err != nil {
		return principal{}, nil, nil, err
	}
	if err := s.CheckFresh(now); err != nil {
		return principal{}, nil, nil, err
	}
	id = principal{Identity: signer, Serial: pki.SerialOf(cert)}
	if c.fsm.IsRevoked(id.Serial) {
		return principal{}, nil, nil, fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, id.Name, id.Serial)
	}
	if peerID.Role == pki.RoleAdmin && (peerID.Name != signer.Name || peerID.Organization != signer.Organization) {
		return principal{}, nil, nil, fmt.Errorf("%w: connected as %s of %s but signed by %s of %s", state.ErrForbidden, peerID.Name, peerID.Organization, signer.Name, signer.Organization)
	}
	key := s.NonceKey()
	if c.fsm.UsedNonce(key) || !c.nonces.claim(key, now) {
		return principal{}, nil, nil, fmt.Errorf("%w: this signed request was already received", state.ErrReplay)
	}
	return id, s, func() { c.nonces.release(key) }, nil
}

// nonceCache remembers the nonces of signed admin requests this
// coordinator received within twice adminauth.MaxSkew (older ones are
// refused as stale anyway).
type nonceCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// maxNonces bounds the cache: past it, the oldest half is dropped (such a
// flood of admin requests could only come from admins' keys).
const maxNonces = 1 << 18

func newNonceCache() *nonceCache { return &nonceCache{seen: map[string]time.Time{}} }

// claim records key; false if it was there.
func (n *nonceCache) claim(key string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.seen[key]; ok {
		return false
	}
	if len(n.seen) >= maxNonces {
		cutoff := now.Add(-2 * adminauth.MaxSkew)
		for k, t := range n.seen {
			if t.Before(cutoff) || len(n.seen) >= maxNonces/2 {
				delete(n.seen, k)
			}
		}
	}
	n.seen[key] = now
	return true
}

func (n *nonceCache) release(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.seen, key)
}

// streamRegistry holds the cancel functions of the long-lived streams open
// on this coordinator, by the serial of the certificate behind each, so a
// revocation can end them at once.
type streamRegistry struct {
	mu      sync.Mutex
	next    uint64
	streams map[string]map[uint64]context.CancelFunc
}

func newStreamRegistry() *streamRegistry {
	return &streamRegistry{streams: map[string]map[uint64]context.CancelFunc{}}
}

// add registers a stream's cancel under serial and returns its removal.
func (r *streamRegistry) add(serial string, cancel context.CancelFunc) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	id := r.next
	if r.streams[serial] == nil {
		r.streams[serial] = map[uint64]context.CancelFunc{}
	}
	r.streams[serial][id] = cancel
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.streams[serial], id)
		if len(r.streams[serial]) == 0 {
			delete(r.streams, serial)
		}
	}
}

// cancel ends every stream behind serial.
func (r *streamRegistry) cancel(serial string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, cancel := range r.streams[serial] {
		cancel()
		delete(r.streams[serial], id)
		n++
	}
	delete(r.streams, serial)
	return n
}

// revocationLoop ends the streams and coordinator links of certificates
// as their revocations are applied (the FSM hands them over through
// c.revoked and must not wait for this work).
func (c *Coordinator) revocationLoop() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.revoked.wake:
		}
		for _, r := range c.revoked.take() {
			n := c.streams.cancel(r.Serial)
			n += c.links.CutSerial(r.Serial)
			c.log.Info("certificate revoked", "name", r.Name, "serial", r.Serial, "closed", n)
		}
	}
}

// revocationQueue passes applied revocations from the FSM to
// revocationLoop without blocking the FSM.
type revocationQueue struct {
	mu      sync.Mutex
	pending []state.Revocation
	wake    chan struct{}
}

func (q *revocationQueue) push(rs []state.Revocation) {
	q.mu.Lock()
	q.pending = append(q.pending, rs...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *revocationQueue) take() []state.Revocation {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pending
	q.pending = nil
	return out
}

// refuseRevoked is a VerifyConnection hook refusing a peer whose
// certificate is revoked.
func (c *Coordinator) refuseRevoked(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	if serial := pki.SerialOf(cs.PeerCertificates[0]); c.fsm.IsRevoked(serial) {
		return fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, cs.PeerCertificates[0].Subject.CommonName, serial)
	}
	return nil
}
