package coordinator_test

import (
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestUploadsDoNotWaitForRaftApplies: job A's round is open and one of its
// updates is held back at the participant; job B's round then opens, and
// the leader's FSM holds that openRound apply for 2 s, as a slow Raft
// commit would. The held update, let go once the apply is held, is
// accepted before the apply goes on: the scheduling pass applies with the
// leader's lock released, so uploads never wait for Raft.
func TestUploadsDoNotWaitForRaftApplies(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	leader := tc.Leader(5 * time.Second)
	const holdFor = 2 * time.Second
	letGo := make(chan struct{})
	accepted := make(chan time.Time, 1)
	// Job A trains one local epoch, job B two: that is how the hooks
	// tell their tasks apart.
	isA := func(task *pb.Task) bool {
		return task.GetKind() == pb.TaskKind_TASK_KIND_TRAIN && task.GetLocalEpochs() == 1
	}
	var once sync.Once
	startFleet(t, tc, 2, fleetHooks{
		beforeUpload: func(name string, task *pb.Task) error {
			if isA(task) && name == "pa0" {
				<-letGo
			}
			return nil
		},
		afterTask: func(name string, task *pb.Task) {
			if isA(task) && name == "pa0" {
				once.Do(func() { accepted <- time.Now() })
			}
		},
	})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 2)

	specA := blobsJob(1)
	specA.ParticipantsPerRound, specA.MinParticipants, specA.LocalEpochs, specA.EvaluateFraction = 2, 2, 1, 0
	// Neither its deadline nor the straggler rule may close the round
	// while the update is held.
	specA.RoundDeadlineMs, specA.StragglerFactor = uint64(time.Minute/time.Millisecond), -1
	idA := submit(t, admin, specA)
	waitOpenRound(t, tc, idA)

	held, released := coordinator.HoldNextOpenRoundForTest(leader, holdFor)
	specB := blobsJob(1)
	specB.Name, specB.ParticipantsPerRound, specB.MinParticipants, specB.LocalEpochs, specB.EvaluateFraction = "blobs-b", 2, 2, 2, 0
	submit(t, admin, specB)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("job B's round never opened")
	}
	heldAt := time.Now()
	close(letGo)
	select {
	case at := <-accepted:
		t.Logf("the update was accepted %v after job B's openRound apply was held (held for %v)", at.Sub(heldAt).Round(time.Millisecond), holdFor)
		select {
		case <-released:
			t.Fatalf("the update was accepted only after the held apply went on")
		default:
		}
	case <-released:
		t.Fatal("the held apply went on before the update was accepted: the upload waited for Raft")
	}
	if job := tc.WaitJob(idA, 30*time.Second); job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
		t.Fatalf("job A ended %v: %s", job.Status, job.Reason)
	}
}
