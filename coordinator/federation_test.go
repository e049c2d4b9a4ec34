package coordinator_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// blobs is a 3-class problem in 8 dimensions that logistic regression solves.
func blobs(n int, seed uint64) *model.Dataset {
	rng := rand.New(rand.NewPCG(seed, 9))
	const d, classes = 8, 3
	ds := &model.Dataset{X: make([]float32, n*d), Y: make([]int32, n), Features: d, Classes: classes}
	for i := range n {
		c := rng.IntN(classes)
		ds.Y[i] = int32(c)
		for j := range d {
			centre := 0.0
			if j%classes == c {
				centre = 2.5
			}
			ds.X[i*d+j] = float32(centre + rng.NormFloat64())
		}
	}
	return ds
}

// fleetHooks customise the participants startFleet runs. beforeUpload may
// drop a trained update (an error); kill, after a task the participant
// completed, may stop that participant for good (true).
type fleetHooks struct {
	beforeUpload func(name string, t *pb.Task) error
	kill         func(name string, t *pb.Task) bool
	// policy, if set, gives a participant a site policy; declared, if
	// set, the example count it claims (0: its real one).
	policy   func(name string) *participant.Policy
	declared func(name string) uint64
	// flip, if set, makes a participant Byzantine (participant.Config.FlipUpdate);
	// epochDelay slows each of its local epochs (EpochDelay).
	flip       func(name string) float64
	epochDelay func(name string) time.Duration
	// trainExamples, if set, is the size of a participant's training set
	// (default 120).
	trainExamples func(i int) int
	// beforeReport runs before an evaluation report (participant.Config).
	beforeReport func(name string, t *pb.Task) error
	// spread has participant i dial coordinator i mod n first, so that
	// followers relay some of the fleet's streams and messages.
	spread bool
	// secAggPartBytes is participant.Config.SecAggPartBytes.
	secAggPartBytes int
	// afterTask runs after each task a participant completed (for a
	// training task: once its update was accepted).
	afterTask func(name string, t *pb.Task)
}

// fleet is the participants startFleet runs.
type fleet struct {
	mu     sync.Mutex
	killed []string
}

// startFleet runs n participant daemons, each with its own context, against
// the cluster until the test ends.
func startFleet(t testing.TB, tc *coordtest.Cluster, n int, hooks fleetHooks) *fleet {
	t.Helper()
	f := &fleet{}
	ctx, stopAll := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stopAll(); wg.Wait() })
	for i := range n {
		name := "p" + string(rune('a'+i%26)) + string(rune('0'+i/26))
		cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "hospital-" + name})
		if err != nil {
			t.Fatal(err)
		}
		pctx, kill := context.WithCancel(ctx)
		examples := 120
		if hooks.trainExamples != nil {
			examples = hooks.trainExamples(i)
		}
		addrs := tc.Addrs()
		if hooks.spread {
			k := i % len(addrs)
			addrs = slices.Concat(addrs[k:], addrs[:k])
		}
		cfg := participant.Config{
			Coordinators: addrs, Cert: cert, CA: tc.CA.Pool(), Region: "eu", Dataset: "blobs",
			Train: blobs(examples, uint64(i)), Validation: blobs(40, uint64(1000+i)),
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, SecAggPartBytes: hooks.secAggPartBytes,
		}
		if hooks.policy != nil {
			cfg.Policy = hooks.policy(name)
		}
		if hooks.declared != nil {
			cfg.DeclaredExamples = hooks.declared(name)
		}
		if hooks.flip != nil {
			cfg.FlipUpdate = hooks.flip(name)
		}
		if hooks.epochDelay != nil {
			cfg.EpochDelay = hooks.epochDelay(name)
		}
		if hooks.beforeUpload != nil {
			cfg.BeforeUpload = func(task *pb.Task) error { return hooks.beforeUpload(name, task) }
		}
		if hooks.beforeReport != nil {
			cfg.BeforeReport = func(task *pb.Task) error { return hooks.beforeReport(name, task) }
		}
		if hooks.kill != nil || hooks.afterTask != nil {
			cfg.AfterTask = func(task *pb.Task) {
				if hooks.afterTask != nil {
					hooks.afterTask(name, task)
				}
				if hooks.kill != nil && hooks.kill(name, task) {
					f.mu.Lock()
					f.killed = append(f.killed, name)
					f.mu.Unlock()
					kill()
				}
			}
		}
		p, err := participant.New(cfg)
		if err != nil {
			kill()
			t.Fatal(err)
		}
		wg.Go(func() { defer kill(); p.Run(pctx) })
	}
	return f
}

func blobsJob(rounds uint32) *pb.JobSpec {
	spec := state.DefaultJobSpec()
	spec.Name, spec.Model, spec.Dataset = "blobs", "logreg:8-3", "blobs"
	spec.Rounds, spec.TargetAccuracy = rounds, 0
	spec.ParticipantsPerRound, spec.MinParticipants = 3, 2
	spec.RoundDeadline = state.Duration(5 * time.Second)
	return spec.ToProto()
}

func TestFederationTrainsToTheEnd(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	startFleet(t, tc, 6, fleetHooks{})
	admin := tc.Admin(0, "ops")
	resp := &pb.SubmitJobResponse{JobId: submit(t, admin, blobsJob(5))}
	job := tc.WaitJob(resp.JobId, 30*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 5 {
		t.Fatalf("job ended %v with %d rounds (%s); want SUCCEEDED with 5", job.Status, job.CommittedRounds, job.Reason)
	}
	rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: resp.JobId})
	if err != nil {
		t.Fatal(err)
	}
	last := rounds.Rounds[len(rounds.Rounds)-1]
	if last.Evaluation == nil || last.Evaluation.Examples == 0 {
		t.Fatalf("round 5 has no federated evaluation: %+v", last)
	}
	if acc := float64(last.Evaluation.Correct) / float64(last.Evaluation.Examples); acc < 0.85 {
		t.Errorf("federated accuracy after 5 rounds %.3f; want ≥ 0.85", acc)
	}
	tc.CheckInvariants()
}

// submit submits a job, retrying while the cluster has no leader it knows
// (a follower answers Unavailable until it has heard from one).
func submit(t testing.TB, admin pb.AdminServiceClient, spec *pb.JobSpec) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := admin.SubmitJob(context.Background(), &pb.SubmitJobRequest{Spec: spec})
		if err == nil {
			return resp.JobId
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("submitting job: %v", err)
		}
	}
}
