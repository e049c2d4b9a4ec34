package pki

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
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
	certPath, keyPath, err := ca.IssueToDir(dir, Identity{Role: RoleParticipant, Name: "site-1", Organization: "hospital"}, "10.0.0.7", "site.example")
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
	if err != nil || id != (Identity{Role: RoleParticipant, Name: "site-1", Organization: "hospital"}) {
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
