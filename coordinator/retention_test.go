package coordinator_test

import (
	"context"
	"math/rand/v2"
	"strings"
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
	"github.com/accord-fl/accord/store"
)

// Models a job's retain policy does not keep are deleted on every
// coordinator once the job commits past them; pulling one says so; round
// lists mark them; and deleting a finished job (governed like a
// cancellation) removes the rest.
func TestRetentionDeletesModels(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	startFleet(t, tc, 3, fleetHooks{})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 3)
	spec := blobsJob(6)
	spec.Retain = &pb.Retain{Last: 2}
	id := submit(t, admin, spec)
	if job := tc.WaitJob(id, 60*time.Second); job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
		t.Fatalf("job ended %v: %s", job.Status, job.Reason)
	}
	job, _ := tc.Leader(time.Second).FSM().Job(id)
	digest := func(round uint32) string {
		if round == 0 {
			return job.InitialDigest
		}
		for _, r := range job.Rounds {
			if r.Number == round && r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
				return r.Digest
			}
		}
		t.Fatalf("no round %d", round)
		return ""
	}
	// Rounds 5 and 6 are kept; rounds 0–4 go, on every coordinator.
	waitStored := func(round uint32, want bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ok := true
			for _, c := range tc.Nodes {
				if has, _ := c.Store().HasBlob(digest(round)); has != want {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d's model stored: want %v on every coordinator", round, want)
			}
		}
	}
	for r := uint32(0); r <= 4; r++ {
		waitStored(r, false)
	}
	waitStored(5, true)
	waitStored(6, true)
	stream, err := admin.PullModel(t.Context(), &pb.PullModelRequest{JobId: id, Round: 3})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "retain") {
		t.Errorf("pulling a deleted model: %v; want NotFound naming the retain policy", err)
	}
	rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: id, PageSize: 4})
	if err != nil || len(rounds.Rounds) != 4 || rounds.NextPageToken == "" || !rounds.Rounds[0].ModelDeleted {
		t.Fatalf("first page of 4: %v (%v)", rounds, err)
	}
	rest, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: id, PageSize: 4, PageToken: rounds.NextPageToken})
	if err != nil || len(rest.Rounds) != 2 || rest.NextPageToken != "" || rest.Rounds[1].ModelDeleted {
		t.Fatalf("second page: %v (%v)", rest, err)
	}
	tc.WaitConverged(20 * time.Second)
	tc.CheckInvariants()

	// accord job delete: the finished job's last models go too.
	resp, err := admin.DeleteJob(t.Context(), &pb.DeleteJobRequest{JobId: id})
	if err != nil || resp.GetProposal().GetStatus() != "executed" {
		t.Fatalf("deleting the job: %v %v", resp, err)
	}
	waitStored(5, false)
	waitStored(6, false)
	tc.WaitConverged(20 * time.Second)
	tc.CheckInvariants()
}

// BenchmarkRetentionDisk runs a 1,000-round logreg:784-10 job (31 KB a
// model) on three coordinators, with retain {last: 5} and with every model
// kept, and reports each coordinator's data folder on disk afterwards
// (after a retention pass and a value-log collection).
//
//	go test -run '^$' -bench RetentionDisk -benchtime 1x -timeout 30m ./coordinator/
func BenchmarkRetentionDisk(b *testing.B) {
	for _, c := range []struct {
		name   string
		retain *pb.Retain
	}{{"last=5", &pb.Retain{Last: 5}}, {"all", &pb.Retain{All: true}}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				mb := retentionRun(b, 1000, c.retain)
				b.ReportMetric(mb, "MB-per-coordinator")
			}
		})
	}
}

// retentionRun trains rounds rounds of logreg:784-10 on two participants
// with random data, and returns the largest coordinator data folder in MB.
func retentionRun(b *testing.B, rounds uint32, retain *pb.Retain) float64 {
	tc := coordtest.NewCluster(b, 3)
	tc.Leader(10 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range 2 {
		name := "r" + string(rune('a'+i))
		cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "h-" + name})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		ds := &model.Dataset{X: make([]float32, 20*784), Y: make([]int32, 20), Features: 784, Classes: 10}
		for j := range ds.X {
			ds.X[j] = float32(rng.NormFloat64())
		}
		for j := range ds.Y {
			ds.Y[j] = int32(rng.IntN(10))
		}
		p, err := participant.New(participant.Config{Coordinators: tc.Addrs(), Cert: cert, CA: tc.CA.Pool(), Dataset: "random", Train: ds,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { p.Run(ctx) })
	}
	admin := tc.Admin(0, "ops")
	waitConnected(b, admin, 2)
	spec := state.DefaultJobSpec()
	spec.Name, spec.Model, spec.Dataset, spec.Rounds, spec.TargetAccuracy = "disk", "logreg:784-10", "random", rounds, 0
	spec.ParticipantsPerRound, spec.MinParticipants, spec.EvaluateFraction = 2, 2, 0
	ps := spec.ToProto()
	ps.Retain = retain
	id := submit(b, admin, ps)
	if job := tc.WaitJob(id, 20*time.Minute); job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
		b.Fatalf("job ended %v: %s", job.Status, job.Reason)
	}
	tc.WaitConverged(60 * time.Second)
	// Wait for every coordinator's retention pass, then collect its value
	// log now rather than at its next interval.
	for _, c := range tc.Nodes {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			left := 0
			for _, d := range c.FSM().PrunableDigests() {
				if has, _ := c.Store().HasBlob(d); has {
					left++
				}
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s still holds %d models no job keeps", c.Name(), left)
			}
		}
		if _, err := c.Store().CollectGarbage(0.5); err != nil {
			b.Fatal(err)
		}
	}
	var worst int64
	for i := range tc.Nodes {
		worst = max(worst, store.DiskUsage(tc.Cfg(i).DataDir))
	}
	b.Logf("%d rounds, retain %v: largest data folder %.1f MB", rounds, retain, float64(worst)/(1<<20))
	return float64(worst) / (1 << 20)
}
