package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("fed")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueProfiles(t *testing.T) {
	ca := newTestCA(t)
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name    string
		role    Role
		hosts   []string
		eku     []x509.ExtKeyUsage
		dns     []string
		ips     []string
		wantErr error
	}{
		{name: "coordinator, no hosts: loopback", role: RoleCoordinator, eku: server,
			dns: []string{"n", "localhost"}, ips: []string{"127.0.0.1", "::1"}},
		{name: "coordinator with hosts: no loopback", role: RoleCoordinator, hosts: []string{"10.0.0.7", "coord.example", ""}, eku: server,
			dns: []string{"n", "coord.example"}, ips: []string{"10.0.0.7"}},
		{name: "participant", role: RoleParticipant, eku: client},
		{name: "admin", role: RoleAdmin, eku: client},
		{name: "participant with hosts", role: RoleParticipant, hosts: []string{"10.0.0.7"}, wantErr: ErrHostsNotAllowed},
		{name: "admin with hosts", role: RoleAdmin, hosts: []string{"admin.example"}, wantErr: ErrHostsNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue(Identity{Role: tt.role, Name: "n", Organization: "o"}, tt.hosts...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), string(tt.role)) {
					t.Fatalf("got %v; want %v naming the role %s", err, tt.wantErr, tt.role)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Leaf
			if !slices.Equal(leaf.ExtKeyUsage, tt.eku) {
				t.Errorf("extended key usages %v; want %v", leaf.ExtKeyUsage, tt.eku)
			}
			if !slices.Equal(leaf.DNSNames, tt.dns) {
				t.Errorf("DNS names %q; want %q", leaf.DNSNames, tt.dns)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.ips) {
				t.Errorf("IP addresses %q; want %q", ips, tt.ips)
			}
			_, serverErr := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if canServe := slices.Contains(tt.eku, x509.ExtKeyUsageServerAuth); (serverErr == nil) != canServe {
				t.Errorf("verifying for server authentication: %v; want ok=%v", serverErr, canServe)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("verifying for client authentication: %v", err)
			}
			if got, want := SerialOf(leaf), fmt.Sprintf("%x", leaf.SerialNumber); got != want || got != strings.ToLower(got) {
				t.Errorf("SerialOf = %q; want %q in lower case", got, want)
			}
		})
	}
}

func TestIssueValidity(t *testing.T) {
	ca := newTestCA(t)
	past := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	tests := []struct {
		name        string
		opt         IssueOptions
		from, until time.Time // wanted NotBefore and NotAfter, to within a minute
		wantErr     error
	}{
		{name: "default", opt: IssueOptions{}, from: time.Now().Add(-clockSkew), until: time.Now().Add(DefaultValidity)},
		{name: "90 days", opt: IssueOptions{ValidFor: 90 * 24 * time.Hour}, from: time.Now().Add(-clockSkew), until: time.Now().Add(90 * 24 * time.Hour)},
		{name: "expired", opt: IssueOptions{NotBefore: past, ValidFor: time.Hour}, from: past, until: past.Add(time.Hour)},
		{name: "negative", opt: IssueOptions{ValidFor: -time.Hour}, wantErr: ErrBadValidity},
		{name: "outlives the CA", opt: IssueOptions{ValidFor: 20 * DefaultValidity}, wantErr: ErrBadValidity},
	}
	near := func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Minute }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.IssueWith(Identity{Role: RoleParticipant, Name: "p", Organization: "o"}, tt.opt)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !near(c.Leaf.NotBefore, tt.from) || !near(c.Leaf.NotAfter, tt.until) {
				t.Errorf("valid %v to %v; want %v to %v", c.Leaf.NotBefore, c.Leaf.NotAfter, tt.from, tt.until)
			}
		})
	}
}

// craftServerCert makes, by hand and signed by the CA's key, a certificate
// naming id that allows server authentication and names 127.0.0.1 whatever
// id's role: what a careless or hostile CA operator could issue.
func craftServerCert(t *testing.T, ca *CA, id Identity) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.Name, Organization: []string{id.Organization}, OrganizationalUnit: []string{string(id.Role)}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// handshake runs one TLS handshake over a real socket on 127.0.0.1 and
// returns what each side saw. The client reads a byte after its handshake,
// so that a client certificate the server refuses (TLS 1.3 verifies it
// after the client's handshake is done) shows on both sides.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(conn, server)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte{1})
		done <- err
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	client = client.Clone()
	client.ServerName = "127.0.0.1"
	tc := tls.Client(conn, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
	}
	conn.Close()
	return <-done, clientErr
}

func TestHandshakeRefusals(t *testing.T) {
	ca := newTestCA(t)
	past := time.Now().Add(-48 * time.Hour)
	issue := func(role Role, name string, opt IssueOptions) tls.Certificate {
		c, err := ca.IssueWith(Identity{Role: role, Name: name, Organization: "o"}, opt)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	coord := issue(RoleCoordinator, "coord-1", IssueOptions{})
	expiredCoord := issue(RoleCoordinator, "coord-old", IssueOptions{NotBefore: past, ValidFor: time.Hour})
	site := issue(RoleParticipant, "site-1", IssueOptions{})
	expiredSite := issue(RoleParticipant, "site-2", IssueOptions{NotBefore: past, ValidFor: time.Hour})
	posing := craftServerCert(t, ca, Identity{Role: RoleParticipant, Name: "site-3", Organization: "o"})
	noRoleCheck := ClientTLS(site, ca.Pool())
	noRoleCheck.VerifyConnection = nil

	tests := []struct {
		name               string
		server             tls.Certificate
		client             *tls.Config
		serverOK, clientOK bool
		clientErrHas       string
	}{
		{name: "coordinator serves a participant", server: coord, client: ClientTLS(site, ca.Pool()), serverOK: true, clientOK: true},
		{name: "expired client certificate", server: coord, client: ClientTLS(expiredSite, ca.Pool())},
		{name: "expired server certificate", server: expiredCoord, client: ClientTLS(site, ca.Pool()), serverOK: false, clientErrHas: "expired"},
		{name: "participant certificate as a server", server: site, client: ClientTLS(site, ca.Pool()), clientErrHas: "failed to verify certificate"},
		{name: "participant certificate crafted to serve", server: posing, client: ClientTLS(site, ca.Pool()),
			clientErrHas: "server site-3 is a participant, not a coordinator"},
		{name: "crafted certificate, no role check (control)", server: posing, client: noRoleCheck, serverOK: true, clientOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, ServerTLS(tt.server, ca.Pool()), tt.client)
			if (serverErr == nil) != tt.serverOK {
				t.Errorf("server: %v; want ok=%v", serverErr, tt.serverOK)
			}
			if (clientErr == nil) != tt.clientOK {
				t.Errorf("client: %v; want ok=%v", clientErr, tt.clientOK)
			}
			if tt.clientErrHas != "" && (clientErr == nil || !strings.Contains(clientErr.Error(), tt.clientErrHas)) {
				t.Errorf("client: %v; want an error mentioning %q", clientErr, tt.clientErrHas)
			}
		})
	}
	t.Run("expired client certificate is refused for its expiry", func(t *testing.T) {
		serverErr, _ := handshake(t, ServerTLS(coord, ca.Pool()), ClientTLS(expiredSite, ca.Pool()))
		if serverErr == nil || !strings.Contains(serverErr.Error(), "expired") {
			t.Errorf("server: %v; want an error mentioning expiry", serverErr)
		}
	})
}

func TestRequireCoordinatorServer(t *testing.T) {
	ca := newTestCA(t)
	leaf := func(role Role) *x509.Certificate {
		c, err := ca.Issue(Identity{Role: role, Name: "x", Organization: "o"})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	tests := []struct {
		name  string
		state tls.ConnectionState
		ok    bool
	}{
		{"coordinator", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf(RoleCoordinator), ca.Cert}}}, true},
		{"participant", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf(RoleParticipant), ca.Cert}}}, false},
		{"admin", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf(RoleAdmin), ca.Cert}}}, false},
		{"no verified chain", tls.ConnectionState{ServerName: "h", PeerCertificates: []*x509.Certificate{leaf(RoleCoordinator)}}, false},
		{"no identity", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{ca.Cert}}}, false},
	}
	for _, tt := range tests {
		err := RequireCoordinatorServer(tt.state)
		if (err == nil) != tt.ok {
			t.Errorf("%s: got %v; want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrNotCoordinator) {
			t.Errorf("%s: %v is not ErrNotCoordinator", tt.name, err)
		}
	}
}
