package coordinator_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// waitOpenRound waits until the job has a round open on the leader.
func waitOpenRound(t *testing.T, tc *coordtest.Cluster, jobID string) *state.RoundRecord {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		j, err := tc.Leader(5 * time.Second).FSM().Job(jobID)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(j.Rounds); n > 0 && j.Rounds[n-1].Status == pb.RoundStatus_ROUND_STATUS_OPEN {
			return j.Rounds[n-1]
		}
	}
	t.Fatal("no round opened")
	return nil
}

func hasAbort(j *state.Job, reason string) bool {
	for _, r := range j.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED && r.Reason == reason {
			return true
		}
	}
	return false
}

// TestLeaderKilledMidRound kills the leader while a round is open: a new
// leader is elected, records the open round as aborted and retries it, the
// job reaches its end, and every coordinator ends with the same state and
// every model.
func TestLeaderKilledMidRound(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	// Round 4's first attempt cannot finish: its updates are held until the
	// leader is dead, then dropped.
	gate := make(chan struct{})
	startFleet(t, tc, 8, fleetHooks{beforeUpload: func(_ string, task *pb.Task) error {
		if task.Round == 4 && task.Attempt == 1 {
			<-gate
			return errors.New("held past the leader's death")
		}
		return nil
	}})
	admin := tc.Admin(1, "ops")
	resp := &pb.SubmitJobResponse{JobId: submit(t, admin, blobsJob(10))}
	tc.WaitCommitted(resp.JobId, 3, 30*time.Second)
	if r := waitOpenRound(t, tc, resp.JobId); r.Number != 4 {
		t.Fatalf("round %d open; want 4", r.Number)
	}
	release := sync.OnceFunc(func() { close(gate) })
	defer release()
	old := tc.Index(tc.Leader(time.Second))
	killedAt := time.Now()
	tc.Kill(old)
	leader := tc.Leader(10 * time.Second)
	release()
	t.Logf("killed leader c%d; c%d leads after %v", old+1, tc.Index(leader)+1, time.Since(killedAt).Round(time.Millisecond))

	job := tc.WaitJob(resp.JobId, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 10 {
		t.Fatalf("job ended %v with %d rounds (%s); want SUCCEEDED with 10", job.Status, job.CommittedRounds, job.Reason)
	}
	if !hasAbort(job, "leader change") {
		t.Error("no round was recorded as aborted by the leader change")
	}
	tc.WaitConverged(10 * time.Second)
	tc.Restart(old)
	tc.WaitConverged(20 * time.Second) // the restarted node catches up and fetches every model
}

// TestPartitionedLeader isolates the leader: the minority cannot commit, the
// majority elects a leader and goes on, and after healing the old leader
// follows and converges.
func TestPartitionedLeader(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	startFleet(t, tc, 8, fleetHooks{})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 8)
	resp := &pb.SubmitJobResponse{JobId: submit(t, admin, blobsJob(12))}
	tc.WaitCommitted(resp.JobId, 2, 60*time.Second)
	oldLeader := tc.Leader(time.Second)
	old := tc.Index(oldLeader)
	tc.Partition(old)
	before, _ := oldLeader.FSM().Job(resp.JobId)

	// A new leader among the other two.
	var leader *coordinator.Coordinator
	for deadline := time.Now().Add(60 * time.Second); leader == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for i, c := range tc.Nodes {
			if i != old && c.IsLeader() {
				leader = c
			}
		}
	}
	if leader == nil {
		t.Fatal("the majority elected no leader")
	}
	// The majority goes on.
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		j, err := leader.FSM().Job(resp.JobId)
		if err == nil && j.CommittedRounds >= before.CommittedRounds+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the majority did not commit 3 more rounds (had %d at the partition): %v", before.CommittedRounds, err)
		}
	}
	// The isolated old leader committed nothing meanwhile.
	if j, err := oldLeader.FSM().Job(resp.JobId); err != nil || j.CommittedRounds > before.CommittedRounds+1 {
		t.Errorf("the isolated coordinator advanced from %d to %d committed rounds", before.CommittedRounds, j.CommittedRounds)
	}
	if oldLeader.IsLeader() {
		t.Error("the isolated coordinator still believes it leads")
	}

	tc.Heal()
	job := tc.WaitJob(resp.JobId, 120*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 12 {
		t.Fatalf("job ended %v with %d rounds (%s); want SUCCEEDED with 12", job.Status, job.CommittedRounds, job.Reason)
	}
	tc.WaitConverged(20 * time.Second)
}

// TestLeaderChangeDuringEvaluationKeepsTheAccuracy: the leader is killed
// right after committing a round, while its model is being evaluated. The
// new leader evaluates it once participants are back (nobody connected at
// the moment it takes over is not an attempt), so every committed round of
// the job ends up with a federated accuracy.
func TestLeaderChangeDuringEvaluationKeepsTheAccuracy(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	// Reports of round 2's first evaluation are held until the leader that
	// asked for them is dead, then dropped.
	gate := make(chan struct{})
	var held sync.Once
	holding := make(chan struct{})
	startFleet(t, tc, 6, fleetHooks{beforeReport: func(_ string, task *pb.Task) error {
		if task.Round != 2 {
			return nil
		}
		select {
		case <-gate:
			return nil // a later evaluation of round 2, by the new leader
		default:
		}
		held.Do(func() { close(holding) })
		<-gate
		return errors.New("held past the leader's death")
	}})
	admin := tc.Admin(1, "ops")
	spec := blobsJob(5)
	spec.EvaluateFraction = 1
	jobID := submit(t, admin, spec)
	<-holding
	tc.Kill(tc.Index(tc.Leader(time.Second)))
	tc.Leader(10 * time.Second)
	close(gate)
	job := tc.WaitJob(jobID, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
		t.Fatalf("job ended %v: %s", job.Status, job.Reason)
	}
	for _, r := range job.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && (r.Eval == nil || r.Eval.Examples == 0) {
			t.Errorf("round %d committed without a federated accuracy", r.Number)
		}
	}
}
