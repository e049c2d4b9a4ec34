package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueAndReadIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := InitDir(dir, "fed"); err != nil {
		t.Fatal(err)
	}
	if err := InitDir(dir, "fed"); err == nil {
		t.Fatal("a second init overwrote the CA")
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	coord := Identity{Role: RoleCoordinator, Name: "coord-1", Organization: "hospital"}
	certPath, keyPath, err := ca.IssueToDir(dir, coord, IssueOptions{Hosts: []string{"10.0.0.7", "site.example"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify under the CA: %v", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil || id != coord {
		t.Fatalf("identity %+v, %v", id, err)
	}
	if err := leaf.VerifyHostname("site.example"); err != nil {
		t.Errorf("extra host: %v", err)
	}
	if _, err := LoadCAPool(filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadGossipKey(dir); err != nil || len(k) != 32 {
		t.Fatalf("gossip key: %d bytes, %v", len(k), err)
	}
	for _, bad := range []Identity{
		{Role: "root", Name: "x", Organization: "o"},
		{Role: RoleAdmin, Name: "", Organization: "o"},
		{Role: RoleAdmin, Name: "../etc/passwd", Organization: "o"},
	} {
		if _, err := ca.Issue(bad); !errors.Is(err, ErrBadRole) && !errors.Is(err, ErrBadName) {
			t.Errorf("issuing %+v: got %v; want ErrBadRole or ErrBadName", bad, err)
		}
	}
}

// aliceSigns issues alice's certificate from a federation CA, which it
// returns with another CA, and signs msg with it.
func aliceSigns(t *testing.T, msg []byte) (ca, other *CA, alice Identity, cert tls.Certificate, sig []byte) {
	t.Helper()
	var err error
	if ca, err = NewCA("fed"); err != nil {
		t.Fatal(err)
	}
	if other, err = NewCA("other"); err != nil {
		t.Fatal(err)
	}
	alice = Identity{Role: RoleParticipant, Name: "alice", Organization: "a"}
	if cert, err = ca.Issue(alice); err != nil {
		t.Fatal(err)
	}
	if sig, err = Sign(cert, msg); err != nil {
		t.Fatal(err)
	}
	return ca, other, alice, cert, sig
}

func TestSignatureNamesItsSigner(t *testing.T) {
	msg := []byte("keys")
	ca, other, alice, cert, sig := aliceSigns(t, msg)
	stranger, err := other.Issue(alice)
	if err != nil {
		t.Fatal(err)
	}
	strangerSig, err := Sign(stranger, msg)
	if err != nil {
		t.Fatal(err)
	}
	der := cert.Certificate[0]
	tests := []struct {
		name     string
		cert     []byte
		want     Identity
		msg, sig []byte
		ok       bool
	}{
		{"genuine", der, alice, msg, sig, true},
		{"other message", der, alice, []byte("other keys"), sig, false},
		{"other name", der, Identity{Role: RoleParticipant, Name: "bob"}, msg, sig, false},
		{"other role", der, Identity{Role: RoleCoordinator, Name: "alice"}, msg, sig, false},
		{"another CA", stranger.Certificate[0], alice, msg, strangerSig, false},
		{"garbage certificate", []byte("x"), alice, msg, sig, false},
	}
	for _, tt := range tests {
		err := VerifySigned(ca.Pool(), tt.cert, tt.want, tt.msg, tt.sig)
		if (err == nil) != tt.ok {
			t.Errorf("%s: VerifySigned = %v; want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v is not ErrBadSignature", tt.name, err)
		}
	}
}

// TestVerifiedCertificatesAreNotTrustedBeyondTheirCheck: a certificate
// checked once is remembered only for the pool it was checked against and
// the time its chain is valid: against another CA's pool, or after it
// expired, it is checked again and refused.
func TestVerifiedCertificatesAreNotTrustedBeyondTheirCheck(t *testing.T) {
	msg := []byte("keys")
	ca, other, alice, cert, sig := aliceSigns(t, msg)
	der := cert.Certificate[0]
	if err := VerifySigned(ca.Pool(), der, alice, msg, sig); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	if err := VerifySigned(other.Pool(), der, alice, msg, sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("against another CA's pool, after a check against its own: %v; want ErrBadSignature", err)
	}
	if err := VerifySignedAt(ca.Pool(), der, alice, msg, sig, cert.Leaf.NotAfter.Add(time.Hour)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("an hour after it expired: %v; want ErrBadSignature", err)
	}
	if err := VerifySigned(ca.Pool(), der, alice, msg, sig); err != nil {
		t.Errorf("genuine, again: %v", err)
	}
}
