package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator/peers"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/netlimit"
	"github.com/accord-fl/accord/pki"
)

// tlsStreamLayer carries Raft traffic over mutual TLS and accepts only
// coordinator certificates of the federation CA, in both directions.
//
// hashicorp/raft calls Accept in one loop, so the handshakes do not run
// there: a loop of the layer's own accepts connections and hands each to a
// goroutine that completes its handshake within Limits.HandshakeTimeout;
// only finished, verified connections reach Accept. At most
// MaxPendingHandshakes handshakes run at once, and one source address holds
// at most MaxRaftConnsPerIP connections: connections that never speak TLS cost
// an attacker its own sockets, not the cluster its elections.
type tlsStreamLayer struct {
	ln        *netlimit.Listener
	server    *tls.Config
	advertise net.Addr
	client    *tls.Config
	links     *peers.Links // tracks connections so a revocation or a partition can cut them
	timeout   time.Duration
	dial      dialTLS
	// raftID is the server ID the Raft configuration gives an address
	// ("" if none).
	raftID func(raft.ServerAddress) string

	pending chan struct{} // a slot per handshake in progress
	ready   chan net.Conn // verified connections for Accept
	done    chan struct{} // closed by Close
	shaking map[net.Conn]bool
	mu      sync.Mutex
	wg      sync.WaitGroup
	once    sync.Once
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// dialTLS opens a TLS connection to another coordinator.
type dialTLS func(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error)

// dialPeer opens a TLS connection to another coordinator's address, over
// Config.Network if it is set.
func (c *Coordinator) dialPeer(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	var raw net.Conn
	var err error
	if c.cfg.Network != nil {
		raw, err = c.cfg.Network.DialContext(ctx, "tcp", addr)
	} else {
		raw, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" { // as tls.Dial does: verify the host dialled
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			raw.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

func newTLSStreamLayer(addr string, cert tls.Certificate, ca *x509.CertPool, links *peers.Links, limits Limits, dial dialTLS,
	raftID func(raft.ServerAddress) string) (*tlsStreamLayer, error) {
	server := pki.ServerTLS(cert, ca)
	server.VerifyConnection = links.VerifyCoordinator
	client := pki.ClientTLS(cert, ca)
	client.VerifyConnection = links.VerifyCoordinator
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listener on %s: %w", addr, err)
	}
	t := &tlsStreamLayer{
		ln: netlimit.Listen(tcp, limits.MaxRaftConnsPerIP), server: server, advertise: tcp.Addr(), client: client, links: links, dial: dial, raftID: raftID,
		timeout: limits.HandshakeTimeout, pending: make(chan struct{}, limits.MaxPendingHandshakes),
		ready: make(chan net.Conn), done: make(chan struct{}), shaking: map[net.Conn]bool{},
	}
	t.wg.Go(t.acceptLoop)
	return t, nil
}

// acceptLoop accepts TCP connections and starts a handshake for each, as
// long as a handshake slot is free.
func (t *tlsStreamLayer) acceptLoop() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			// A listener error other than Close (file descriptors
			// exhausted): back off briefly rather than spin.
			select {
			case <-t.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case t.pending <- struct{}{}:
		default:
			c.Close()
			continue
		}
		t.mu.Lock()
		t.shaking[c] = true
		t.mu.Unlock()
		t.wg.Go(func() { t.handshake(c) })
	}
}

// handshake completes one connection's TLS handshake within the timeout
// and hands it to Accept.
func (t *tlsStreamLayer) handshake(c net.Conn) {
	defer func() {
		t.mu.Lock()
		delete(t.shaking, c)
		t.mu.Unlock()
		<-t.pending
	}()
	tc := tls.Server(c, t.server)
	tc.SetDeadline(time.Now().Add(t.timeout))
	if err := tc.Handshake(); err != nil {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	tracked := t.links.Track(tc)
	select {
	case t.ready <- tracked:
	case <-t.done:
		tracked.Close()
	}
}

// Accept returns the next connection that completed its handshake.
func (t *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-t.ready:
		return c, nil
	case <-t.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, ends the handshakes in progress and waits for
// the layer's goroutines.
func (t *tlsStreamLayer) Close() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		err = t.ln.Close()
		t.mu.Lock()
		for c := range t.shaking {
			c.Close()
		}
		t.mu.Unlock()
		t.wg.Wait()
	})
	return err
}

func (t *tlsStreamLayer) Addr() net.Addr { return t.advertise }

// Dial opens a TLS connection to a Raft peer.
func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := t.dial(ctx, string(address), t.client)
	if err != nil {
		return nil, err
	}
	// The server at a configuration's address must be the server ID the
	// configuration names there: a coordinator's name is its Raft ID.
	if want := t.raftID(address); want != "" {
		if got := peers.Name(c.ConnectionState()); got != want {
			c.Close()
			return nil, fmt.Errorf("%w: raft server %s at %s presents a certificate naming %q", state.ErrForbidden, want, address, got)
		}
	}
	return t.links.Track(c), nil
}

// raftIDAt returns the server ID the latest Raft configuration gives the
// address, or "" (hashicorp/raft's GetConfiguration reads a cached value
// and does not block).
func (c *Coordinator) raftIDAt(address raft.ServerAddress) string {
	if c.raft == nil {
		return ""
	}
	for _, s := range c.raft.GetConfiguration().Configuration().Servers {
		if s.Address == address {
			return string(s.ID)
		}
	}
	return ""
}
