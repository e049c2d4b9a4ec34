package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestConfig is a coordinator config for tests: loopback with ports picked
// by the kernel, short Raft timeouts, a fast leader tick.
func TestConfig(name, dataDir string, cert tls.Certificate, ca *pki.CA) Config {
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.Cert, cfg.CA = name, dataDir, cert, ca.Pool()
	cfg.GRPCAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Tick = 10 * time.Millisecond
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

// NewTestCluster starts a one-coordinator cluster (bootstrapped) in a
// temporary folder and stops it when the test ends.
func NewTestCluster(tb testing.TB) *TestCluster {
	tb.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		tb.Fatal(err)
	}
	tc := &TestCluster{tb: tb, CA: ca}
	name := "c1"
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: name, Organization: "org1"})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := TestConfig(name, filepath.Join(tb.TempDir(), name), cert, ca)
	cfg.Bootstrap = true
	tc.cfgs = append(tc.cfgs, cfg)
	tc.Nodes = append(tc.Nodes, nil)
	tc.Restart(0)
	tb.Cleanup(tc.Shutdown)
	return tc
}

// Restart starts node i again on its data folder (after Kill), or for the
// first time. Its gRPC address stays the same, so clients reconnect.
func (tc *TestCluster) Restart(i int) *Coordinator {
	tc.tb.Helper()
	cfg := tc.cfgs[i]
	c, err := New(cfg)
	if err != nil {
		tc.tb.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		tc.tb.Fatal(err)
	}
	tc.cfgs[i].GRPCAddr, tc.cfgs[i].RaftAddr = c.Addr(), c.RaftAddr()
	tc.Nodes[i] = c
	return c
}

// Kill stops node i (its data folder stays).
func (tc *TestCluster) Kill(i int) {
	if c := tc.Nodes[i]; c != nil {
		c.Shutdown()
		tc.Nodes[i] = nil
	}
}

// Shutdown stops every node.
func (tc *TestCluster) Shutdown() {
	for i := range tc.Nodes {
		tc.Kill(i)
	}
}

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

// WaitJob polls the leader's FSM until the job is no longer running or
// timeout passes, and returns the job.
func (tc *TestCluster) WaitJob(jobID string, timeout time.Duration) *Job {
	tc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := tc.Leader(timeout).FSM().Job(jobID)
		if err != nil {
			tc.tb.Fatal(err)
		}
		if !j.running() || time.Now().After(deadline) {
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
			for _, r := range j.Rounds {
				if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
					committed = append(committed, r.Number)
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
