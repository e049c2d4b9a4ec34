package coordinator_test

import (
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestStoppedCoordinatorCatchesUpBySnapshot stops a follower for 20 rounds,
// compacts the leader's log past it, and restarts it: it is brought up to
// date with InstallSnapshot, then fetches every model it missed.
func TestStoppedCoordinatorCatchesUpBySnapshot(t *testing.T) {
	tc := coordtest.NewCluster(t, 3, func(c *coordinator.Config) {
		c.SnapshotThreshold, c.TrailingLogs = 8, 4
	})
	leader := tc.Leader(10 * time.Second)
	startFleet(t, tc, 6, fleetHooks{})
	admin := tc.Admin(tc.Index(leader), "ops")
	resp := &pb.SubmitJobResponse{JobId: submit(t, admin, blobsJob(30))}
	tc.WaitCommitted(resp.JobId, 2, 30*time.Second)
	stopped := (tc.Index(tc.Leader(time.Second)) + 1) % 3
	tc.Kill(stopped)
	tc.WaitCommitted(resp.JobId, 22, 60*time.Second) // 20 rounds without it
	for i, c := range tc.Nodes {
		if c != nil {
			if err := c.Snapshot(); err != nil {
				t.Fatalf("snapshot on c%d: %v", i+1, err)
			}
		}
	}
	restarted := tc.Restart(stopped)
	job := tc.WaitJob(resp.JobId, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
		t.Fatalf("job ended %v (%s)", job.Status, job.Reason)
	}
	tc.WaitConverged(30 * time.Second) // equal FSMs, every committed model held by every node
	if restarted.InstalledSnapshots() == 0 {
		t.Error("the restarted coordinator caught up without a snapshot; the test did not exercise InstallSnapshot")
	}
	t.Logf("restarted coordinator installed %d snapshot(s) from the leader and holds all %d models", restarted.InstalledSnapshots(), job.CommittedRounds)
}
