package coordinator_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/participant"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestRoundsCommitAtFirstAttemptWhenAThirdNeverUploads: a third of every
// cohort trains and then never uploads (nor says why), in plain rounds and
// in secure (SecAgg+) ones. The job wants 6 updates a round and expects a
// third to drop: the leader selects 9 (the whole federation here, so each
// cohort holds the same silent three) and closes each round with the first
// 6 — under SecAgg+ the advertise-keys phase closes with the 6 wanted, and
// the threshold is the 9-client cohort's. Every round commits at its first
// attempt, long before its 10-minute deadline: the test's own timeout
// (a minute) could not pass otherwise.
func TestRoundsCommitAtFirstAttemptWhenAThirdNeverUploads(t *testing.T) {
	const n, wanted, rounds = 9, 6, 3
	const deadline = 10 * time.Minute
	for _, mode := range []string{"plain", state.ModeSecAggPlus} {
		t.Run(mode, func(t *testing.T) {
			tc := coordtest.NewCluster(t, 1)
			tc.Leader(5 * time.Second)
			// startFleet names participant i "p" + ('a'+i) + "0": every third
			// is silent.
			silent := map[string]bool{}
			for i := 2; i < n; i += 3 {
				silent["p"+string(rune('a'+i))+"0"] = true
			}
			startFleet(t, tc, n, fleetHooks{beforeUpload: func(name string, task *pb.Task) error {
				if silent[name] {
					return errors.New("test: trained, and never uploads")
				}
				return nil
			}})
			admin := tc.Admin(0, "ops")
			waitConnected(t, admin, n)
			spec := blobsJob(rounds)
			if mode != "plain" {
				spec = secureBlobsJob(rounds, wanted, mode)
			}
			spec.ParticipantsPerRound, spec.MinParticipants, spec.EvaluateFraction = wanted, 2, 0
			spec.ExpectedDropout = 1.0 / 3
			spec.RoundDeadlineMs = uint64(deadline / time.Millisecond)
			began := time.Now()
			jobID := submit(t, admin, spec)
			job := tc.WaitJob(jobID, time.Minute)
			t.Logf("%s: %d rounds in %.2fs", mode, job.CommittedRounds, time.Since(began).Seconds())
			for _, r := range job.Rounds {
				open := "still open"
				if r.ClosedAt > 0 {
					open = fmt.Sprintf("closed %dms after opening, %dms before its deadline", r.ClosedAt-r.OpenedAt, r.Deadline-r.ClosedAt)
				}
				t.Logf("round %d attempt %d %v: cohort %d, contributors %d, silent %v, %s; %s",
					r.Number, r.Attempt, r.Status, len(r.Cohort), len(r.Contributors), r.Silent, open, r.Reason)
			}
			if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != rounds {
				t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
			}
			if len(job.Rounds) != rounds {
				t.Errorf("%d attempts for %d rounds; want each round committed at its first attempt", len(job.Rounds), rounds)
			}
			for _, r := range job.Rounds {
				switch {
				case r.Attempt != 1 || r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED:
					t.Errorf("round %d attempt %d: %v (%s); want committed at attempt 1", r.Number, r.Attempt, r.Status, r.Reason)
				case len(r.Cohort) != n || len(r.Contributors) != wanted:
					t.Errorf("round %d: cohort %d, contributors %d; want %d selected and the %d wanted", r.Number, len(r.Cohort), len(r.Contributors), n, wanted)
				case r.Deadline-r.OpenedAt != deadline.Milliseconds():
					t.Errorf("round %d: deadline %dms after opening; want %s", r.Number, r.Deadline-r.OpenedAt, deadline)
				case r.ClosedAt-r.OpenedAt > (r.Deadline-r.OpenedAt)/10:
					t.Errorf("round %d closed %dms after opening, %dms before its deadline; want it closed in the first tenth", r.Number, r.ClosedAt-r.OpenedAt, r.Deadline-r.ClosedAt)
				}
				for _, id := range r.Contributors {
					if silent[id] {
						t.Errorf("round %d: silent %s contributed", r.Number, id)
					}
				}
				for _, id := range r.Silent {
					if !silent[id] {
						t.Errorf("round %d: %s recorded silent; it uploaded", r.Number, id)
					}
				}
			}
			tc.CheckInvariants()
		})
	}
}

// TestLateUpdateIsRecordedLateNotSilent: a round that wants 3 updates
// selects 4 and commits with the first 3. The fourth member's update,
// which comes after that, is refused with FailedPrecondition and recorded
// late: it is not silent, so the selection weighting does not count the
// round against it.
func TestLateUpdateIsRecordedLateNotSilent(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	var raws []*rawParticipant
	for _, name := range []string{"ann", "ben", "cal", "dot"} {
		raws = append(raws, connectRaw(t, tc, name))
	}
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 4)
	spec := blobsJob(2)
	spec.ParticipantsPerRound, spec.MinParticipants, spec.EvaluateFraction = 3, 3, 0
	spec.ExpectedDropout, spec.RoundDeadlineMs = 0.25, 60_000
	jobID := submit(t, admin, spec)
	cohort, _, task := firstRound(t, tc, jobID, raws)
	if len(cohort) != 4 {
		t.Fatalf("cohort of %d; want all 4 (3 wanted, a quarter expected to drop)", len(cohort))
	}
	upload := func(r *rawParticipant) error {
		h := &pb.UpdateHeader{JobId: jobID, Round: task.Round, Attempt: task.Attempt, BaseModelDigest: task.BaseModelDigest, NumParams: 27, Examples: 100}
		return participant.Upload(t.Context(), r.client, h, make([]float32, 27))
	}
	for _, r := range cohort[:3] {
		if err := upload(r); err != nil {
			t.Fatalf("%s's update: %v", r.name, err)
		}
	}
	tc.WaitCommitted(jobID, 1, 10*time.Second)
	leader := tc.Leader(time.Second)
	record := func() *state.RoundRecord {
		job, err := leader.FSM().Job(jobID)
		if err != nil {
			t.Fatal(err)
		}
		return job.Rounds[0]
	}
	latecomer := cohort[3].name
	if r := record(); !slices.Equal(r.Silent, []string{latecomer}) || len(r.Late) != 0 {
		t.Fatalf("round 1 when it committed: silent %v, late %v; want silent [%s]", r.Silent, r.Late, latecomer)
	}
	err := upload(cohort[3])
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("an update after the round committed: %v; want FailedPrecondition", err)
	}
	t.Logf("the late update: %v", err)
	if r := record(); len(r.Silent) != 0 || !slices.Equal(r.Late, []string{latecomer}) {
		t.Errorf("round 1 after the late update: silent %v, late %v; want late [%s] and nobody silent", r.Silent, r.Late, latecomer)
	}
	rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: jobID, IncludeAborted: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := rounds.Rounds[0]; len(r.Responders) != 3 || !slices.Equal(r.Late, []string{latecomer}) || r.Reason == "" {
		t.Errorf("listed round 1: responders %v, late %v, reason %q; want 3 responders, %s late, why it closed", r.Responders, r.Late, r.Reason, latecomer)
	}
}
