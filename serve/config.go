package serve

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/accord-fl/accord/pki"
)

// Job is one served job: its ID and, optionally, the model name clients
// use for it (default: the ID).
type Job struct {
	ID    string
	Alias string
}

// Name is the model name the job is served under.
func (j Job) Name() string {
	if j.Alias != "" {
		return j.Alias
	}
	return j.ID
}

// Config configures a Server.
type Config struct {
	// Coordinators are the coordinators' gRPC addresses; any one that
	// answers serves (gRPC's pick_first, each verified under its host).
	Coordinators []string
	// Jobs are the jobs served.
	Jobs []Job
	// CA is the federation's CA pool.
	CA *x509.CertPool
	// AdminCert is the admin identity the server reads the federation with
	// (GetJob, PullModel, ListRevocations: reads only).
	AdminCert tls.Certificate
	// Cert is the server's own certificate, of role inference, that its
	// listeners present to consumers.
	Cert tls.Certificate

	// HTTPAddr and GRPCAddr are where the REST and gRPC endpoints listen
	// (mutual TLS); either may be empty, not both. MetricsAddr, if set,
	// serves Prometheus metrics over plain HTTP at /metrics.
	HTTPAddr, GRPCAddr, MetricsAddr string

	// MaxBatch is the most rows one batch holds; MaxWait how long a batch
	// waits for more rows after its first (0: only what is queued).
	MaxBatch int
	MaxWait  time.Duration
	// Workers is how many batches run at once per model.
	Workers int
	// MaxRows bounds the rows of one request; MaxBodyBytes the size of a
	// REST request body; gRPC messages are bounded by MaxBodyBytes too.
	MaxRows      int
	MaxBodyBytes int64
	// QueueRows bounds the rows waiting for a batch per model; a request
	// past it is refused as not ready (503 / Unavailable) rather than
	// queued without bound.
	QueueRows int
	// PollInterval is how often the coordinators are asked for new rounds
	// and revocations.
	PollInterval time.Duration
	// Logger logs; nil: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: batches of up to 32 rows waiting at
// most 2 ms, one worker a CPU, requests of up to 1024 rows and 32 MiB,
// polls every second.
func DefaultConfig() Config {
	return Config{
		MaxBatch: 32, MaxWait: 2 * time.Millisecond, Workers: runtime.GOMAXPROCS(0),
		MaxRows: 1024, MaxBodyBytes: 32 << 20, QueueRows: 16384,
		PollInterval: time.Second,
	}
}

// Validate reports the first missing or inconsistent setting.
func (c Config) Validate() error {
	switch {
	case len(c.Coordinators) == 0:
		return errors.New("serve config: no coordinators")
	case len(c.Jobs) == 0:
		return errors.New("serve config: no jobs")
	case c.CA == nil:
		return errors.New("serve config: the federation CA is required (no insecure mode)")
	case c.HTTPAddr == "" && c.GRPCAddr == "":
		return errors.New("serve config: set HTTPAddr, GRPCAddr or both")
	case c.MaxBatch < 1 || c.MaxWait < 0 || c.Workers < 1:
		return fmt.Errorf("serve config: MaxBatch %d and Workers %d must be ≥ 1, MaxWait %v ≥ 0", c.MaxBatch, c.Workers, c.MaxWait)
	case c.MaxRows < 1 || c.MaxBodyBytes < 1 || c.QueueRows < c.MaxRows:
		return fmt.Errorf("serve config: MaxRows %d and MaxBodyBytes %d must be ≥ 1 and QueueRows %d ≥ MaxRows", c.MaxRows, c.MaxBodyBytes, c.QueueRows)
	case c.PollInterval <= 0:
		return errors.New("serve config: PollInterval must be positive")
	}
	names := map[string]bool{}
	for _, j := range c.Jobs {
		if j.ID == "" {
			return errors.New("serve config: a job with no ID")
		}
		if names[j.Name()] {
			return fmt.Errorf("serve config: two jobs served as %q", j.Name())
		}
		names[j.Name()] = true
	}
	if err := checkRole(c.AdminCert, pki.RoleAdmin, "AdminCert"); err != nil {
		return err
	}
	return checkRole(c.Cert, pki.RoleInference, "Cert")
}

func checkRole(cert tls.Certificate, role pki.Role, field string) error {
	if len(cert.Certificate) == 0 {
		return fmt.Errorf("serve config: %s is required (a %s's certificate)", field, role)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("serve config: %s: %w", field, err)
	}
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("serve config: %s: %w", field, err)
	}
	if id.Role != role {
		return fmt.Errorf("serve config: %s of %s is a %s's, not a %s's", field, id.Name, id.Role, role)
	}
	return nil
}
