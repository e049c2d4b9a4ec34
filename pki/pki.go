package pki

import (
	"bytes"
	"cmp"
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
	"strings"
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
	// RoleConsumer is a client of an inference server (accord serve): it
	// may call that server and nothing else. No coordinator service admits
	// it (each names the roles it admits, and none names this one).
	RoleConsumer Role = "consumer"
	// RoleInference is an inference server's own certificate (accord
	// serve's listeners): it serves TLS to consumers and, like a consumer's,
	// is admitted by no coordinator service.
	RoleInference Role = "inference"
)

// roles are the roles ParseRole accepts.
var roles = []Role{RoleCoordinator, RoleParticipant, RoleAdmin, RoleConsumer, RoleInference}

// Errors returned by this package.
var (
	// ErrBadRole means a role is not one of the roles above.
	ErrBadRole = errors.New("unknown role")
	// ErrBadName means a name or organisation is empty or has characters
	// other than letters, digits, '.', '-' and '_'.
	ErrBadName = errors.New("bad name")
	// ErrNoIdentity means a connection carried no verified certificate.
	ErrNoIdentity = errors.New("no verified client certificate")
	// ErrBadValidity means a certificate's requested validity is negative or
	// outlasts the CA.
	ErrBadValidity = errors.New("bad validity")
	// ErrHostsNotAllowed means hosts were given for a participant's or an
	// admin's certificate, which serves no TLS.
	ErrHostsNotAllowed = errors.New("hosts on a client-only certificate")
	// ErrWrongRole means the other end of a connection presented a verified
	// certificate of a role other than the one required.
	ErrWrongRole = errors.New("wrong role")
	// ErrNotCoordinator means the other end of a connection that must be a
	// coordinator did not present a coordinator's certificate.
	ErrNotCoordinator = errors.New("not a coordinator")
)

// ParseRole checks and returns a role.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains(roles, r) {
		return "", fmt.Errorf("%w %q: want coordinator, participant, admin, consumer or inference", ErrBadRole, s)
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

// DefaultValidity is how long an issued certificate is valid when
// IssueOptions.ValidFor is zero: one year, so that a lost or leaked
// certificate stops working on its own within a year even if nobody revokes
// it, while operators renew certificates only once a year.
const DefaultValidity = 365 * 24 * time.Hour

// clockSkew is how far back a certificate's validity starts by default, so
// that a host whose clock is a little behind the CA's accepts it.
const clockSkew = time.Hour

// IssueOptions are the choices an issuer makes beyond the identity.
type IssueOptions struct {
	// Hosts are the DNS names and IP addresses a coordinator's certificate
	// serves TLS for, besides its name. With none, a coordinator's
	// certificate serves "localhost", 127.0.0.1 and ::1 (single-machine
	// use). Participants and admins only make outbound connections: giving
	// them hosts is an error.
	Hosts []string
	// ValidFor is how long the certificate is valid (0: DefaultValidity),
	// counted from NotBefore when that is set, else from now.
	ValidFor time.Duration
	// NotBefore is when validity starts (zero: an hour ago, to allow for
	// clock skew). With a short ValidFor, a NotBefore in the past makes an
	// already expired certificate, which tests need.
	NotBefore time.Time
}

// Issue makes a certificate and key for an identity, valid for
// DefaultValidity, with the profile of its role (see IssueWith). hosts are
// IssueOptions.Hosts: coordinators only.
func (ca *CA) Issue(id Identity, hosts ...string) (tls.Certificate, error) {
	return ca.IssueWith(id, IssueOptions{Hosts: hosts})
}

// IssueWith makes a certificate and key for an identity. Each role has its
// own profile:
//
//   - a coordinator's certificate serves and dials (extended key usages
//     ServerAuth and ClientAuth) and names its name as a DNS name, and
//     opt.Hosts, or "localhost", 127.0.0.1 and ::1 when there are none;
//   - an inference server's (RoleInference) only serves (ServerAuth) and
//     names its hosts as a coordinator's does;
//   - a participant's, an admin's or a consumer's only dials (ClientAuth)
//     and names no host, so that it cannot pose as a server to anyone who
//     checks key usage; opt.Hosts must then be empty.
//
// The role, name and organisation go into the subject (see IdentityOf).
func (ca *CA) IssueWith(id Identity, opt IssueOptions) (tls.Certificate, error) {
	if _, err := ParseRole(string(id.Role)); err != nil {
		return tls.Certificate{}, err
	}
	if !nameRE.MatchString(id.Name) || !nameRE.MatchString(id.Organization) {
		return tls.Certificate{}, fmt.Errorf("%w: name %q, organisation %q: use 1–64 letters, digits, '.', '-' or '_'", ErrBadName, id.Name, id.Organization)
	}
	if opt.ValidFor < 0 {
		return tls.Certificate{}, fmt.Errorf("%w: validity %v is negative", ErrBadValidity, opt.ValidFor)
	}
	var hosts []string
	for _, h := range opt.Hosts {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	validFor := cmp.Or(opt.ValidFor, DefaultValidity)
	notBefore, notAfter := opt.NotBefore, opt.NotBefore.Add(validFor)
	if notBefore.IsZero() {
		now := time.Now()
		notBefore, notAfter = now.Add(-clockSkew), now.Add(validFor)
	}
	if notAfter.After(ca.Cert.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("%w: the certificate would be valid until %s, after the CA expires (%s)",
			ErrBadValidity, notAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject: pkix.Name{
			CommonName:         id.Name,
			Organization:       []string{id.Organization},
			OrganizationalUnit: []string{string(id.Role)},
		},
		NotBefore: notBefore,
		NotAfter:  notAfter,
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	switch id.Role {
	case RoleCoordinator, RoleInference:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if id.Role == RoleInference {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
		tmpl.DNSNames = []string{id.Name}
		if len(hosts) == 0 {
			tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if !slices.Contains(tmpl.DNSNames, h) {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	default:
		if len(hosts) > 0 {
			return tls.Certificate{}, fmt.Errorf("%w: a %s certificate only dials out and serves no hosts (got %s)", ErrHostsNotAllowed, id.Role, strings.Join(hosts, ", "))
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a key for %s %q: %w", id.Role, id.Name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing the certificate of %s %q: %w", id.Role, id.Name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading back the certificate of %s %q: %w", id.Role, id.Name, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// PeerName is the common name of a TLS peer's certificate (a
// coordinator's or participant's name), or "" without one.
func PeerName(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

// SerialOf returns a certificate's serial number in lower-case hexadecimal,
// without leading zeros or a prefix. Revocations name certificates by
// their serial in this form.
func SerialOf(cert *x509.Certificate) string {
	if cert == nil || cert.SerialNumber == nil {
		return ""
	}
	return cert.SerialNumber.Text(16)
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

// PeerCertificate returns the identity of a gRPC call's peer and its
// certificate, which the TLS handshake verified.
func PeerCertificate(ctx context.Context) (Identity, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, nil, ErrNoIdentity
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, nil, ErrNoIdentity
	}
	cert := info.State.VerifiedChains[0][0]
	id, err := IdentityOf(cert)
	return id, cert, err
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
// trusting only the federation CA: participants and the admin CLI use it to
// dial coordinators. Besides the usual checks (the server's certificate
// chains to the CA, has not expired, allows server authentication and names
// the host dialled), it refuses a server whose certificate is not a
// coordinator's (RequireCoordinatorServer). A coordinator dialling another
// coordinator may replace VerifyConnection with a stricter check.
func ClientTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates:     []tls.Certificate{cert},
		RootCAs:          ca,
		MinVersion:       tls.VersionTLS13,
		VerifyConnection: RequireCoordinatorServer,
	}
}

// RequireCoordinatorServer is a tls.Config.VerifyConnection for clients: it
// refuses a server whose verified certificate is not a coordinator's.
func RequireCoordinatorServer(cs tls.ConnectionState) error { return RequireCoordinator(cs, "server") }

// RequireCoordinator refuses a connection whose verified peer certificate
// is not a coordinator's; peer says what the other end is in the error
// ("server", "raft peer").
func RequireCoordinator(cs tls.ConnectionState, peer string) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return fmt.Errorf("%s %q presented no verified certificate, so it is %w", peer, cs.ServerName, ErrNotCoordinator)
	}
	id, err := IdentityOf(cs.VerifiedChains[0][0])
	if err != nil {
		return fmt.Errorf("%s %q is %w: %w", peer, cs.ServerName, ErrNotCoordinator, err)
	}
	if id.Role != RoleCoordinator {
		return fmt.Errorf("%s %s is a %s, %w", peer, id.Name, id.Role, ErrNotCoordinator)
	}
	return nil
}

// RequireRole returns a tls.Config.VerifyConnection refusing a peer whose
// verified certificate is not of role; peer says what the other end is in
// the error ("client", "server").
func RequireRole(role Role, peer string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return fmt.Errorf("%w: %s presented no verified certificate; want a %s's", ErrWrongRole, peer, role)
		}
		id, err := IdentityOf(cs.VerifiedChains[0][0])
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrWrongRole, peer, err)
		}
		if id.Role != role {
			return fmt.Errorf("%w: %s %s is a %s, not a %s", ErrWrongRole, peer, id.Name, id.Role, role)
		}
		return nil
	}
}

// ConsumerTLS is the TLS configuration of a consumer dialling an inference
// server (accord serve): it presents cert, trusts only the federation CA
// and refuses a server whose certificate is not an inference server's.
func ConsumerTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates:     []tls.Certificate{cert},
		RootCAs:          ca,
		MinVersion:       tls.VersionTLS13,
		VerifyConnection: RequireRole(RoleInference, "server"),
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

// IssueToDir issues an identity's certificate (see IssueWith) into
// dir/NAME.crt and dir/NAME.key.
func (ca *CA) IssueToDir(dir string, id Identity, opt IssueOptions) (certPath, keyPath string, err error) {
	c, err := ca.IssueWith(id, opt)
	if err != nil {
		return "", "", err
	}
	key, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return "", "", fmt.Errorf("encoding the key of %s %q: %w", id.Role, id.Name, err)
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

// LoadCertificate reads a PEM certificate file.
func LoadCertificate(path string) (*x509.Certificate, error) { return readCert(path) }

// ParseSerial reads a certificate serial number written in hex (with or
// without a 0x prefix, colons or leading zeros, as openssl prints it) and
// returns it in SerialOf's form.
func ParseSerial(s string) (string, error) {
	clean := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(s), "0x"), ":", ""))
	n, ok := new(big.Int).SetString(clean, 16)
	if !ok || clean == "" || len(clean) > 64 || n.Sign() < 0 {
		return "", fmt.Errorf("serial %q: want the certificate's serial number in hex", s)
	}
	return n.Text(16), nil
}
