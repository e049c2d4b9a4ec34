package state_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/coordinator/state/statetest"
)

// memNode is one replica of the state under hashicorp/raft with its
// in-memory transport, log store and snapshot store: no socket, no disk.
type memNode struct {
	fsm   *state.FSM
	raft  *raft.Raft
	trans *raft.InmemTransport
	addr  raft.ServerAddress
}

// memCluster starts n replicas of an FSM trusting ca, connected to each
// other, and bootstraps them as one cluster.
func memCluster(t *testing.T, n int, d *statetest.Driver) []*memNode {
	t.Helper()
	var nodes []*memNode
	var servers []raft.Server
	for i := range n {
		addr, trans := raft.NewInmemTransport("")
		store := raft.NewInmemStore()
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(fmt.Sprintf("node-%d", i))
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		// Snapshots come every 16 entries and keep 4, so a replica that
		// missed a few dozen needs a snapshot sent.
		cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.SnapshotInterval = 16, 4, 50*time.Millisecond
		cfg.Logger = hclog.NewNullLogger()
		fsm := state.NewFSM(d.CA.Pool())
		r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Shutdown().Error() })
		nodes = append(nodes, &memNode{fsm: fsm, raft: r, trans: trans, addr: addr})
		servers = append(servers, raft.Server{ID: cfg.LocalID, Address: addr})
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// leader waits for one of nodes to lead.
func leader(t *testing.T, nodes []*memNode) *memNode {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no leader in 10 s")
	return nil
}

// apply commits one command through the leader.
func (n *memNode) apply(t *testing.T, kind state.CommandType, body any) {
	t.Helper()
	b, err := state.EncodeCommand(kind, body)
	if err != nil {
		t.Fatal(err)
	}
	f := n.raft.Apply(b, 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatalf("raft apply: %v", err)
	}
	if err, ok := f.Response().(error); ok {
		t.Fatalf("the FSM refused the command: %v", err)
	}
}

// persisted is what a snapshot of the FSM writes now: two replicas that
// applied the same log write the same bytes.
func persisted(t *testing.T, f *state.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

type bufSink struct{ bytes.Buffer }

func (*bufSink) ID() string    { return "buf" }
func (*bufSink) Cancel() error { return nil }
func (*bufSink) Close() error  { return nil }

// TestStateUnderRaftInMemory: three replicas of the FSM under
// hashicorp/raft's in-memory transport and stores. Commands committed
// through the leader reach every replica alike; a replica cut off while
// the log moves on (and is compacted by snapshots) catches up by a
// snapshot installed from the leader, and the three end with the same
// state, byte for byte.
func TestStateUnderRaftInMemory(t *testing.T) {
	d := statetest.New(t)
	nodes := memCluster(t, 3, d)
	lead := leader(t, nodes)
	const job = "job-000000000001"
	spec := state.DefaultJobSpec()
	spec.Rounds = 1000
	lead.apply(t, state.CmdAdminAction, d.SubmitAction(job, spec))

	// Cut one follower off; the others still make a quorum.
	var cut *memNode
	for _, n := range nodes {
		if n != lead {
			cut = n
			break
		}
	}
	cut.trans.DisconnectAll()
	for _, n := range nodes {
		if n != cut {
			n.trans.Disconnect(cut.addr)
		}
	}
	const rounds = 40
	cohort := []string{"a", "b", "c"}
	for n := uint32(1); n <= rounds; n++ {
		at := d.Now().UnixMilli() + int64(n)*1000
		lead.apply(t, state.CmdOpenRound, state.OpenRound{JobID: job, Round: state.RoundRecord{Number: n, Attempt: 1, Cohort: cohort,
			BaseDigest: fmt.Sprintf("d%d", n-1), OpenedAt: at, Deadline: at + 60_000}})
		lead.apply(t, state.CmdCommitRound, state.CommitRound{JobID: job, Number: n, Attempt: 1, Contributors: cohort,
			Digest: fmt.Sprintf("d%d", n), Examples: 300, At: at + 500})
	}
	// Both replicas that took the rounds compact their logs, so whichever
	// leads after the heal (the cut replica's elections may unseat the
	// leader) must send a snapshot.
	for _, n := range nodes {
		if n != cut {
			if err := n.raft.Snapshot().Error(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
		}
	}
	if j, err := cut.fsm.JobView(job); err == nil && j.CommittedRounds > 0 {
		t.Fatalf("the cut-off replica applied %d rounds", j.CommittedRounds)
	}

	// Heal: the replica is behind the leader's compacted log.
	for _, n := range nodes {
		if n != cut {
			n.trans.Connect(cut.addr, cut.trans)
			cut.trans.Connect(n.addr, n.trans)
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		if j, err := cut.fsm.JobView(job); err == nil && j.CommittedRounds == rounds {
			break
		}
		select {
		case <-cut.fsm.Changed():
		case <-deadline:
			t.Fatal("the healed replica did not catch up in 10 s")
		}
	}
	if cut.fsm.Restores() == 0 {
		t.Error("the healed replica caught up without a snapshot: the log was not compacted past it")
	}
	want := persisted(t, lead.fsm)
	for i, n := range nodes {
		deadline := time.After(10 * time.Second)
		for !bytes.Equal(persisted(t, n.fsm), want) {
			select {
			case <-n.fsm.Changed():
			case <-deadline:
				t.Fatalf("replica %d's state differs from the leader's", i)
			}
		}
	}
	t.Logf("%d rounds committed through Raft in memory; the healed replica restored %d snapshot(s); 3 replicas, one state of %d bytes",
		rounds, cut.fsm.Restores(), len(want))
}
