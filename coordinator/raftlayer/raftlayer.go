// Package raftlayer carries Raft's traffic between coordinators over
// mutual TLS: a raft.StreamLayer that accepts, in both directions, only
// certificates its Config's Verify passes (coordinators of the federation,
// not revoked, not removed, not cut off).
//
// hashicorp/raft calls Accept in one loop, so the handshakes do not run
// there: a loop of the layer's own accepts connections and hands each to a
// goroutine that completes its handshake within Config.HandshakeTimeout;
// only finished, verified connections reach Accept. At most
// Config.MaxPendingHandshakes handshakes run at once, and one source
// address holds at most Config.MaxConnsPerIP connections: connections
// that never speak TLS cost an attacker its own sockets, not the cluster
// its elections.
package raftlayer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/netlimit"
	"github.com/accord-fl/accord/pki"
)

// ErrWrongServer means the coordinator at an address the Raft
// configuration names presents a certificate naming another server.
var ErrWrongServer = errors.New("wrong raft server")

// Config configures a Layer.
type Config struct {
	// Addr is the address to listen on.
	Addr string
	// Cert is this coordinator's certificate; CA the federation's.
	Cert tls.Certificate
	CA   *x509.CertPool
	// Verify checks the other end's certificate, in both directions
	// (peers.Links.VerifyCoordinator).
	Verify func(tls.ConnectionState) error
	// Track remembers a connection so that a revocation or a partition can
	// cut it, and returns what to use (peers.Links.Track).
	Track func(*tls.Conn) net.Conn
	// Dial opens a TLS connection with the given config to an address.
	Dial func(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error)
	// ServerID is the server ID the Raft configuration gives an address
	// ("" if none).
	ServerID func(raft.ServerAddress) string
	// HandshakeTimeout bounds a connection's TLS handshake;
	// MaxPendingHandshakes the handshakes in progress at once;
	// MaxConnsPerIP the connections one source address holds.
	HandshakeTimeout     time.Duration
	MaxPendingHandshakes int
	MaxConnsPerIP        int
}

// Layer is Raft's stream layer over mutual TLS.
type Layer struct {
	cfg       Config
	ln        *netlimit.Listener
	server    *tls.Config
	client    *tls.Config
	advertise net.Addr

	pending chan struct{} // a slot per handshake in progress
	ready   chan net.Conn // verified connections for Accept
	done    chan struct{} // closed by Close
	shaking map[net.Conn]bool
	mu      sync.Mutex
	wg      sync.WaitGroup
	once    sync.Once
}

var _ raft.StreamLayer = (*Layer)(nil)

// Listen starts a layer listening on cfg.Addr.
func Listen(cfg Config) (*Layer, error) {
	server := pki.ServerTLS(cfg.Cert, cfg.CA)
	server.VerifyConnection = cfg.Verify
	client := pki.ClientTLS(cfg.Cert, cfg.CA)
	client.VerifyConnection = cfg.Verify
	tcp, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("raft listener on %s: %w", cfg.Addr, err)
	}
	t := &Layer{
		cfg: cfg, ln: netlimit.Listen(tcp, cfg.MaxConnsPerIP), server: server, client: client, advertise: tcp.Addr(),
		pending: make(chan struct{}, cfg.MaxPendingHandshakes),
		ready:   make(chan net.Conn), done: make(chan struct{}), shaking: map[net.Conn]bool{},
	}
	t.wg.Go(t.acceptLoop)
	return t, nil
}

// acceptLoop accepts TCP connections and starts a handshake for each, as
// long as a handshake slot is free.
func (t *Layer) acceptLoop() {
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
func (t *Layer) handshake(c net.Conn) {
	defer func() {
		t.mu.Lock()
		delete(t.shaking, c)
		t.mu.Unlock()
		<-t.pending
	}()
	tc := tls.Server(c, t.server)
	tc.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	tracked := t.cfg.Track(tc)
	select {
	case t.ready <- tracked:
	case <-t.done:
		tracked.Close()
	}
}

// Accept returns the next connection that completed its handshake.
func (t *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-t.ready:
		return c, nil
	case <-t.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, ends the handshakes in progress and waits for
// the layer's goroutines.
func (t *Layer) Close() error {
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

// Addr is the address the layer listens on, which the other coordinators
// dial.
func (t *Layer) Addr() net.Addr { return t.advertise }

// Dial opens a TLS connection to a Raft peer; the peer at an address
// the Raft configuration names must be the server it names there.
func (t *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := t.cfg.Dial(ctx, string(address), t.client)
	if err != nil {
		return nil, err
	}
	// The server at a configuration's address must be the server ID the
	// configuration names there: a coordinator's name is its Raft ID.
	if want := t.cfg.ServerID(address); want != "" {
		if got := pki.PeerName(c.ConnectionState()); got != want {
			c.Close()
			return nil, fmt.Errorf("%w: raft server %s at %s presents a certificate naming %q", ErrWrongServer, want, address, got)
		}
	}
	return t.cfg.Track(c), nil
}
