package coordinator

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/pki"
)

// tlsStreamLayer carries Raft traffic over mutual TLS and accepts only
// coordinator certificates of the federation CA, in both directions.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config
	peers     *peers // tracks connections so a partition (tests) can cut them
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// requireCoordinator is a VerifyConnection hook refusing any peer whose
// verified certificate is not a coordinator's.
func requireCoordinator(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return pki.ErrNoIdentity
	}
	id, err := pki.IdentityOf(cs.VerifiedChains[0][0])
	if err != nil {
		return err
	}
	if id.Role != pki.RoleCoordinator {
		return fmt.Errorf("%w: raft peer %s is a %s, not a coordinator", ErrForbidden, id.Name, id.Role)
	}
	return nil
}

func newTLSStreamLayer(addr string, cert tls.Certificate, ca *x509.CertPool, p *peers) (*tlsStreamLayer, error) {
	server := pki.ServerTLS(cert, ca)
	server.VerifyConnection = p.verifyCoordinator
	client := pki.ClientTLS(cert, ca)
	client.VerifyConnection = p.verifyCoordinator
	ln, err := tls.Listen("tcp", addr, server)
	if err != nil {
		return nil, fmt.Errorf("raft listener on %s: %w", addr, err)
	}
	return &tlsStreamLayer{ln: ln, advertise: ln.Addr(), client: client, peers: p}, nil
}

// Accept waits for the next connection and completes its handshake, so a
// peer without a coordinator certificate never reaches Raft.
func (t *tlsStreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return nil, err
		}
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			continue
		}
		tc.SetDeadline(time.Time{})
		return t.peers.track(tc), nil
	}
}

func (t *tlsStreamLayer) Close() error   { return t.ln.Close() }
func (t *tlsStreamLayer) Addr() net.Addr { return t.advertise }

// Dial opens a TLS connection to a Raft peer.
func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), t.client)
	if err != nil {
		return nil, err
	}
	// The server at a configuration's address must be the server ID the
	// configuration names there: a coordinator's name is its Raft ID.
	if want := t.peers.c.raftIDAt(address); want != "" {
		if got := peerName(c.ConnectionState()); got != want {
			c.Close()
			return nil, fmt.Errorf("%w: raft server %s at %s presents a certificate naming %q", ErrForbidden, want, address, got)
		}
	}
	return t.peers.track(c), nil
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
