package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestConfig is a coordinator config for tests: loopback with ports picked
// by the kernel, short Raft timeouts, a fast leader tick.
func TestConfig(name, dataDir string, cert tls.Certificate, ca *pki.CA) Config {
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.Cert, cfg.CA = name, dataDir, cert, ca.Pool()
	cfg.GRPCAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.FastGossip = true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Tick = 10 * time.Millisecond
	cfg.RetentionInterval, cfg.ValueLogGCInterval = time.Second, 5*time.Second
	if os.Getenv("ACCORD_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// TestCluster is a set of coordinators in one process on loopback, with a
// federation CA for the participants and admins of a test.
type TestCluster struct {
	tb    testing.TB
	CA    *pki.CA
	Nodes []*Coordinator
	cfgs  []Config
}

// NewTestCluster starts n coordinators c1…cn, each run by its own
// organisation, in temporary folders: they find each other by gossip and
// bootstrap Raft once all n have met. The cluster stops when the test ends.
func NewTestCluster(tb testing.TB, n int, opts ...func(*Config)) *TestCluster {
	tb.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		tb.Fatal(err)
	}
	key, err := pki.NewGossipKey()
	if err != nil {
		tb.Fatal(err)
	}
	tc := &TestCluster{tb: tb, CA: ca}
	base := tb.TempDir() // before the Cleanup below, so it is removed after Shutdown
	tb.Cleanup(tc.Shutdown)
	for i := range n {
		name := fmt.Sprintf("c%d", i+1)
		cert, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: name, Organization: fmt.Sprintf("org%d", i+1)})
		if err != nil {
			tb.Fatal(err)
		}
		cfg := TestConfig(name, filepath.Join(base, name), cert, ca)
		cfg.GossipKey = key
		if n == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.BootstrapExpect = n
		}
		for _, o := range opts {
			o(&cfg)
		}
		tc.cfgs = append(tc.cfgs, cfg)
		tc.Nodes = append(tc.Nodes, nil)
		tc.Restart(i)
	}
	return tc
}

// Restart starts node i again on its data folder (after Kill), or for the
// first time, joining the gossip of the nodes running. Its addresses stay
// the same, so Raft peers and clients find it again.
func (tc *TestCluster) Restart(i int) *Coordinator {
	tc.tb.Helper()
	cfg := tc.cfgs[i]
	cfg.Join = nil
	for j, c := range tc.Nodes {
		if j != i && c != nil {
			cfg.Join = append(cfg.Join, c.GossipAddr())
		}
	}
	c, err := New(cfg)
	if err != nil {
		tc.tb.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		tc.tb.Fatal(err)
	}
	tc.cfgs[i].GRPCAddr, tc.cfgs[i].RaftAddr, tc.cfgs[i].GossipAddr = c.Addr(), c.RaftAddr(), c.GossipAddr()
	tc.Nodes[i] = c
	return c
}

// Kill stops node i as a crash would: no goodbye to the others (its data
// folder stays).
func (tc *TestCluster) Kill(i int) {
	if c := tc.Nodes[i]; c != nil {
		c.crashed = true
		c.Shutdown()
		tc.Nodes[i] = nil
	}
}

// Index returns the position of c in the cluster.
func (tc *TestCluster) Index(c *Coordinator) int {
	return slices.Index(tc.Nodes, c)
}

// Partition cuts node i off from every other coordinator: Raft, blob
// transfers and forwarding (gossip still flows). Participants can still
// reach it.
func (tc *TestCluster) Partition(i int) {
	for j, c := range tc.Nodes {
		if c == nil {
			continue
		}
		if j == i {
			var others []string
			for k, cfg := range tc.cfgs {
				if k != i {
					others = append(others, cfg.Name)
				}
			}
			c.peers.setBlocked(others)
		} else {
			c.peers.setBlocked([]string{tc.cfgs[i].Name})
		}
	}
}

// Heal undoes every partition.
func (tc *TestCluster) Heal() {
	for _, c := range tc.Nodes {
		if c != nil {
			c.peers.setBlocked(nil)
		}
	}
}

// Shutdown stops every node.
func (tc *TestCluster) Shutdown() {
	for i := range tc.Nodes {
		tc.Kill(i)
	}
}

// Cfg returns node i's config (its addresses once started).
func (tc *TestCluster) Cfg(i int) Config { return tc.cfgs[i] }

// Addrs are the gRPC addresses of the nodes.
func (tc *TestCluster) Addrs() []string {
	var out []string
	for _, c := range tc.cfgs {
		out = append(out, c.GRPCAddr)
	}
	return out
}

// Leader waits up to timeout for a leader and returns it.
func (tc *TestCluster) Leader(timeout time.Duration) *Coordinator {
	tc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, c := range tc.Nodes {
			if c != nil && c.IsLeader() {
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tc.tb.Fatalf("no leader within %v", timeout)
	return nil
}

// Credentials issues a certificate for an identity and returns gRPC client
// credentials presenting it.
func (tc *TestCluster) Credentials(role pki.Role, name string) credentials.TransportCredentials {
	tc.tb.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: role, Name: name, Organization: "org-" + name})
	if err != nil {
		tc.tb.Fatal(err)
	}
	return credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))
}

// AdminCert issues an admin certificate for name of org.
func (tc *TestCluster) AdminCert(name, org string) tls.Certificate {
	tc.tb.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleAdmin, Name: name, Organization: org})
	if err != nil {
		tc.tb.Fatal(err)
	}
	return cert
}

// Admin returns a client of node i's admin service for the admin name of
// organisation "org-"+name, signing every call as the CLI does.
func (tc *TestCluster) Admin(i int, name string) pb.AdminServiceClient {
	return tc.AdminOf(i, name, "org-"+name)
}

// AdminOf is Admin for an admin of the given organisation.
func (tc *TestCluster) AdminOf(i int, name, org string) pb.AdminServiceClient {
	tc.tb.Helper()
	return tc.AdminWith(i, tc.AdminCert(name, org))
}

// AdminWith is Admin with a given admin certificate.
func (tc *TestCluster) AdminWith(i int, cert tls.Certificate) pb.AdminServiceClient {
	tc.tb.Helper()
	conn, err := grpc.NewClient(tc.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))),
		grpc.WithChainUnaryInterceptor(adminauth.UnaryClientInterceptor(cert)))
	if err != nil {
		tc.tb.Fatal(err)
	}
	tc.tb.Cleanup(func() { conn.Close() })
	return pb.NewAdminServiceClient(conn)
}

// Dial connects to node i with creds; the connection closes with the test.
func (tc *TestCluster) Dial(i int, creds credentials.TransportCredentials) *grpc.ClientConn {
	tc.tb.Helper()
	conn, err := grpc.NewClient(tc.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		tc.tb.Fatal(err)
	}
	tc.tb.Cleanup(func() { conn.Close() })
	return conn
}

// WaitConverged waits until every running node's FSM equals the leader's
// and holds every model the FSM names.
func (tc *TestCluster) WaitConverged(timeout time.Duration) {
	tc.tb.Helper()
	if err := WaitInvariants(tc.running(), timeout); err != nil {
		tc.tb.Fatalf("cluster did not converge within %v: %v", timeout, err)
	}
}

// WaitJob polls the leader's FSM until the job is no longer running or
// timeout passes, and returns the job.
func (tc *TestCluster) WaitJob(jobID string, timeout time.Duration) *Job {
	tc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// A leader applies its log after it is elected: a job may be
		// missing from its FSM for a moment after a restart.
		j, err := tc.Leader(max(timeout, 5*time.Second)).FSM().Job(jobID)
		if err != nil && time.Now().After(deadline.Add(5*time.Second)) {
			tc.tb.Fatal(err)
		}
		if err == nil && (!j.running() || time.Now().After(deadline)) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitCommitted waits until the job has committed at least round rounds.
func (tc *TestCluster) WaitCommitted(jobID string, round uint32, timeout time.Duration) {
	tc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if j, err := tc.Leader(timeout).FSM().Job(jobID); err == nil && j.CommittedRounds >= round {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.tb.Fatalf("job %s did not commit round %d within %v", jobID, round, timeout)
}

// CheckInvariants checks DESIGN.md's invariants on every running node: equal
// FSMs; per job, committed rounds numbered 1…N with no gap, each committed
// once; every committed model stored, hashing to its digest, and of the
// model's size.
func (tc *TestCluster) CheckInvariants() {
	tc.tb.Helper()
	if err := CheckInvariants(tc.running()); err != nil {
		tc.tb.Error(err)
	}
}

func (tc *TestCluster) running() []*Coordinator {
	var out []*Coordinator
	for _, c := range tc.Nodes {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// WaitInvariants checks the invariants until they hold or timeout passes
// (followers may still be applying the last entries or fetching the last
// model) and returns the last violation.
func WaitInvariants(nodes []*Coordinator, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := CheckInvariants(nodes)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CheckInvariants checks the invariants over a set of running coordinators.
func CheckInvariants(nodes []*Coordinator) error {
	if len(nodes) == 0 {
		return nil
	}
	want := nodes[0].FSM().Digest()
	for _, c := range nodes[1:] {
		if got := c.FSM().Digest(); got != want {
			return fmt.Errorf("FSM of %s differs from %s's", c.Name(), nodes[0].Name())
		}
	}
	for _, c := range nodes {
		for _, j := range c.FSM().Jobs() {
			var committed []uint32
			kept := j.retained()
			for _, r := range j.Rounds {
				if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
					committed = append(committed, r.Number)
					if !kept[r.Number] {
						continue // deleted by the job's retain policy
					}
					blob, err := c.Store().GetBlob(r.Digest)
					if err != nil {
						return fmt.Errorf("%s: job %s round %d: %w", c.Name(), j.ID, r.Number, err)
					}
					if got := protocol.Digest(blob); got != r.Digest {
						return fmt.Errorf("%s: job %s round %d: blob hashes to %s, not %s", c.Name(), j.ID, r.Number, got, r.Digest)
					}
				}
			}
			for i, n := range committed {
				if n != uint32(i+1) {
					return fmt.Errorf("%s: job %s: committed rounds %v are not 1…%d without gaps or repeats", c.Name(), j.ID, committed, len(committed))
				}
			}
			if uint32(len(committed)) != j.CommittedRounds {
				return fmt.Errorf("%s: job %s records %d committed rounds but lists %d", c.Name(), j.ID, j.CommittedRounds, len(committed))
			}
			if slices.ContainsFunc(j.Rounds, func(r *RoundRecord) bool { return r.Status == pb.RoundStatus_ROUND_STATUS_OPEN }) && !j.running() {
				return fmt.Errorf("%s: job %s finished with a round open", c.Name(), j.ID)
			}
		}
	}
	return nil
}
