package peers

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/accord-fl/accord/pki"
)

// TestLinksRefuseWhatTheyMayNotOpen: no link is opened to a coordinator
// without a known address, across a partition, or after CloseAll; a link
// opened before a partition is cut by it; healing opens it again.
func TestLinksRefuseWhatTheyMayNotOpen(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "c1", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{"c2": "127.0.0.1:1", "c3": "127.0.0.1:2"}
	l := New(Config{Cert: cert, CA: ca.Pool(), RelayStreams: 2,
		Addr:    func(name string) (string, bool) { a, ok := addrs[name]; return a, ok },
		Revoked: func(tls.ConnectionState) error { return nil }, Removed: func(string) error { return nil }})
	// gRPC connects on first use: these open nothing on the network.
	c2, err := l.Conn("c2")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := l.Conn("c2"); again != c2 {
		t.Error("a second Conn opened another connection")
	}
	if _, err := l.Conn("c9"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a coordinator without an address: %v; want ErrUnreachable", err)
	}
	l.SetBlocked([]string{"c2"})
	if _, err := l.Conn("c2"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("across a partition: %v; want ErrUnreachable", err)
	}
	if _, _, err := l.Relay("c2"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a relay across a partition: %v; want ErrUnreachable", err)
	}
	if _, _, err := l.Relay("c3"); err != nil {
		t.Errorf("a relay to c3, not cut off: %v", err)
	}
	l.SetBlocked(nil)
	if healed, err := l.Conn("c2"); err != nil || healed == c2 {
		t.Errorf("after healing: %v (the cut connection reused: %v); want a new connection", err, healed == c2)
	}
	l.CloseAll()
	if _, err := l.Conn("c3"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("after CloseAll: %v; want ErrUnreachable", err)
	}
}

// TestVerifyNamed: a dialled coordinator must hold a coordinator
// certificate naming it, neither revoked nor removed.
func TestVerifyNamed(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	state := func(role pki.Role, name string) tls.ConnectionState {
		c, err := ca.Issue(pki.Identity{Role: role, Name: name, Organization: "org"})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, ca.Cert}}}
	}
	removed := errors.New("removed")
	l := New(Config{Addr: func(string) (string, bool) { return "", false }, Revoked: func(tls.ConnectionState) error { return nil },
		Removed: func(name string) error {
			if name == "c3" {
				return removed
			}
			return nil
		}})
	for _, c := range []struct {
		name, dialled string
		cs            tls.ConnectionState
		want          error
	}{
		{"the coordinator dialled", "c2", state(pki.RoleCoordinator, "c2"), nil},
		{"another coordinator", "c2", state(pki.RoleCoordinator, "c4"), ErrWrongPeer},
		{"a removed coordinator", "c3", state(pki.RoleCoordinator, "c3"), removed},
		{"a participant", "c2", state(pki.RoleParticipant, "c2"), pki.ErrNotCoordinator},
	} {
		err := l.VerifyNamed(c.dialled)(c.cs)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v; want %v", c.name, err, c.want)
		}
	}
}
