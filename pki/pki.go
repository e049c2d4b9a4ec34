package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is what an identity may do.
type Role string

// Roles.
const (
	RoleCoordinator Role = "coordinator"
	RoleParticipant Role = "participant"
	RoleAdmin       Role = "admin"
)

// Errors returned by this package.
var (
	// ErrBadRole means a role is not coordinator, participant or admin.
	ErrBadRole = errors.New("unknown role")
	// ErrBadName means a name or organisation is empty or has characters
	// other than letters, digits, '.', '-' and '_'.
	ErrBadName = errors.New("bad name")
	// ErrNoIdentity means a connection carried no verified certificate.
	ErrNoIdentity = errors.New("no verified client certificate")
)

// ParseRole checks and returns a role.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains([]Role{RoleCoordinator, RoleParticipant, RoleAdmin}, r) {
		return "", fmt.Errorf("%w %q: want coordinator, participant or admin", ErrBadRole, s)
	}
	return r, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Identity is who is at the other end of a connection, from its certificate.
type Identity struct {
	Role         Role
	Name         string
	Organization string
}

// CA is a federation's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

// NewCA makes a CA for a federation, valid for ten years.
func NewCA(federation string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: federation + " federation CA", Organization: []string{federation}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return newCA(cert, key), nil
}

func newCA(cert *x509.Certificate, key *ecdsa.PrivateKey) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, pool: pool}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// Pool is a pool holding just this CA.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Issue makes a certificate and key for an identity, valid for two years.
// hosts (IP addresses or DNS names) are added to the certificate so it can
// serve TLS for them; loopback and "localhost" are always included.
func (ca *CA) Issue(id Identity, hosts ...string) (tls.Certificate, error) {
	if _, err := ParseRole(string(id.Role)); err != nil {
		return tls.Certificate{}, err
	}
	if !nameRE.MatchString(id.Name) || !nameRE.MatchString(id.Organization) {
		return tls.Certificate{}, fmt.Errorf("%w: name %q, organisation %q: use 1–64 letters, digits, '.', '-' or '_'", ErrBadName, id.Name, id.Organization)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject: pkix.Name{
			CommonName:         id.Name,
			Organization:       []string{id.Organization},
			OrganizationalUnit: []string{string(id.Role)},
		},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().AddDate(2, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost", id.Name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IdentityOf reads the identity a certificate names.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if len(cert.Subject.OrganizationalUnit) != 1 || len(cert.Subject.Organization) != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q lacks a role or organisation", ErrNoIdentity, cert.Subject.CommonName)
	}
	role, err := ParseRole(cert.Subject.OrganizationalUnit[0])
	if err != nil {
		return Identity{}, err
	}
	return Identity{Role: role, Name: cert.Subject.CommonName, Organization: cert.Subject.Organization[0]}, nil
}

// PeerIdentity returns the identity of a gRPC call's peer, from the client
// certificate the TLS handshake verified.
func PeerIdentity(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, ErrNoIdentity
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoIdentity
	}
	return IdentityOf(info.State.VerifiedChains[0][0])
}

// ServerTLS is the TLS configuration of a server that requires a client
// certificate from the federation CA.
func ServerTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS is the TLS configuration of a client presenting cert and
// trusting only the federation CA.
func ClientTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca,
		MinVersion:   tls.VersionTLS13,
	}
}

// NewGossipKey returns a random 32-byte key for memberlist encryption.
func NewGossipKey() ([]byte, error) {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	return k, err
}

// Files on disk.

const (
	caCertFile    = "ca.crt"
	caKeyFile     = "ca.key"
	gossipKeyFile = "gossip.key"
)

// InitDir makes a new federation in dir: CA and gossip key. It refuses to
// overwrite an existing CA.
func InitDir(dir, federation string) error {
	if _, err := os.Stat(filepath.Join(dir, caKeyFile)); err == nil {
		return fmt.Errorf("%s already holds a federation CA; refusing to overwrite it", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := NewCA(federation)
	if err != nil {
		return err
	}
	key, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return err
	}
	gossip, err := NewGossipKey()
	if err != nil {
		return err
	}
	return errors.Join(
		writePEM(filepath.Join(dir, caCertFile), "CERTIFICATE", ca.Cert.Raw, 0o644),
		writePEM(filepath.Join(dir, caKeyFile), "EC PRIVATE KEY", key, 0o600),
		os.WriteFile(filepath.Join(dir, gossipKeyFile), []byte(base64.StdEncoding.EncodeToString(gossip)+"\n"), 0o600),
	)
}

// LoadCA reads the CA of the federation in dir.
func LoadCA(dir string) (*CA, error) {
	cert, err := readCert(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, err
	}
	b, err := readPEM(filepath.Join(dir, caKeyFile), "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, caKeyFile), err)
	}
	return newCA(cert, key), nil
}

// LoadCAPool reads just the CA certificate (all a non-CA host needs).
func LoadCAPool(path string) (*x509.CertPool, error) {
	cert, err := readCert(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

// IssueToDir issues an identity's certificate into dir/NAME.crt and NAME.key.
func (ca *CA) IssueToDir(dir string, id Identity, hosts ...string) (certPath, keyPath string, err error) {
	c, err := ca.Issue(id, hosts...)
	if err != nil {
		return "", "", err
	}
	key, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, id.Name+".crt"), filepath.Join(dir, id.Name+".key")
	if err := writePEM(certPath, "CERTIFICATE", c.Certificate[0], 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, writePEM(keyPath, "EC PRIVATE KEY", key, 0o600)
}

// LoadKeyPair reads a certificate and its key.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading %s and %s: %w", certPath, keyPath, err)
	}
	return c, nil
}

// LoadGossipKey reads dir/gossip.key.
func LoadGossipKey(dir string) ([]byte, error) {
	return LoadGossipKeyFile(filepath.Join(dir, gossipKeyFile))
}

// LoadGossipKeyFile reads a gossip key file (base64 of 32 bytes).
func LoadGossipKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s: not a base64 32-byte key", path)
	}
	return k, nil
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}

func readPEM(path, kind string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != kind {
		return nil, fmt.Errorf("%s: no PEM %s block", path, kind)
	}
	return block.Bytes, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
