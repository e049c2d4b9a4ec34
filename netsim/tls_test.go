package netsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned returns a server certificate for name and a pool trusting it.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLSOverShapedConn(t *testing.T) {
	const latency = 20 * time.Millisecond
	cert, pool := selfSigned(t, "netsim.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}), echo)

	n := New(1)
	n.SetLink("eu", "us", Link{Latency: latency, Jitter: 5 * time.Millisecond, Bandwidth: 8 << 20})
	n.Register(addr, "us")
	raw := dial(t, n, "eu", addr)
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "netsim.test"})
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	start := time.Now()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if got := time.Since(start); got < 2*latency {
		t.Errorf("handshake took %v; want ≥ %v (a round trip)", got, 2*latency)
	}

	if got := roundTrip(t, c, []byte("hello over tls")); got < 2*latency {
		t.Errorf("echo took %v; want ≥ %v", got, 2*latency)
	}

	// Records larger than a chunk, both ways at once.
	want := bytes.Repeat([]byte("accord"), 50_000)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		errc <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes echoed over TLS differ from those sent")
	}
}
