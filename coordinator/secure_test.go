package coordinator_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// killable runs n participants, each with its own context; afterTask may
// return true to kill the participant that just completed the task.
type killable struct {
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
	killed  []string
}

func startKillable(t *testing.T, tc *coordinator.TestCluster, n int, kill func(name string, task *pb.Task) bool) *killable {
	t.Helper()
	k := &killable{cancels: map[string]context.CancelFunc{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		k.mu.Lock()
		for _, c := range k.cancels {
			c()
		}
		k.mu.Unlock()
		wg.Wait()
	})
	for i := range n {
		name := "p" + string(rune('a'+i%26)) + string(rune('0'+i/26))
		cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "hospital-" + name})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cfg := participant.Config{
			Coordinators: tc.Addrs(), Cert: cert, CA: tc.CA.Pool(), Region: "eu", Dataset: "blobs",
			Train: blobs(120, uint64(i)), Validation: blobs(40, uint64(1000+i)),
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			AfterTask: func(task *pb.Task) {
				if kill != nil && kill(name, task) {
					k.mu.Lock()
					k.killed = append(k.killed, name)
					k.mu.Unlock()
					cancel()
				}
			},
		}
		p, err := participant.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		k.mu.Lock()
		k.cancels[name] = cancel
		k.mu.Unlock()
		wg.Go(func() { p.Run(ctx) })
	}
	return k
}

func secureBlobsJob(rounds, perRound uint32, mode string) *pb.JobSpec {
	spec := blobsJob(rounds)
	spec.ParticipantsPerRound = perRound
	spec.SecureAggregation = &pb.SecureAggregation{Mode: mode, Clip: 10, DropoutRate: 0.3, PhaseDeadlineMs: 3000}
	return spec
}

// pullModel downloads a committed model's parameters.
func pullModel(t *testing.T, admin pb.AdminServiceClient, jobID string, round uint32) []float32 {
	t.Helper()
	stream, err := admin.PullModel(t.Context(), &pb.PullModelRequest{JobId: jobID, Round: round})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := protocol.ReceiveBlob(func() ([]byte, error) {
		ch, err := stream.Recv()
		return ch.GetData(), err
	}, "")
	if err != nil {
		t.Fatalf("pulling round %d of %s: %v", round, jobID, err)
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		t.Fatal(err)
	}
	return params
}

// waitConnected waits until n participants are connected to the leader.
func waitConnected(t *testing.T, admin pb.AdminServiceClient, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := admin.ListParticipants(t.Context(), &pb.ListParticipantsRequest{})
		connected := 0
		for _, p := range resp.GetParticipants() {
			if p.Connected {
				connected++
			}
		}
		if err == nil && connected >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d participants connected (%v)", connected, n, err)
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// The same job, with the same seed and participants, commits the same
// models with secure aggregation as without: the masks cancel and the
// unmasked sum is the FedAvg sum up to quantisation (~1e-9 here).
func TestSecureAggregationCommitsTheFedAvgModel(t *testing.T) {
	for _, mode := range []string{coordinator.ModeSecAgg, coordinator.ModeSecAggPlus} {
		t.Run(mode, func(t *testing.T) {
			tc := coordinator.NewTestCluster(t, 3)
			tc.Leader(5 * time.Second)
			startKillable(t, tc, 6, nil)
			admin := pb.NewAdminServiceClient(tc.Dial(1, tc.Credentials(pki.RoleAdmin, "ops")))
			waitConnected(t, admin, 6)
			plain := blobsJob(3)
			plain.ParticipantsPerRound = 6
			plainID := submit(t, admin, plain)
			if job := tc.WaitJob(plainID, 30*time.Second); job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
				t.Fatalf("plain job ended %v: %s", job.Status, job.Reason)
			}
			secureID := submit(t, admin, secureBlobsJob(3, 6, mode))
			job := tc.WaitJob(secureID, 60*time.Second)
			if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 3 {
				t.Fatalf("secure job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
			}
			rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: secureID})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rounds.Rounds {
				if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && (len(r.Contributors) != 6 || r.Examples != 720) {
					t.Errorf("round %d: %d contributors, %d examples; want 6 and 720", r.Number, len(r.Contributors), r.Examples)
				}
			}
			for round := uint32(1); round <= 3; round++ {
				a, b := pullModel(t, admin, plainID, round), pullModel(t, admin, secureID, round)
				if d := maxAbsDiff(a, b); d > 1e-5 {
					t.Errorf("round %d: secure model differs from the plain one by %g", round, d)
				}
			}
			tc.WaitConverged(10 * time.Second)
			tc.CheckInvariants()
		})
	}
}

// Killing 30% of the cohort after they shared their keys leaves the round
// able to commit: survivors reveal the dropped clients' mask keys. Killing
// four of the seven left leaves fewer than the threshold: that round aborts with the
// reason, and the job goes on with who is left.
func TestSecureRoundSurvivesParticipantsKilledAfterSharingKeys(t *testing.T) {
	tc := coordinator.NewTestCluster(t, 3)
	tc.Leader(5 * time.Second)
	const n = 10
	var mu sync.Mutex
	victims := map[uint32]int{2: 3, 4: 4} // round → how many to kill
	killed := map[uint32]int{}
	k := startKillable(t, tc, n, func(name string, task *pb.Task) bool {
		mu.Lock()
		defer mu.Unlock()
		if task.Kind != pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS || task.Attempt != 1 || killed[task.Round] >= victims[task.Round] {
			return false
		}
		killed[task.Round]++
		return true
	})
	admin := pb.NewAdminServiceClient(tc.Dial(0, tc.Credentials(pki.RoleAdmin, "ops")))
	spec := secureBlobsJob(5, n, coordinator.ModeSecAggPlus)
	spec.MinParticipants = 2
	jobID := submit(t, admin, spec)
	job := tc.WaitJob(jobID, 90*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 5 {
		t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
	}
	rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: jobID, IncludeAborted: true})
	if err != nil {
		t.Fatal(err)
	}
	byNumber := map[[2]uint32]*pb.Round{}
	for _, r := range rounds.Rounds {
		byNumber[[2]uint32{r.Number, r.Attempt}] = r
		t.Logf("round %d attempt %d: %v, cohort %d, contributors %d %s", r.Number, r.Attempt, r.Status, len(r.Cohort), len(r.Contributors), r.Reason)
	}
	if r := byNumber[[2]uint32{2, 1}]; r == nil || r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || len(r.Cohort) != n || len(r.Contributors) != n-3 {
		t.Errorf("round 2 (3 of %d killed after sharing keys): %v; want committed by %d", n, r, n-3)
	}
	// Round 4's cohort is the 7 left; killing 4 leaves 3, below its threshold of 4.
	r := byNumber[[2]uint32{4, 1}]
	if r == nil || r.Status != pb.RoundStatus_ROUND_STATUS_ABORTED || !strings.Contains(r.Reason, "secure aggregation") || !strings.Contains(r.Reason, "threshold") {
		t.Errorf("round 4 (4 of 7 killed): %v; want aborted with a secure aggregation reason", r)
	}
	if r := byNumber[[2]uint32{4, 2}]; r == nil || r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED {
		t.Errorf("round 4 attempt 2 did not commit with the participants left: %v", r)
	}
	// Had a dropped client's masks stayed in the sum, round 2's model would
	// be noise; the rounds after it train on from it.
	last := byNumber[[2]uint32{5, 1}]
	if last == nil || last.Evaluation == nil || last.Evaluation.Examples == 0 {
		t.Fatalf("round 5 has no federated evaluation: %v", last)
	}
	if acc := float64(last.Evaluation.Correct) / float64(last.Evaluation.Examples); acc < 0.85 {
		t.Errorf("federated accuracy after 5 rounds %.3f; want ≥ 0.85", acc)
	}
	k.mu.Lock()
	if len(k.killed) != 7 {
		t.Errorf("%d participants killed; want 7", len(k.killed))
	}
	k.mu.Unlock()
	tc.WaitConverged(10 * time.Second)
	tc.CheckInvariants()
}
