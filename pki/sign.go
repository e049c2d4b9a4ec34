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
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("%w: certificate: %v", ErrBadSignature, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%w: certificate %q: %v", ErrBadSignature, cert.Subject.CommonName, err)
	}
	id, err := IdentityOf(cert)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
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
