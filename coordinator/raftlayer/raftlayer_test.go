package raftlayer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/pki"
)

// fixture is a CA and layers of coordinators it certified, listening on
// loopback.
type fixture struct {
	t  *testing.T
	ca *pki.CA
}

func newFixture(t *testing.T) *fixture {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ca: ca}
}

func (f *fixture) cert(role pki.Role, name string) tls.Certificate {
	f.t.Helper()
	var hosts []string
	if role == pki.RoleCoordinator {
		hosts = []string{"127.0.0.1"}
	}
	c, err := f.ca.Issue(pki.Identity{Role: role, Name: name, Organization: "org-" + name}, hosts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// layer starts the layer of the coordinator called name; serverID maps
// addresses to the server IDs a Raft configuration would give them.
func (f *fixture) layer(name string, serverID map[string]string, tweak func(*Config)) *Layer {
	f.t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Cert: f.cert(pki.RoleCoordinator, name), CA: f.ca.Pool(),
		Verify: func(cs tls.ConnectionState) error { return pki.RequireCoordinator(cs, "raft peer") },
		Track:  func(c *tls.Conn) net.Conn { return c },
		Dial: func(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
			c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return c.(*tls.Conn), nil
		},
		ServerID:         func(a raft.ServerAddress) string { return serverID[string(a)] },
		HandshakeTimeout: time.Second, MaxPendingHandshakes: 4, MaxConnsPerIP: 8}
	if tweak != nil {
		tweak(&cfg)
	}
	l, err := Listen(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { l.Close() })
	return l
}

// accept returns the next connection b accepts, or fails after 5 s.
func accept(t *testing.T, b *Layer) net.Conn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := b.Accept()
		if err == nil {
			got <- c
		}
	}()
	select {
	case c := <-got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted within 5 s")
		return nil
	}
}

// TestLayerCarriesRaftBetweenCoordinators: a coordinator dials another and
// bytes flow both ways, past a connection that never speaks TLS.
func TestLayerCarriesRaftBetweenCoordinators(t *testing.T) {
	f := newFixture(t)
	b := f.layer("c2", nil, nil)
	a := f.layer("c1", map[string]string{b.Addr().String(): "c2"}, nil)
	// A silent connection holds a handshake slot, not the accept loop.
	silent, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := a.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := accept(t, b)
	defer s.Close()
	if _, err := c.Write([]byte("append")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "append" {
		t.Fatalf("read %q (%v); want append", buf, err)
	}
	if _, err := s.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil || string(buf[:2]) != "ok" {
		t.Fatalf("read %q (%v); want ok", buf[:2], err)
	}
}

// TestLayerRefuses: a server at an address the configuration gives to
// another name, and a certificate Verify refuses, get no connection; a
// connection that never finishes its handshake is closed after the
// handshake timeout.
func TestLayerRefuses(t *testing.T) {
	f := newFixture(t)
	b := f.layer("c2", nil, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	a := f.layer("c1", map[string]string{b.Addr().String(): "c3"}, nil)
	if _, err := a.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second); !errors.Is(err, ErrWrongServer) {
		t.Errorf("c2 at the address the configuration gives c3: %v; want ErrWrongServer", err)
	}
	// A participant's certificate is refused by the coordinator's Verify.
	p := f.layer("p1", nil, func(c *Config) {
		c.Cert = f.cert(pki.RoleParticipant, "p1")
		c.Verify = func(tls.ConnectionState) error { return nil }
	})
	if c, err := p.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second); err == nil {
		// TLS 1.3: the server's refusal arrives with the first read.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err = c.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "certificate") && !errors.Is(err, io.EOF) {
			t.Errorf("a participant's certificate: read %v; want the connection refused", err)
		}
		c.Close()
	}
	silent, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Errorf("a connection that never speaks TLS: %v; want it closed by the 200 ms handshake timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
