package coordinator_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// BenchmarkFailover stops the leader of a three-coordinator cluster once
// per iteration, in the middle of a job, with hashicorp/raft's default (LAN)
// timings, and reports the median and worst time to a new leader and to the
// next committed round, timed from the moment the leader is stopped. It
// stops it two ways: kill=crash (coordtest's Kill, coordinator.Crash: every
// socket closed at once, no goodbye) and kill=graceful (coordtest's Stop,
// coordinator.Shutdown: the leader loop first, a gossip leave, gRPC's
// GracefulStop, Raft's shutdown). The stopped coordinator is restarted
// before the next iteration. With idle=200, an attacker holds 200
// connections that never start TLS open on every Raft port the whole time
// (from four loopback addresses, re-opening each as soon as it is closed).
// The new leader is looked for every millisecond (the figures' resolution);
// the commit is signalled by the new leader's FSM (FSM.Changed).
//
//	go test -run '^$' -bench Failover -benchtime 10x ./coordinator/
func BenchmarkFailover(b *testing.B) {
	for _, idle := range []int{0, 200} {
		for _, kill := range []string{"crash", "graceful"} {
			b.Run(fmt.Sprintf("idle=%d/kill=%s", idle, kill), func(b *testing.B) { benchmarkFailover(b, idle, kill == "crash") })
		}
	}
}

// holdIdle keeps n connections that never speak open on each address until
// stop closes; it returns when every holder has stopped.
func holdIdle(addrs []string, n int, stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	for _, addr := range addrs {
		for i := range n {
			wg.Go(func() {
				src := fmt.Sprintf("127.0.0.%d", 2+i%4)
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := dialFrom(src, addr)
					if err != nil {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
						}
						continue
					}
					done := make(chan struct{})
					go func() { closedWithin(c, time.Hour); close(done) }()
					select {
					case <-stop:
						c.Close()
						<-done
						return
					case <-done: // closed by the server: open another
						c.Close()
					}
				}
			})
		}
	}
	return wg.Wait
}

func benchmarkFailover(b *testing.B, idle int, crash bool) {
	def := raft.DefaultConfig()
	tc := coordtest.NewCluster(b, 3, func(c *coordinator.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = def.HeartbeatTimeout, def.ElectionTimeout, def.LeaderLeaseTimeout
		c.CommitTimeout = def.CommitTimeout
	})
	tc.Leader(20 * time.Second)
	startFleet(b, tc, 8, fleetHooks{})
	admin := tc.Admin(0, "ops")
	resp := &pb.SubmitJobResponse{JobId: submit(b, admin, blobsJob(1_000_000))}
	if idle > 0 {
		var raftAddrs []string
		for _, c := range tc.Nodes {
			raftAddrs = append(raftAddrs, c.RaftAddr())
		}
		stop := make(chan struct{})
		wait := holdIdle(raftAddrs, idle, stop)
		defer func() { close(stop); wait() }()
	}
	stopNode := tc.Stop
	if crash {
		stopNode = tc.Kill
	}
	var toLeader, toCommit []time.Duration
	b.ResetTimer()
	for range b.N {
		j := tc.WaitJob(resp.JobId, 0)
		tc.WaitCommitted(resp.JobId, j.CommittedRounds+2, 30*time.Second)
		leader := tc.Leader(time.Second)
		old := tc.Index(leader)
		var others []*coordinator.Coordinator
		for _, c := range tc.Nodes {
			if c != nil && c != leader {
				others = append(others, c)
			}
		}
		lj, err := leader.FSM().Job(resp.JobId)
		if err != nil {
			b.Fatal(err)
		}
		committed := lj.CommittedRounds
		// The clock starts as the leader is stopped; the stop runs beside
		// the measurement, so a slow teardown does not delay the reading.
		killed := time.Now()
		stopped := make(chan struct{})
		go func() { defer close(stopped); stopNode(old) }()
		var newLeader *coordinator.Coordinator
		for newLeader == nil {
			for _, c := range others {
				if c.IsLeader() {
					newLeader = c
				}
			}
			if time.Since(killed) > 30*time.Second {
				b.Fatal("no new leader in 30s")
			}
			time.Sleep(time.Millisecond)
		}
		toLeader = append(toLeader, time.Since(killed))
		if err := coordtest.WaitCommitted(newLeader, resp.JobId, committed+1, 60*time.Second-time.Since(killed)); err != nil {
			b.Fatalf("no round committed within 60s of the kill: %v", err)
		}
		toCommit = append(toCommit, time.Since(killed))
		<-stopped
		j = tc.WaitJob(resp.JobId, 0)
		back := tc.Restart(old)
		if err := coordtest.WaitCommitted(back, resp.JobId, j.CommittedRounds, 60*time.Second); err != nil {
			b.Fatalf("restarted coordinator did not catch up: %v", err) // the rounds go on, so FSMs are never equal for long
		}
	}
	b.StopTimer()
	slices.Sort(toLeader)
	slices.Sort(toCommit)
	b.ReportMetric(float64(len(toLeader)), "kills")
	b.ReportMetric(toLeader[len(toLeader)/2].Seconds(), "s-to-leader-median")
	b.ReportMetric(toLeader[len(toLeader)-1].Seconds(), "s-to-leader-worst")
	b.ReportMetric(toCommit[len(toCommit)/2].Seconds(), "s-to-commit-median")
	b.ReportMetric(toCommit[len(toCommit)-1].Seconds(), "s-to-commit-worst")
	b.Logf("to leader: %v; to next commit: %v", toLeader, toCommit)
	admin.CancelJob(b.Context(), &pb.CancelJobRequest{JobId: resp.JobId})
}
