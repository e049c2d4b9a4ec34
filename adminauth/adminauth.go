// Package adminauth signs admin requests end to end.
//
// The admin CLI signs every unary AdminService call with the key of its
// admin certificate: the signature covers the method, the request's
// deterministic protobuf encoding, a timestamp and a random nonce, and it
// travels with the certificate in gRPC metadata. Every coordinator checks
// the signature itself against the federation CA, so a coordinator that
// forwards the call can neither forge one nor alter the request; a
// timestamp outside MaxSkew or a nonce seen before is refused (replay).
package adminauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/pki"
)

// Metadata keys of a signed request.
const (
	mdCert      = "accord-admin-cert-bin"
	mdSignature = "accord-admin-sig-bin"
	mdTime      = "accord-admin-time"
	mdNonce     = "accord-admin-nonce-bin"
)

// MaxSkew is how far a request's timestamp may be from the verifying
// coordinator's clock.
const MaxSkew = 5 * time.Minute

// NonceSize is the length of a request's random nonce.
const NonceSize = 16

// Errors returned by this package.
var (
	// ErrUnsigned means a call carried no admin signature.
	ErrUnsigned = errors.New("admin request is not signed")
	// ErrBadSignature means the signature, its certificate or its
	// timestamp did not verify.
	ErrBadSignature = errors.New("bad admin signature")
)

// Signed is one signed admin request: what the audit log keeps, and all
// that is needed to check it again from the CA certificate alone.
type Signed struct {
	Method      string `json:"method"`
	Request     []byte `json:"request"` // deterministic protobuf encoding
	UnixMs      int64  `json:"unix_ms"`
	Nonce       []byte `json:"nonce"`
	Certificate []byte `json:"certificate"` // DER
	Signature   []byte `json:"signature"`
}

// Encode returns the request's deterministic protobuf encoding, the bytes a
// signature covers.
func Encode(req proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(req)
}

// message is what the admin's key signs: a domain tag, the method, the
// time, the nonce and the request, each length-prefixed.
func (s *Signed) message() []byte {
	var b bytes.Buffer
	b.WriteString("accord admin request v1\x00")
	for _, f := range [][]byte{[]byte(s.Method), binary.BigEndian.AppendUint64(nil, uint64(s.UnixMs)), s.Nonce, s.Request} {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		b.Write(f)
	}
	return b.Bytes()
}

// Sign signs req for method with the admin's certificate key at now.
func Sign(cert tls.Certificate, method string, req proto.Message, now time.Time) (*Signed, error) {
	body, err := Encode(req)
	if err != nil {
		return nil, fmt.Errorf("encoding %s request: %w", method, err)
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("signing %s: no certificate", method)
	}
	s := &Signed{Method: method, Request: body, UnixMs: now.UnixMilli(), Nonce: nonce, Certificate: cert.Certificate[0]}
	if s.Signature, err = pki.Sign(cert, s.message()); err != nil {
		return nil, fmt.Errorf("signing %s: %w", method, err)
	}
	return s, nil
}

// Verify checks that the certificate chained to the federation CA in pool
// and was an admin's at the time of signing, and that its key signed the
// request. It returns the signer and its certificate.
func (s *Signed) Verify(pool *x509.CertPool) (pki.Identity, *x509.Certificate, error) {
	return s.VerifyAt(pool, time.UnixMilli(s.UnixMs))
}

// VerifyAt is Verify with the certificate's validity checked at t.
func (s *Signed) VerifyAt(pool *x509.CertPool, t time.Time) (pki.Identity, *x509.Certificate, error) {
	cert, err := x509.ParseCertificate(s.Certificate)
	if err != nil {
		return pki.Identity{}, nil, fmt.Errorf("%w: certificate: %v", ErrBadSignature, err)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return pki.Identity{}, nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if id.Role != pki.RoleAdmin {
		return pki.Identity{}, nil, fmt.Errorf("%w: %s is a %s, not an admin", ErrBadSignature, id.Name, id.Role)
	}
	// The chain to the CA, at t, and the signature.
	if err := pki.VerifySignedAt(pool, s.Certificate, id, s.message(), s.Signature, t); err != nil {
		return pki.Identity{}, nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return id, cert, nil
}

// Attach adds the signature to an outgoing context; a coordinator that
// forwards a call attaches the admin's signature unchanged.
func Attach(ctx context.Context, s *Signed) context.Context {
	return metadata.AppendToOutgoingContext(ctx,
		mdCert, string(s.Certificate), mdSignature, string(s.Signature),
		mdTime, strconv.FormatInt(s.UnixMs, 10), mdNonce, string(s.Nonce))
}

// FromIncoming reads the signature of a call to method and pairs it with
// the request the server decoded. It checks the form only; Verify checks
// the signature.
func FromIncoming(ctx context.Context, method string, req proto.Message) (*Signed, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	one := func(k string) (string, bool) {
		v := md.Get(k)
		if len(v) != 1 {
			return "", false
		}
		return v[0], true
	}
	if !ok {
		return nil, ErrUnsigned
	}
	cert, ok1 := one(mdCert)
	sig, ok2 := one(mdSignature)
	ts, ok3 := one(mdTime)
	nonce, ok4 := one(mdNonce)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("%w: sign it with the admin's key (the accord CLI does)", ErrUnsigned)
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: timestamp %q", ErrBadSignature, ts)
	}
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("%w: nonce of %d bytes; want %d", ErrBadSignature, len(nonce), NonceSize)
	}
	body, err := Encode(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return &Signed{Method: method, Request: body, UnixMs: ms, Nonce: []byte(nonce), Certificate: []byte(cert), Signature: []byte(sig)}, nil
}

// CheckFresh refuses a signature whose timestamp is more than MaxSkew away
// from now.
func (s *Signed) CheckFresh(now time.Time) error {
	if d := now.Sub(time.UnixMilli(s.UnixMs)); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%w: signed at %s, %v from this coordinator's clock (at most %v)", ErrBadSignature,
			time.UnixMilli(s.UnixMs).UTC().Format(time.RFC3339), d.Round(time.Second), MaxSkew)
	}
	return nil
}

// NonceKey identifies a signature's nonce for replay checks: the signer's
// certificate and the nonce.
func (s *Signed) NonceKey() string {
	h := sha256.Sum256(append(append([]byte{}, s.Certificate...), s.Nonce...))
	return fmt.Sprintf("%x", h[:16])
}

// UnaryClientInterceptor signs every unary call made through a connection
// with cert: the admin CLI's connections use it.
func UnaryClientInterceptor(cert tls.Certificate) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		m, ok := req.(proto.Message)
		if !ok {
			return fmt.Errorf("adminauth: %s request is not a protobuf message", method)
		}
		s, err := Sign(cert, method, m, time.Now())
		if err != nil {
			return err
		}
		return invoker(Attach(ctx, s), method, req, reply, cc, opts...)
	}
}
