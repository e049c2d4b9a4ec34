package coordinator

import (
	"slices"
	"testing"
	"time"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestRetryLeavesOutTheSilent: participants silent in the round's aborted
// attempts (twice, here) are not drawn for its retry, unless too few others
// are connected; other rounds draw from everyone.
func TestRetryLeavesOutTheSilent(t *testing.T) {
	f := NewFSM(nil)
	job := &Job{ID: "j", Status: pb.JobStatus_JOB_STATUS_RUNNING, CommittedRounds: 2}
	f.st.Jobs = map[string]*Job{"j": job}
	connected := []string{"a", "b", "c", "d", "e", "f"}
	for attempt, cohort := range [][]string{{"a", "b", "c"}, {"a", "b", "d"}} {
		job = f.st.Jobs["j"] // each apply publishes a new copy (editJob)
		job.Rounds = append(job.Rounds, &RoundRecord{Number: 3, Attempt: uint32(attempt + 1), Cohort: cohort, Status: pb.RoundStatus_ROUND_STATUS_OPEN})
		// a and b never upload; the others did.
		if err := f.ApplyAbortRound(&AbortRound{JobID: "j", Number: 3, Attempt: uint32(attempt + 1), Reason: "deadline", Silent: []string{"a", "b", "zz-not-in-the-cohort"}}); err != nil {
			t.Fatal(err)
		}
	}
	job = f.st.Jobs["j"]
	if got := job.Rounds[0].Silent; !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("recorded silent %v; want [a b] (only cohort members)", got)
	}
	cases := []struct {
		round uint32
		need  int
		want  []string
	}{
		{3, 3, []string{"c", "d", "e", "f"}}, // the retry leaves a and b out
		{3, 5, connected},                    // too few others: everyone
		{4, 3, connected},                    // the next round: everyone again
	}
	for _, c := range cases {
		if got := job.RetryCandidates(c.round, connected, c.need); !slices.Equal(got, c.want) {
			t.Errorf("round %d, need %d: %v; want %v", c.round, c.need, got, c.want)
		}
	}
}

// TestEvaluationDecidesTheTargetWithHalfTheEvaluators: an evaluation heard
// from fewer than half of those asked does not stop a job at its target.
func TestEvaluationDecidesTheTargetWithHalfTheEvaluators(t *testing.T) {
	asked := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, c := range []struct {
		reported int
		want     bool
	}{{0, false}, {1, false}, {4, false}, {5, true}, {10, true}} {
		e := newEvalCollection("j", 1, "d", asked, time.Now())
		for _, id := range asked[:c.reported] {
			e.got[id] = true
		}
		if got := e.decisive(); got != c.want {
			t.Errorf("%d of %d reported: decisive %v; want %v", c.reported, len(asked), got, c.want)
		}
	}
	// Only one of the 100 wanted could be asked (the others' queues were
	// full), and it reported: not enough to stop the job.
	e := newEvalCollection("j", 1, "d", []string{"a"}, time.Now())
	e.intended, e.got["a"] = 100, true
	if e.decisive() {
		t.Error("1 report of the 100 evaluators wanted stopped the job")
	}
}
