package state

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// committedWith is a committed attempt of a cohort with its silent members.
func committedWith(number uint32, cohort, silent []string) *RoundRecord {
	return &RoundRecord{Number: number, Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_COMMITTED, Cohort: cohort, Silent: silent}
}

// names returns n participant names with a prefix.
func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// TestCohortSize: the leader selects ⌈wanted / (1 − rate)⌉ from the job's
// expected dropout, its secure_aggregation.dropout_rate, or the rate it
// observed, within max_over_selection × wanted and what is available.
func TestCohortSize(t *testing.T) {
	nine := names("p", 9)
	// Three of nine silent in each recent attempt: a third observed.
	observed := []*RoundRecord{committedWith(1, nine, nine[:3]), committedWith(2, nine, nine[3:6])}
	// A leader change records no answers: it does not count.
	leaderChange := &RoundRecord{Number: 3, Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_ABORTED, Cohort: nine, Reason: "leader change"}
	cases := []struct {
		name              string
		spec              JobSpec
		rounds            []*RoundRecord
		wanted, available int
		want              int
	}{
		{"no dropout expected or seen", JobSpec{}, nil, 10, 100, 10},
		{"expected_dropout 0.3", JobSpec{ExpectedDropout: 0.3}, nil, 10, 100, 15},
		{"a third", JobSpec{ExpectedDropout: 1.0 / 3}, nil, 6, 100, 9},
		{"bounded by max_over_selection (default 2)", JobSpec{ExpectedDropout: 0.8}, nil, 10, 100, 20},
		{"max_over_selection 1.2", JobSpec{ExpectedDropout: 0.5, MaxOverSelection: 1.2}, nil, 10, 100, 12},
		{"max_over_selection 1: none", JobSpec{ExpectedDropout: 0.5, MaxOverSelection: 1}, nil, 10, 100, 10},
		{"too few connected", JobSpec{ExpectedDropout: 0.3}, nil, 10, 12, 12},
		{"secure aggregation's dropout_rate", JobSpec{SecureAggregation: SecureAggregation{Mode: ModeSecAggPlus, DropoutRate: 0.3}}, nil, 10, 100, 15},
		{"expected_dropout over dropout_rate", JobSpec{ExpectedDropout: 0.5, SecureAggregation: SecureAggregation{Mode: ModeSecAggPlus, DropoutRate: 0.3}}, nil, 10, 100, 20},
		{"observed in recent attempts", JobSpec{}, observed, 6, 100, 9},
		{"a leader change is not an observation", JobSpec{}, append(slices.Clone(observed), leaderChange), 6, 100, 9},
	}
	for _, c := range cases {
		j := &Job{Spec: c.spec, Rounds: c.rounds}
		if got := j.CohortSize(c.wanted, c.available); got != c.want {
			t.Errorf("%s: %d wanted of %d: cohort %d; want %d", c.name, c.wanted, c.available, got, c.want)
		}
	}
}

// TestSelectionWeights: a participant chosen c times in the job's recent
// attempts and silent in m of them weighs (1 + c − m) / (1 + c), at least
// a tenth; late is not silent; the ten attempts before the latest count
// (the latest's late updates may still be coming).
func TestSelectionWeights(t *testing.T) {
	j := &Job{}
	if w := j.SelectionWeights(); w != nil {
		t.Fatalf("no history: weights %v; want none", w)
	}
	// Twelve attempts; the window is the 2nd to the 11th. "gone" silent in
	// all of them; "flaky" chosen in the first four and silent in the
	// first two (in the window: chosen 3 times, silent once); "slow"
	// always late (never silent); "old" silent only in the first, and
	// "new" only in the latest: both outside the window.
	for n := range uint32(12) {
		cohort := []string{"gone", "slow", "steady"}
		silent := []string{"gone"}
		if n < 4 {
			cohort = append(cohort, "flaky")
			if n < 2 {
				silent = append(silent, "flaky")
			}
		}
		if n == 0 {
			cohort, silent = append(cohort, "old"), append(silent, "old")
		}
		if n == 11 {
			cohort, silent = append(cohort, "new"), append(silent, "new")
		}
		r := committedWith(n+1, cohort, silent)
		r.Late = []string{"slow"}
		j.Rounds = append(j.Rounds, r)
	}
	got := j.SelectionWeights()
	want := map[string]float64{"gone": MinSelectionWeight, "flaky": 3.0 / 4}
	if len(got) != len(want) {
		t.Fatalf("weights %v; want %v (everyone else 1)", got, want)
	}
	for id, w := range want {
		if math.Abs(got[id]-w) > 1e-12 {
			t.Errorf("%s weighs %v; want %v", id, got[id], w)
		}
	}
}

// TestRecordLate: a participant silent in a closed attempt whose update
// then came is moved to its late members once; one that was not silent
// there is refused.
func TestRecordLate(t *testing.T) {
	f := NewFSM(nil)
	job := &Job{ID: "j", Status: pb.JobStatus_JOB_STATUS_RUNNING, CommittedRounds: 1,
		Rounds: []*RoundRecord{committedWith(1, []string{"a", "b", "c"}, []string{"b", "c"})}}
	f.st.Jobs = map[string]*Job{"j": job}
	for _, c := range []struct {
		who    string
		number uint32
		want   error
	}{
		{"b", 1, nil},
		{"b", 1, nil}, // again: no change
		{"a", 1, ErrConflict},
		{"c", 2, ErrConflict}, // no such closed attempt
	} {
		if err := f.applyRecordLate(&RecordLate{JobID: "j", Number: c.number, Attempt: 1, Participant: c.who}); !errors.Is(err, c.want) {
			t.Errorf("%s late in round %d: %v; want %v", c.who, c.number, err, c.want)
		}
	}
	if r := f.st.Jobs["j"].Rounds[0]; !slices.Equal(r.Silent, []string{"c"}) || !slices.Equal(r.Late, []string{"b"}) {
		t.Errorf("silent %v, late %v; want [c] and [b]", r.Silent, r.Late)
	}
}

// TestJobSpecOverSelectionFields: expected_dropout, max_over_selection and
// straggler_factor are checked, named in refusals, and survive the wire.
func TestJobSpecOverSelectionFields(t *testing.T) {
	cases := []struct {
		name string
		edit func(*JobSpec)
		want string // "" accepts
	}{
		{"defaults", func(*JobSpec) {}, ""},
		{"a third expected to drop, at most 1.5×, stragglers at 4× the median", func(s *JobSpec) {
			s.ExpectedDropout, s.MaxOverSelection, s.StragglerFactor = 1.0/3, 1.5, 4
		}, ""},
		{"straggler rule off", func(s *JobSpec) { s.StragglerFactor = -1 }, ""},
		{"expected_dropout of 1", func(s *JobSpec) { s.ExpectedDropout = 1 }, "expected_dropout"},
		{"negative expected_dropout", func(s *JobSpec) { s.ExpectedDropout = -0.1 }, "expected_dropout"},
		{"NaN expected_dropout", func(s *JobSpec) { s.ExpectedDropout = math.NaN() }, "expected_dropout"},
		{"max_over_selection below 1", func(s *JobSpec) { s.MaxOverSelection = 0.5 }, "max_over_selection"},
		{"max_over_selection above 10", func(s *JobSpec) { s.MaxOverSelection = 11 }, "max_over_selection"},
		{"straggler_factor below 1", func(s *JobSpec) { s.StragglerFactor = 0.5 }, "straggler_factor"},
		{"infinite straggler_factor", func(s *JobSpec) { s.StragglerFactor = math.Inf(1) }, "straggler_factor"},
	}
	for _, c := range cases {
		s := DefaultJobSpec()
		c.edit(&s)
		err := s.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (!errors.Is(err, ErrBadJobSpec) || err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want an error naming %q", c.name, err, c.want)
		case err == nil:
			back := JobSpecFromProto(s.ToProto())
			if back.ExpectedDropout != s.ExpectedDropout || back.MaxOverSelection != s.MaxOverSelection || back.StragglerFactor != s.StragglerFactor {
				t.Errorf("%s: after the wire %+v", c.name, back)
			}
		}
	}
	if f := (JobSpec{StragglerFactor: -1}).EffectiveStragglerFactor(); f != 0 {
		t.Errorf("straggler_factor -1 gives factor %v; want 0 (off)", f)
	}
}
