// Package coordtest is a test kit for coordinator clusters: coordinators in
// one process on loopback with short Raft timeouts, admins and
// participants' credentials, crashes, partitions and waits for conditions.
// Only tests and tools import it, as the standard library keeps
// net/http/httptest beside net/http, so the accord binary never links the
// testing package.
package coordtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Config is a coordinator config for tests: loopback with ports picked
// by the kernel, short Raft timeouts, a fast leader tick.
func Config(name, dataDir string, cert tls.Certificate, ca *pki.CA) coordinator.Config {
	cfg := coordinator.DefaultConfig()
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

// Cluster is a set of coordinators in one process on loopback, with a
// federation CA for the participants and admins of a test.
type Cluster struct {
	tb    testing.TB
	CA    *pki.CA
	Nodes []*coordinator.Coordinator
	cfgs  []coordinator.Config

	mu sync.Mutex
	// cut is the node a partition cuts off (Partition), or -1.
	cut int
	// followed is the last leader every node not cut off was seen to
	// follow (Leader).
	followed *coordinator.Coordinator
}

// NewCluster starts n coordinators c1…cn, each run by its own
// organisation, in temporary folders: they find each other by gossip and
// bootstrap Raft once all n have met. The cluster stops when the test ends.
func NewCluster(tb testing.TB, n int, opts ...func(*coordinator.Config)) *Cluster {
	tb.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		tb.Fatal(err)
	}
	key, err := pki.NewGossipKey()
	if err != nil {
		tb.Fatal(err)
	}
	tc := &Cluster{tb: tb, CA: ca, cut: -1}
	base := tb.TempDir() // before the Cleanup below, so it is removed after Shutdown
	tb.Cleanup(tc.Shutdown)
	for i := range n {
		name := fmt.Sprintf("c%d", i+1)
		cert, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: name, Organization: fmt.Sprintf("org%d", i+1)})
		if err != nil {
			tb.Fatal(err)
		}
		cfg := Config(name, filepath.Join(base, name), cert, ca)
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
func (tc *Cluster) Restart(i int) *coordinator.Coordinator {
	tc.tb.Helper()
	tc.forgetFollowed()
	cfg := tc.cfgs[i]
	cfg.Join = nil
	for j, c := range tc.Nodes {
		if j != i && c != nil {
			cfg.Join = append(cfg.Join, c.GossipAddr())
		}
	}
	c, err := coordinator.New(cfg)
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

// Kill stops node i as a crash would (coordinator.Crash): every socket
// closes at once and nothing says goodbye to the others: no gossip leave,
// no GOAWAY, no last Raft message (its data folder stays). Stop is the
// graceful path.
func (tc *Cluster) Kill(i int) {
	tc.forgetFollowed()
	if c := tc.Nodes[i]; c != nil {
		c.Crash()
		tc.Nodes[i] = nil
	}
}

// Stop stops node i gracefully (coordinator.Shutdown): the leader loop
// first, then a gossip leave, gRPC's GracefulStop, Raft's shutdown (its
// data folder stays).
func (tc *Cluster) Stop(i int) {
	tc.forgetFollowed()
	if c := tc.Nodes[i]; c != nil {
		c.Shutdown()
		tc.Nodes[i] = nil
	}
}

// Index returns the position of c in the cluster.
func (tc *Cluster) Index(c *coordinator.Coordinator) int {
	return slices.Index(tc.Nodes, c)
}

// Partition cuts node i off from every other coordinator: Raft, blob
// transfers and forwarding (gossip still flows). Participants can still
// reach it.
func (tc *Cluster) Partition(i int) {
	tc.mu.Lock()
	tc.cut, tc.followed = i, nil
	tc.mu.Unlock()
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
			c.BlockPeers(others)
		} else {
			c.BlockPeers([]string{tc.cfgs[i].Name})
		}
	}
}

// Heal undoes every partition.
func (tc *Cluster) Heal() {
	tc.mu.Lock()
	tc.cut, tc.followed = -1, nil
	tc.mu.Unlock()
	for _, c := range tc.Nodes {
		if c != nil {
			c.BlockPeers(nil)
		}
	}
}

// Shutdown stops every node.
func (tc *Cluster) Shutdown() {
	for i := range tc.Nodes {
		tc.Kill(i)
	}
}

// Cfg returns node i's config (its addresses once started).
func (tc *Cluster) Cfg(i int) coordinator.Config { return tc.cfgs[i] }

// Addrs are the gRPC addresses of the nodes.
func (tc *Cluster) Addrs() []string {
	var out []string
	for _, c := range tc.cfgs {
		out = append(out, c.GRPCAddr)
	}
	return out
}

// forgetFollowed makes the next Leader check again that the nodes follow
// the leader (a node stopped or restarted).
func (tc *Cluster) forgetFollowed() {
	tc.mu.Lock()
	tc.followed = nil
	tc.mu.Unlock()
}

// Leader waits up to timeout for a leader and returns it, once the other
// nodes (but one cut off by a partition) know it too, for up to 2 s more:
// a follower that does not yet refuses the calls it would forward to the
// leader ("no leader is known yet"), and tests call any node next.
func (tc *Cluster) Leader(timeout time.Duration) *coordinator.Coordinator {
	tc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, c := range tc.Nodes {
			if c != nil && c.IsLeader() {
				tc.waitFollowed(c, 2*time.Second)
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tc.tb.Fatalf("no leader within %v", timeout)
	return nil
}

// waitFollowed waits up to timeout until every running node not cut off
// knows leader as its leader, once per leader (and again after a node
// stops or restarts). A leader cut off itself is not waited for.
func (tc *Cluster) waitFollowed(leader *coordinator.Coordinator, timeout time.Duration) {
	tc.mu.Lock()
	done, cut := tc.followed == leader, tc.cut
	tc.mu.Unlock()
	if done || cut >= 0 && tc.Index(leader) == cut {
		return
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		all := true
		for i, c := range tc.Nodes {
			if c != nil && c != leader && i != cut && c.KnownLeader() != leader.Name() {
				all = false
			}
		}
		if all {
			tc.mu.Lock()
			tc.followed = leader
			tc.mu.Unlock()
			return
		}
	}
}

// Credentials issues a certificate for an identity and returns gRPC client
// credentials presenting it.
func (tc *Cluster) Credentials(role pki.Role, name string) credentials.TransportCredentials {
	tc.tb.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: role, Name: name, Organization: "org-" + name})
	if err != nil {
		tc.tb.Fatal(err)
	}
	return credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))
}

// AdminCert issues an admin certificate for name of org.
func (tc *Cluster) AdminCert(name, org string) tls.Certificate {
	tc.tb.Helper()
	return adminCert(tc.tb, tc.CA, name, org)
}

// adminCert issues an admin certificate for name of org from ca.
func adminCert(tb testing.TB, ca *pki.CA, name, org string) tls.Certificate {
	tb.Helper()
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleAdmin, Name: name, Organization: org})
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

// Admin returns a client of node i's admin service for the admin name of
// organisation "org-"+name, signing every call as the CLI does.
func (tc *Cluster) Admin(i int, name string) pb.AdminServiceClient {
	return tc.AdminOf(i, name, "org-"+name)
}

// AdminOf is Admin for an admin of the given organisation.
func (tc *Cluster) AdminOf(i int, name, org string) pb.AdminServiceClient {
	tc.tb.Helper()
	return tc.AdminWith(i, tc.AdminCert(name, org))
}

// AdminWith is Admin with a given admin certificate.
func (tc *Cluster) AdminWith(i int, cert tls.Certificate) pb.AdminServiceClient {
	tc.tb.Helper()
	return dialAdmin(tc.tb, tc.cfgs[i].GRPCAddr, cert, tc.CA.Pool())
}

// dialAdmin returns an admin client of the coordinator at addr, trusting
// pool and signing every call with cert as the CLI does; its connection
// closes with the test.
func dialAdmin(tb testing.TB, addr string, cert tls.Certificate, pool *x509.CertPool) pb.AdminServiceClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, pool))),
		grpc.WithChainUnaryInterceptor(adminauth.UnaryClientInterceptor(cert)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return pb.NewAdminServiceClient(conn)
}

// Dial connects to node i with creds; the connection closes with the test.
func (tc *Cluster) Dial(i int, creds credentials.TransportCredentials) *grpc.ClientConn {
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
func (tc *Cluster) WaitConverged(timeout time.Duration) {
	tc.tb.Helper()
	if err := coordinator.WaitInvariants(tc.running(), timeout); err != nil {
		tc.tb.Fatalf("cluster did not converge within %v: %v", timeout, err)
	}
}

// WaitJob polls the leader's FSM until the job is no longer running or
// timeout passes, and returns the job. A job that ended is then waited
// for, up to 10 s, on every running coordinator: each answers admin reads
// from its own state, which may trail the leader's by a few entries (the
// last round's evaluation), and a test reads them next. One that never
// catches up (cut off by a partition) is not waited for longer.
func (tc *Cluster) WaitJob(jobID string, timeout time.Duration) *state.Job {
	tc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// A leader applies its log after it is elected: a job may be
		// missing from its FSM for a moment after a restart.
		j, err := tc.Leader(max(timeout, 5*time.Second)).FSM().Job(jobID)
		if err != nil && time.Now().After(deadline.Add(5*time.Second)) {
			tc.tb.Fatal(err)
		}
		if err == nil && j.Status != pb.JobStatus_JOB_STATUS_RUNNING {
			tc.waitEverywhere(jobID, j.Status, 10*time.Second)
			return j
		}
		if err == nil && time.Now().After(deadline) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEverywhere waits up to timeout until every running coordinator's FSM
// holds the job with the given status, and logs those that never do.
func (tc *Cluster) waitEverywhere(jobID string, status pb.JobStatus, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		var behind []string
		for i, c := range tc.Nodes {
			if c == nil {
				continue
			}
			if j, err := c.FSM().JobView(jobID); err != nil {
				behind = append(behind, fmt.Sprintf("%s: %v", tc.cfgs[i].Name, err))
			} else if j.Status != status {
				behind = append(behind, fmt.Sprintf("%s: %v", tc.cfgs[i].Name, j.Status))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tc.tb.Logf("job %s ended %v on the leader; after %v, still not on %s", jobID, status, timeout, strings.Join(behind, ", "))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitCommitted waits until the job has committed at least round rounds
// on the leader. It wakes when the leader's FSM applies an entry
// (FSM.Changed), not on a polling interval, so a benchmark that waits with
// it times the commit, not a sleep; it looks for the leader again every
// 100 ms only in case leadership moves.
func (tc *Cluster) WaitCommitted(jobID string, round uint32, timeout time.Duration) {
	tc.tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l := tc.Leader(timeout)
		changed := l.FSM().Changed()
		if j, err := l.FSM().Job(jobID); err == nil && j.CommittedRounds >= round {
			return
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			tc.tb.Fatalf("job %s did not commit round %d within %v", jobID, round, timeout)
		}
	}
}

// WaitCommitted waits until c's FSM shows the job with at least round
// committed rounds, woken by each entry c applies (FSM.Changed).
func WaitCommitted(c *coordinator.Coordinator, jobID string, round uint32, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := c.FSM().Changed()
		if j, err := c.FSM().Job(jobID); err == nil && j.CommittedRounds >= round {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("job %s did not commit round %d on %s within %v", jobID, round, c.Name(), timeout)
		}
	}
}

// CheckInvariants checks DESIGN.md's invariants on every running node: equal
// FSMs; per job, committed rounds numbered 1…N with no gap, each committed
// once; every committed model stored, hashing to its digest, and of the
// model's size.
func (tc *Cluster) CheckInvariants() {
	tc.tb.Helper()
	if err := coordinator.CheckInvariants(tc.running()); err != nil {
		tc.tb.Error(err)
	}
}

func (tc *Cluster) running() []*coordinator.Coordinator {
	var out []*coordinator.Coordinator
	for _, c := range tc.Nodes {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}
