// Package peers holds a coordinator's links to the other coordinators: a
// gRPC connection to each (unary calls, blob transfers), the connections
// that carry the participants' streams a follower relays to the leader (a
// relay pool per peer), and the Raft connections, tracked so that a
// revocation or a partition cuts them. It also makes the TLS checks of
// links between coordinators: the certificate is a coordinator's, not
// revoked, not of a coordinator the federation removed, and names the
// coordinator dialled.
//
// A partition (Links.SetBlocked) is a test hook: it refuses and cuts the
// links to the coordinators named, as a network split would.
package peers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/pki"
)

// Errors of links.
var (
	// ErrUnreachable means no link to a coordinator can be made now: this
	// coordinator is shutting down, is cut off from it, or knows no
	// address for it. It is a passing condition (the coordinator answers
	// Unavailable).
	ErrUnreachable = errors.New("coordinator unreachable")
	// ErrWrongPeer means the coordinator at an address is not the one
	// dialled: its certificate names another.
	ErrWrongPeer = errors.New("not the coordinator dialled")
)

// Config is what Links needs of its coordinator. Addr, Revoked and Removed
// are required.
type Config struct {
	// Cert is this coordinator's certificate; CA the federation's.
	Cert tls.Certificate
	CA   *x509.CertPool
	// Addr returns the gRPC address of the coordinator called name (as
	// gossip tells it).
	Addr func(name string) (string, bool)
	// Revoked refuses a connection whose peer certificate is revoked.
	Revoked func(cs tls.ConnectionState) error
	// Removed refuses the coordinator called name if the federation
	// removed it.
	Removed func(name string) error
	// Dial, if set, opens connections instead of the network (a test's
	// simulated network).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// RelayStreams is the most relayed participant streams one connection
	// carries (relayPool; at least 1).
	RelayStreams int
}

// Links are one coordinator's links to the others.
type Links struct {
	cfg     Config
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	relays  map[string]*relayPool // connections carrying relayed participant streams, by peer
	blocked map[string]bool
	tracked map[*trackedConn]bool
	closed  bool // after CloseAll, no new connections
}

// New returns the links of a coordinator; it opens none yet.
func New(cfg Config) *Links {
	if cfg.Addr == nil || cfg.Revoked == nil || cfg.Removed == nil {
		panic("peers.New: Config.Addr, Revoked and Removed are required")
	}
	return &Links{cfg: cfg, conns: map[string]*grpc.ClientConn{}, relays: map[string]*relayPool{}, blocked: map[string]bool{},
		tracked: map[*trackedConn]bool{}}
}

// allowed refuses a TLS connection with a coordinator this one is
// partitioned from.
func (l *Links) allowed(cs tls.ConnectionState) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if name := pki.PeerName(cs); l.blocked[name] {
		return fmt.Errorf("partitioned from %s", name)
	}
	return nil
}

// VerifyCoordinator is VerifyConnection for links between coordinators:
// the peer must hold a coordinator certificate that is not revoked, of a
// coordinator the federation has not removed, and not be cut off.
func (l *Links) VerifyCoordinator(cs tls.ConnectionState) error {
	if err := pki.RequireCoordinator(cs, "coordinator peer"); err != nil {
		return err
	}
	if err := l.cfg.Revoked(cs); err != nil {
		return err
	}
	if err := l.cfg.Removed(pki.PeerName(cs)); err != nil {
		return err
	}
	return l.allowed(cs)
}

// VerifyNamed is VerifyConnection for a link dialled to the coordinator
// called name: its certificate must carry that name (a coordinator's name
// is its Raft server ID).
func (l *Links) VerifyNamed(name string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := l.VerifyCoordinator(cs); err != nil {
			return err
		}
		if got := pki.PeerName(cs); got != name {
			return fmt.Errorf("%w: dialled coordinator %s, but its certificate names %q", ErrWrongPeer, name, got)
		}
		return nil
	}
}

// VerifyIncoming is the gRPC server's VerifyConnection: revoked
// certificates and coordinators this one is partitioned from are refused;
// everyone else passes (the handlers check roles).
func (l *Links) VerifyIncoming(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 {
		return nil
	}
	if err := l.cfg.Revoked(cs); err != nil {
		return err
	}
	if id, err := pki.IdentityOf(cs.VerifiedChains[0][0]); err == nil && id.Role == pki.RoleCoordinator {
		return l.allowed(cs)
	}
	return nil
}

// CutSerial closes every link to a coordinator whose certificate has the
// given serial (it was revoked), and returns how many it closed.
func (l *Links) CutSerial(serial string) int {
	l.mu.Lock()
	c := l.cutLocked(func(t *trackedConn) bool { return t.serial == serial }, func(string) bool { return false })
	l.mu.Unlock()
	return c.close()
}

// cut are links taken out of Links, to be closed once its lock is
// released.
type cut struct {
	tracked []*trackedConn
	conns   []*grpc.ClientConn
}

// close closes the links and returns how many there were.
func (c cut) close() int {
	for _, t := range c.tracked {
		t.Close()
	}
	for _, cc := range c.conns {
		cc.Close()
	}
	return len(c.tracked) + len(c.conns)
}

// cutLocked takes out the Raft connections cutConn selects and every
// link to their peers and to the coordinators cutPeer selects (l.mu
// held).
func (l *Links) cutLocked(cutConn func(*trackedConn) bool, cutPeer func(name string) bool) cut {
	var c cut
	peers := map[string]bool{}
	for t := range l.tracked {
		if cutConn(t) {
			c.tracked = append(c.tracked, t)
			peers[t.peer] = true
		}
	}
	for name := range l.conns {
		peers[name] = peers[name] || cutPeer(name)
	}
	for name := range l.relays {
		peers[name] = peers[name] || cutPeer(name)
	}
	for name, drop := range peers {
		if !drop {
			continue
		}
		if cc, ok := l.conns[name]; ok {
			c.conns = append(c.conns, cc)
			delete(l.conns, name)
		}
		if pool := l.relays[name]; pool != nil {
			c.conns = append(c.conns, pool.drop()...)
			delete(l.relays, name)
		}
	}
	return c
}

// trackedConn is a Raft connection remembered so that a partition or a
// revocation can cut it.
type trackedConn struct {
	*tls.Conn
	l      *Links
	peer   string
	serial string
	once   sync.Once
}

// Close closes the connection and forgets it.
func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.l.mu.Lock()
		delete(t.l.tracked, t)
		t.l.mu.Unlock()
	})
	return t.Conn.Close()
}

// Track remembers a Raft connection, so that CutSerial, SetBlocked and
// CloseAll can cut it; after CloseAll it closes it at once.
func (l *Links) Track(c *tls.Conn) net.Conn {
	cs := c.ConnectionState()
	t := &trackedConn{Conn: c, l: l, peer: pki.PeerName(cs)}
	if len(cs.PeerCertificates) > 0 {
		t.serial = pki.SerialOf(cs.PeerCertificates[0])
	}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.tracked[t] = true
	}
	l.mu.Unlock()
	if closed {
		c.Close()
	}
	return t
}

// SetBlocked replaces the set of coordinators this one cannot talk to and
// cuts every link to them (a test's partition).
func (l *Links) SetBlocked(names []string) {
	l.mu.Lock()
	l.blocked = map[string]bool{}
	for _, n := range names {
		l.blocked[n] = true
	}
	c := l.cutLocked(func(t *trackedConn) bool { return l.blocked[t.peer] }, func(name string) bool { return l.blocked[name] })
	l.mu.Unlock()
	c.close()
}

// Conn returns the connection to the coordinator called name, opening it
// if need be.
func (l *Links) Conn(name string) (*grpc.ClientConn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cc, ok := l.conns[name]; ok {
		return cc, nil
	}
	if err := l.usableLocked(name); err != nil {
		return nil, err
	}
	cc, err := l.dialLocked(name)
	if err != nil {
		return nil, err
	}
	l.conns[name] = cc
	return cc, nil
}

// usableLocked refuses a new link to name after CloseAll or across a
// partition (l.mu held).
func (l *Links) usableLocked(name string) error {
	if l.closed {
		return fmt.Errorf("%w: coordinator is shutting down", ErrUnreachable)
	}
	if l.blocked[name] {
		return fmt.Errorf("%w: partitioned from %s", ErrUnreachable, name)
	}
	return nil
}

// dialLocked opens a connection to the coordinator called name (l.mu
// held); gRPC connects on first use.
func (l *Links) dialLocked(name string) (*grpc.ClientConn, error) {
	addr, ok := l.cfg.Addr(name)
	if !ok || addr == "" {
		return nil, fmt.Errorf("%w: no address known for coordinator %s", ErrUnreachable, name)
	}
	cfg := pki.ClientTLS(l.cfg.Cert, l.cfg.CA)
	cfg.VerifyConnection = l.VerifyNamed(name)
	// Peers come back within seconds after a restart: retry quickly.
	bo := backoff.DefaultConfig
	bo.MaxDelay = time.Second
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 2 * time.Second})}
	if dial := l.cfg.Dial; dial != nil {
		opts = append(opts, grpc.WithContextDialer(dial))
	}
	return grpc.NewClient(addr, opts...)
}

// Relay returns a connection to the coordinator called name for one
// relayed participant stream, and the function that gives its slot back
// when the stream ends (relayPool).
func (l *Links) Relay(name string) (*grpc.ClientConn, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(name); err != nil {
		return nil, nil, err
	}
	pool := l.relays[name]
	if pool == nil {
		pool = &relayPool{limit: max(1, l.cfg.RelayStreams), dial: func() (*grpc.ClientConn, error) { return l.dialLocked(name) }}
		l.relays[name] = pool
	}
	r, err := pool.acquire()
	if err != nil {
		if len(pool.conns) == 0 {
			delete(l.relays, name)
		}
		return nil, nil, err
	}
	release := sync.OnceFunc(func() {
		l.mu.Lock()
		idle := pool.release(r)
		if len(pool.conns) == 0 && l.relays[name] == pool {
			delete(l.relays, name)
		}
		l.mu.Unlock()
		if idle != nil {
			idle.Close()
		}
	})
	return r.cc, release, nil
}

// CloseAll closes every link to the other coordinators, gRPC and Raft
// (hashicorp/raft's transport leaves accepted connections open on Close);
// links asked for later are refused (Conn, Relay) or closed at once
// (Track).
func (l *Links) CloseAll() {
	l.mu.Lock()
	l.closed = true
	c := l.cutLocked(func(*trackedConn) bool { return true }, func(string) bool { return true })
	l.mu.Unlock()
	c.close()
}
