package coordinator_test

import (
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestRestartResumes stops the coordinator in the middle of a job and starts
// it again on the same data folder: the job goes on at the next round and
// the committed history (round → digest) is unchanged.
func TestRestartResumes(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	startFleet(t, tc, 6, fleetHooks{})
	admin := tc.Admin(0, "ops")
	resp := &pb.SubmitJobResponse{JobId: submit(t, admin, blobsJob(12))}
	tc.WaitCommitted(resp.JobId, 4, 30*time.Second)
	before := committedDigests(t, tc, resp.JobId)

	tc.Kill(0)
	tc.Restart(0)
	tc.Leader(5 * time.Second)

	job := tc.WaitJob(resp.JobId, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 12 {
		t.Fatalf("after restart the job ended %v with %d rounds (%s); want SUCCEEDED with 12", job.Status, job.CommittedRounds, job.Reason)
	}
	after := committedDigests(t, tc, resp.JobId)
	for round, d := range before {
		if after[round] != d {
			t.Errorf("round %d: digest %s before the restart, %s after", round, d, after[round])
		}
	}
	t.Logf("%d rounds committed before the restart; attempts after: %d", len(before), len(job.Rounds))
	tc.CheckInvariants()
}

func committedDigests(t *testing.T, tc *coordtest.Cluster, jobID string) map[uint32]string {
	t.Helper()
	job := tc.WaitJob(jobID, 0) // the job as the leader holds it now
	out := map[uint32]string{}
	for _, r := range job.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
			out[r.Number] = r.Digest
		}
	}
	return out
}
