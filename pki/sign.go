package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ErrBadSignature means a signed message does not verify: the certificate
// is not the federation's, names someone else, or did not sign the message.
var ErrBadSignature = errors.New("bad signature")

// Sign signs msg (its SHA-256 digest) with the certificate's private key, so
// that anyone holding the certificate and the federation CA can check who
// wrote it.
func Sign(cert tls.Certificate, msg []byte) ([]byte, error) {
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: the certificate's key cannot sign", ErrBadSignature)
	}
	digest := sha256.Sum256(msg)
	return signer.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// VerifySigned checks that certDER chains to the federation CA in pool and
// is valid now, names want (role and name), and that its key signed msg.
func VerifySigned(pool *x509.CertPool, certDER []byte, want Identity, msg, sig []byte) error {
	return VerifySignedAt(pool, certDER, want, msg, sig, time.Now())
}

// VerifySignedAt is VerifySigned with the certificate's validity checked at
// t (the time a message was signed, for records checked long after).
func VerifySignedAt(pool *x509.CertPool, certDER []byte, want Identity, msg, sig []byte, t time.Time) error {
	v, err := verifiedAt(pool, certDER, t)
	if err != nil {
		return err
	}
	cert, id := v.cert, v.id
	if id.Name != want.Name || id.Role != want.Role {
		return fmt.Errorf("%w: certificate names %s %q; want %s %q", ErrBadSignature, id.Role, id.Name, want.Role, want.Name)
	}
	algo := x509.UnknownSignatureAlgorithm
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	}
	if err := cert.CheckSignature(algo, msg, sig); err != nil {
		return fmt.Errorf("%w: %q did not sign this message: %v", ErrBadSignature, id.Name, err)
	}
	return nil
}

// verifiedCerts remembers certificates whose chain to a pool verified, so
// that one seen again (a participant's advertisement every round, at the
// leader and at each of its neighbours) costs one signature check, not
// three: parsing and the chain's check are the costly part.
var verifiedCerts = mustLRU[verifiedKey, verifiedCert](4096)

func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic(err)
	}
	return c
}

// verifiedKey is a certificate (its DER's hash) checked against a pool.
type verifiedKey struct {
	pool *x509.CertPool
	der  [sha256.Size]byte
}

// verifiedCert is a certificate whose chain verified, the identity it
// names, and when the chain is valid.
type verifiedCert struct {
	cert                *x509.Certificate
	id                  Identity
	notBefore, notAfter time.Time
}

// verifiedAt parses certDER and checks that it chains to pool, for client
// authentication, at t; a certificate checked before, valid at t, is not
// checked again.
func verifiedAt(pool *x509.CertPool, certDER []byte, t time.Time) (verifiedCert, error) {
	key := verifiedKey{pool: pool, der: sha256.Sum256(certDER)}
	if v, ok := verifiedCerts.Get(key); ok && !t.Before(v.notBefore) && !t.After(v.notAfter) {
		return v, nil
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return verifiedCert{}, fmt.Errorf("%w: certificate: %v", ErrBadSignature, err)
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return verifiedCert{}, fmt.Errorf("%w: certificate %q: %v", ErrBadSignature, cert.Subject.CommonName, err)
	}
	id, err := IdentityOf(cert)
	if err != nil {
		return verifiedCert{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	v := verifiedCert{cert: cert, id: id, notBefore: cert.NotBefore, notAfter: cert.NotAfter}
	for _, c := range chains[0] { // the chain is valid while every certificate in it is
		v.notBefore, v.notAfter = later(v.notBefore, c.NotBefore), earlier(v.notAfter, c.NotAfter)
	}
	verifiedCerts.Add(key, v)
	return v, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
