package state

import (
	"slices"
	"testing"

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
		if err := f.applyAbortRound(&AbortRound{JobID: "j", Number: 3, Attempt: uint32(attempt + 1), Reason: "deadline", Silent: []string{"a", "b", "zz-not-in-the-cohort"}}); err != nil {
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
