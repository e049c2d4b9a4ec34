package coordinator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// optimizerState reads the server optimiser's state committed with a round
// from a coordinator's store.
func optimizerState(t *testing.T, c *coordinator.Coordinator, rec *state.RoundRecord) *aggregate.OptimizerState {
	t.Helper()
	if rec.OptimizerDigest == "" {
		t.Fatalf("round %d committed no optimiser state", rec.Number)
	}
	blob, err := c.Store().GetBlob(rec.OptimizerDigest)
	if err != nil {
		t.Fatalf("round %d's optimiser state: %v", rec.Number, err)
	}
	st := &aggregate.OptimizerState{}
	if err := st.UnmarshalBinary(blob); err != nil {
		t.Fatal(err)
	}
	return st
}

// storedModel reads a committed model from a coordinator's store.
func storedModel(t *testing.T, c *coordinator.Coordinator, digest string) []float32 {
	t.Helper()
	blob, err := c.Store().GetBlob(digest)
	if err != nil {
		t.Fatal(err)
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		t.Fatal(err)
	}
	return params
}

// TestServerOptimizerStateSurvivesLeaderKill: FedAdam's moments are part of
// the replicated job state. After the leader is killed, the new one goes on
// from the moments the last committed round left, not from zero: every
// committed round, the one after the failover included, is exactly one
// FedAdam step from the round before (its Δ recovered from the first
// moment).
func TestServerOptimizerStateSurvivesLeaderKill(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	startFleet(t, tc, 6, fleetHooks{})
	admin := tc.Admin(1, "ops")
	spec := blobsJob(8)
	spec.Strategy = "fedadam"
	spec.Server = &pb.ServerOptimizer{Lr: 0.05, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}
	spec.Retain = &pb.Retain{All: true}
	jobID := submit(t, admin, spec)
	tc.WaitCommitted(jobID, 3, 30*time.Second)
	old := tc.Index(tc.Leader(time.Second))
	tc.Kill(old)
	leader := tc.Leader(10 * time.Second)
	t.Logf("killed leader c%d after round 3; c%d leads", old+1, tc.Index(leader)+1)
	job := tc.WaitJob(jobID, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 8 {
		t.Fatalf("job ended %v with %d rounds (%s); want SUCCEEDED with 8", job.Status, job.CommittedRounds, job.Reason)
	}
	tc.WaitConverged(10 * time.Second)

	opt := state.JobSpecFromProto(spec).Optimizer()
	var prev *aggregate.OptimizerState
	base := storedModel(t, leader, job.InitialDigest)
	for n := uint32(1); n <= 8; n++ {
		var rec *state.RoundRecord
		for _, r := range job.Rounds {
			if r.Number == n && r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
				rec = r
			}
		}
		st := optimizerState(t, leader, rec)
		// m_n = β1·m_{n−1} + (1−β1)·Δ_n gives Δ_n; one step from round
		// n−1's model and state must give round n's.
		delta := make([]float32, len(st.M))
		for i := range delta {
			m0 := 0.0
			if prev != nil {
				m0 = float64(prev.M[i])
			}
			delta[i] = float32((float64(st.M[i]) - opt.Beta1*m0) / (1 - opt.Beta1))
		}
		params, next, err := opt.Step(base, delta, prev)
		if err != nil {
			t.Fatal(err)
		}
		got := storedModel(t, leader, rec.Digest)
		if d := maxAbsDiff(params, got); d > 1e-4 {
			t.Fatalf("round %d is not one FedAdam step from round %d: models differ by %g", n, n-1, d)
		}
		if d := maxAbsDiff(next.V, st.V); d > 1e-6 {
			t.Fatalf("round %d's second moment is not one step from round %d's: differs by %g", n, n-1, d)
		}
		base, prev = got, st
	}
}

// TestStragglerSendsPartialWork: with a local time budget, a participant
// too slow to finish its epochs sends the epochs it completed, and the
// round counts its examples by the share of the work it did.
func TestStragglerSendsPartialWork(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	// pa0 takes ≥ 1 s an epoch; the budget is 1.5 s, so it stops after 2 of
	// 4 epochs (half a second of slack on a loaded machine). The others
	// finish theirs in milliseconds.
	startFleet(t, tc, 3, fleetHooks{epochDelay: func(name string) time.Duration {
		if name == "pa0" {
			return time.Second
		}
		return 0
	}})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 3)
	spec := blobsJob(2)
	spec.ParticipantsPerRound, spec.MinParticipants, spec.LocalEpochs = 3, 3, 4
	spec.LocalTimeBudgetMs, spec.RoundDeadlineMs = 1500, 60_000
	jobID := submit(t, admin, spec)
	job := tc.WaitJob(jobID, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
		t.Fatalf("job ended %v: %s", job.Status, job.Reason)
	}
	for _, r := range job.Rounds {
		// 120 + 120 + 120 × 2/4.
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && (len(r.Contributors) != 3 || r.Examples != 300) {
			t.Errorf("round %d: %d contributors standing for %d examples; want 3 and 300 (the straggler's half)", r.Number, len(r.Contributors), r.Examples)
		}
	}
}

// TestDifferentialPrivacyIsAccounted: central and distributed DP jobs
// report ε after every round, ε grows round by round, and max_epsilon
// stops the job before a round would spend more.
func TestDifferentialPrivacyIsAccounted(t *testing.T) {
	for _, mode := range []string{state.DPCentral, state.DPDistributed} {
		t.Run(mode, func(t *testing.T) {
			tc := coordtest.NewCluster(t, 1)
			tc.Leader(5 * time.Second)
			startFleet(t, tc, 6, fleetHooks{})
			admin := tc.Admin(0, "ops")
			waitConnected(t, admin, 6)
			spec := blobsJob(50)
			if mode == state.DPDistributed {
				spec = secureBlobsJob(50, 5, state.ModeSecAggPlus)
			}
			spec.ParticipantsPerRound, spec.MinParticipants = 5, 3
			// No over-selection (secure aggregation's dropout_rate would ask
			// for it): the cohort, and so the sampling rate, stays 5 of 6.
			spec.MaxOverSelection = 1
			spec.Dp = &pb.DifferentialPrivacy{Mode: mode, NoiseMultiplier: 3, Clip: 1, Delta: 1e-5, MaxEpsilon: 3}
			jobID := submit(t, admin, spec)
			job := tc.WaitJob(jobID, 120*time.Second)
			if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || !strings.Contains(job.Reason, "privacy budget") {
				t.Fatalf("job ended %v: %q; want SUCCEEDED, stopped by its privacy budget", job.Status, job.Reason)
			}
			if job.CommittedRounds == 0 || job.CommittedRounds >= 50 {
				t.Fatalf("%d rounds committed; want the budget to stop the job early", job.CommittedRounds)
			}
			last := 0.0
			for _, r := range job.Rounds {
				if r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED {
					continue
				}
				if !(r.Epsilon > last) || r.Epsilon > 3 || r.SamplingRate != 5.0/6 {
					t.Fatalf("round %d: ε %v after %v, sampling rate %v; want ε growing to at most 3 at q = 5/6", r.Number, r.Epsilon, last, r.SamplingRate)
				}
				last = r.Epsilon
			}
			got, err := admin.GetJob(t.Context(), &pb.GetJobRequest{JobId: jobID})
			if err != nil {
				t.Fatal(err)
			}
			if p := got.Privacy; p == nil || p.Epsilon != last || p.Steps != uint64(job.CommittedRounds) || p.Delta != 1e-5 {
				t.Fatalf("job privacy %+v; want ε %v after %d rounds at δ 1e-5", p, last, job.CommittedRounds)
			}
			t.Logf("%s DP: %d rounds, ε = %.3f (order %g): %s", mode, job.CommittedRounds, got.Privacy.Epsilon, got.Privacy.Order, job.Reason)
			tc.CheckInvariants()
		})
	}
}

// TestGroupedSecureAggregation: a cohort split into three groups by
// region runs secure aggregation in each, and the median of the group
// means is committed; every participant contributes, none unmasked.
func TestGroupedSecureAggregation(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	startFleet(t, tc, 9, fleetHooks{})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 9)
	spec := secureBlobsJob(3, 9, state.ModeSecAgg)
	spec.MinParticipants = 9
	spec.Aggregation = &pb.Aggregation{Rule: "median", Groups: 3}
	jobID := submit(t, admin, spec)
	job := tc.WaitJob(jobID, 90*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 3 {
		t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
	}
	for _, r := range job.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && len(r.Contributors) != 9 {
			t.Errorf("round %d: %d contributors; want 9", r.Number, len(r.Contributors))
		}
	}
	rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: jobID})
	if err != nil {
		t.Fatal(err)
	}
	last := rounds.Rounds[len(rounds.Rounds)-1]
	if e := last.Evaluation; e == nil || float64(e.Correct)/float64(e.Examples) < 0.85 {
		t.Errorf("federated evaluation after 3 grouped rounds: %+v; want ≥ 85%%", e)
	}
}
