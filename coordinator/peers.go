package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
)

// peers holds this coordinator's gRPC connections to the others, and the
// test hook that cuts it off from some of them (a partition).
type peers struct {
	c       *Coordinator
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	relays  map[string]*relayPool // connections carrying relayed participant streams, by peer
	blocked map[string]bool
	tracked map[*trackedConn]bool
	closed  bool // after closeAll, no new connections
}

func newPeers(c *Coordinator) *peers {
	return &peers{c: c, conns: map[string]*grpc.ClientConn{}, relays: map[string]*relayPool{}, blocked: map[string]bool{},
		tracked: map[*trackedConn]bool{}}
}

func peerName(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

// allowed refuses a TLS connection with a coordinator this node is
// partitioned from.
func (p *peers) allowed(cs tls.ConnectionState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name := peerName(cs); p.blocked[name] {
		return fmt.Errorf("partitioned from %s", name)
	}
	return nil
}

// verifyCoordinator is VerifyConnection for links between coordinators:
// the peer must hold a coordinator certificate that is not revoked, and not
// be cut off.
func (p *peers) verifyCoordinator(cs tls.ConnectionState) error {
	if err := pki.RequireCoordinator(cs, "coordinator peer"); err != nil {
		return err
	}
	if err := p.c.refuseRevoked(cs); err != nil {
		return err
	}
	if name := peerName(cs); p.c.fsm.MemberRule(name) == state.MemberExcluded {
		return fmt.Errorf("%w: coordinator %s was removed by an approved proposal", state.ErrForbidden, name)
	}
	return p.allowed(cs)
}

// verifyNamed is VerifyConnection for a link dialled to the coordinator
// called name: its certificate must carry that name (a coordinator's name
// is its Raft server ID).
func (p *peers) verifyNamed(name string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := p.verifyCoordinator(cs); err != nil {
			return err
		}
		if got := peerName(cs); got != name {
			return fmt.Errorf("%w: dialled coordinator %s, but its certificate names %q", state.ErrForbidden, name, got)
		}
		return nil
	}
}

// verifyIncoming is the gRPC server's VerifyConnection: revoked
// certificates and coordinators this node is partitioned from are refused;
// everyone else passes (the handlers check roles).
func (p *peers) verifyIncoming(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 {
		return nil
	}
	if err := p.c.refuseRevoked(cs); err != nil {
		return err
	}
	if id, err := pki.IdentityOf(cs.VerifiedChains[0][0]); err == nil && id.Role == pki.RoleCoordinator {
		return p.allowed(cs)
	}
	return nil
}

// cutSerial closes every link to a coordinator whose certificate has the
// given serial (it was revoked), and returns how many it closed.
func (p *peers) cutSerial(serial string) int {
	p.mu.Lock()
	var cut []*trackedConn
	var conns []*grpc.ClientConn
	for t := range p.tracked {
		if t.serial == serial {
			cut = append(cut, t)
			if cc, ok := p.conns[t.peer]; ok {
				conns = append(conns, cc)
				delete(p.conns, t.peer)
			}
			conns = append(conns, p.dropRelaysLocked(t.peer)...)
		}
	}
	p.mu.Unlock()
	for _, t := range cut {
		t.Close()
	}
	for _, cc := range conns {
		cc.Close()
	}
	return len(cut) + len(conns)
}

// trackedConn is a Raft connection remembered so a partition can cut it.
type trackedConn struct {
	*tls.Conn
	p      *peers
	peer   string
	serial string
	once   sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.p.mu.Lock()
		delete(t.p.tracked, t)
		t.p.mu.Unlock()
	})
	return t.Conn.Close()
}

// track remembers a Raft connection; after closeAll it closes it at once.
func (p *peers) track(c *tls.Conn) net.Conn {
	cs := c.ConnectionState()
	t := &trackedConn{Conn: c, p: p, peer: peerName(cs)}
	if len(cs.PeerCertificates) > 0 {
		t.serial = pki.SerialOf(cs.PeerCertificates[0])
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.tracked[t] = true
	}
	p.mu.Unlock()
	if closed {
		c.Close()
	}
	return t
}

// setBlocked replaces the set of coordinators this node cannot talk to and
// cuts any connection to them.
func (p *peers) setBlocked(names []string) {
	p.mu.Lock()
	p.blocked = map[string]bool{}
	for _, n := range names {
		p.blocked[n] = true
	}
	var cut []*trackedConn
	for t := range p.tracked {
		if p.blocked[t.peer] {
			cut = append(cut, t)
		}
	}
	var conns []*grpc.ClientConn
	for name, cc := range p.conns {
		if p.blocked[name] {
			conns = append(conns, cc)
			delete(p.conns, name)
		}
	}
	for name := range p.relays {
		if p.blocked[name] {
			conns = append(conns, p.dropRelaysLocked(name)...)
		}
	}
	p.mu.Unlock()
	for _, t := range cut {
		t.Close()
	}
	for _, cc := range conns {
		cc.Close()
	}
}

// conn returns a connection to the named coordinator.
func (p *peers) conn(name string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[name]; ok {
		return cc, nil
	}
	if p.closed {
		return nil, fmt.Errorf("%w: coordinator is shutting down", ErrNotLeader)
	}
	if p.blocked[name] {
		return nil, fmt.Errorf("%w: partitioned from %s", ErrNotLeader, name)
	}
	cc, err := p.dialLocked(name)
	if err != nil {
		return nil, err
	}
	p.conns[name] = cc
	return cc, nil
}

// dialLocked opens a connection to the named coordinator (p.mu held).
func (p *peers) dialLocked(name string) (*grpc.ClientConn, error) {
	meta, ok := p.c.memberByName(name)
	if !ok || meta.GRPC == "" {
		return nil, fmt.Errorf("%w: no address known for coordinator %s", ErrNotLeader, name)
	}
	cfg := pki.ClientTLS(p.c.cfg.Cert, p.c.cfg.CA)
	cfg.VerifyConnection = p.verifyNamed(name)
	// Peers come back within seconds after a restart: retry quickly.
	bo := backoff.DefaultConfig
	bo.MaxDelay = time.Second
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 2 * time.Second})}
	if n := p.c.cfg.Network; n != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return n.DialContext(ctx, "tcp", addr)
		}))
	}
	return grpc.NewClient(meta.GRPC, opts...)
}

// relayStreams is the most relayed streams one connection to a peer
// carries: three quarters of MaxConcurrentStreams, the streams the peer
// lets one connection hold (the coordinators of a federation share their
// limits), leaving room for the uploads and calls of those participants.
func (p *peers) relayStreams() int {
	return max(1, int(p.c.cfg.Limits.MaxConcurrentStreams)*3/4)
}

// relay returns a connection to the named coordinator for one relayed
// participant stream, and the function that gives its slot back when the
// stream ends (relayPool).
func (p *peers) relay(name string) (*grpc.ClientConn, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, fmt.Errorf("%w: coordinator is shutting down", ErrNotLeader)
	}
	if p.blocked[name] {
		return nil, nil, fmt.Errorf("%w: partitioned from %s", ErrNotLeader, name)
	}
	pool := p.relays[name]
	if pool == nil {
		pool = &relayPool{limit: p.relayStreams(), dial: func() (*grpc.ClientConn, error) { return p.dialLocked(name) }}
		p.relays[name] = pool
	}
	r, err := pool.acquire()
	if err != nil {
		if len(pool.conns) == 0 {
			delete(p.relays, name)
		}
		return nil, nil, err
	}
	release := sync.OnceFunc(func() {
		p.mu.Lock()
		idle := pool.release(r)
		if len(pool.conns) == 0 && p.relays[name] == pool {
			delete(p.relays, name)
		}
		p.mu.Unlock()
		if idle != nil {
			idle.Close()
		}
	})
	return r.cc, release, nil
}

// dropRelaysLocked forgets the named peer's relay connections and returns
// them, for the caller to close once p.mu is released.
func (p *peers) dropRelaysLocked(name string) []*grpc.ClientConn {
	var out []*grpc.ClientConn
	if pool := p.relays[name]; pool != nil {
		out = pool.drop()
	}
	delete(p.relays, name)
	return out
}

// closeAll closes every connection to other coordinators, gRPC and Raft
// (hashicorp/raft's transport leaves accepted connections open on Close).
func (p *peers) closeAll() {
	p.mu.Lock()
	p.closed = true
	var conns []*grpc.ClientConn
	for _, cc := range p.conns {
		conns = append(conns, cc)
	}
	for name := range p.relays {
		conns = append(conns, p.dropRelaysLocked(name)...)
	}
	p.conns = map[string]*grpc.ClientConn{}
	var tracked []*trackedConn
	for t := range p.tracked {
		tracked = append(tracked, t)
	}
	p.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
	for _, t := range tracked {
		t.Close()
	}
}

// leaderConn returns a connection to the current leader (not this node).
func (c *Coordinator) leaderConn() (*grpc.ClientConn, error) {
	id, err := c.leaderID()
	if err != nil {
		return nil, err
	}
	return c.peers.conn(id)
}

// leaderRelay returns a connection to the current leader (not this node)
// for one relayed participant stream, and the function that releases it
// (peers.relay).
func (c *Coordinator) leaderRelay() (*grpc.ClientConn, func(), error) {
	id, err := c.leaderID()
	if err != nil {
		return nil, nil, err
	}
	return c.peers.relay(id)
}

// leaderID is the current leader's name, if it is another node.
func (c *Coordinator) leaderID() (string, error) {
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return "", fmt.Errorf("%w: no leader is known yet; retry", ErrNotLeader)
	}
	if string(id) == c.cfg.Name {
		return "", fmt.Errorf("%w: leadership is changing; retry", ErrNotLeader)
	}
	return string(id), nil
}

// forwardUnary makes a unary call on the leader, on the caller's behalf, when
// this node is not the leader; forwarded reports whether it did.
func forwardUnary[Resp any](ctx context.Context, c *Coordinator, id principal,
	call func(ctx context.Context, cc grpc.ClientConnInterface) (Resp, error)) (resp Resp, forwarded bool, err error) {
	if c.IsLeader() {
		return resp, false, nil
	}
	cc, err := c.leaderConn()
	if err != nil {
		return resp, true, toStatus(err)
	}
	resp, err = call(forwardContext(ctx, id), cc)
	return resp, true, err
}
