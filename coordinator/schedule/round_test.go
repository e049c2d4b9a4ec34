package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func TestRoundRefusesWhatDoesNotBelong(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRound("job1", 3, 2, []string{"a", "b"}, map[string]uint64{"a": 10, "b": 10}, 4, "sha256:base", t0.Add(time.Minute), 1, aggregate.NewFedAvg(4))
	good := func() *pb.UpdateHeader {
		return &pb.UpdateHeader{JobId: "job1", Round: 3, Attempt: 2, BaseModelDigest: "sha256:base", NumParams: 4, Examples: 10}
	}
	cases := []struct {
		name   string
		from   string
		edit   func(*pb.UpdateHeader)
		at     time.Time
		want   error
		wantOK bool
	}{
		{"outside the cohort", "mallory", nil, t0, ErrNotInCohort, false},
		{"another round", "a", func(h *pb.UpdateHeader) { h.Round = 2 }, t0, ErrWrongRound, false},
		{"another attempt", "a", func(h *pb.UpdateHeader) { h.Attempt = 1 }, t0, ErrWrongRound, false},
		{"another base model", "a", func(h *pb.UpdateHeader) { h.BaseModelDigest = "sha256:old" }, t0, ErrWrongRound, false},
		{"wrong length", "a", func(h *pb.UpdateHeader) { h.NumParams = 5 }, t0, state.ErrBadUpdate, false},
		{"no examples", "a", func(h *pb.UpdateHeader) { h.Examples = 0 }, t0, state.ErrBadUpdate, false},
		{"after the deadline", "a", nil, t0.Add(time.Hour), ErrWrongRound, false},
		{"good", "a", nil, t0, nil, true},
		{"second from the same participant", "a", nil, t0, ErrDuplicate, false},
	}
	for _, c := range cases {
		h := good()
		if c.edit != nil {
			c.edit(h)
		}
		err := r.Admit(c.from, h, c.at)
		if c.wantOK {
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if err := r.Add(c.from, []float32{1, 2, 3, 4}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v; want %v", c.name, err, c.want)
		}
	}
	if got, _ := r.outcome(t0); got != roundPending {
		t.Errorf("outcome with 1 of 2 before the deadline: %v; want pending", got)
	}
	if got, _ := r.outcome(t0.Add(time.Hour)); got != roundCommit {
		t.Errorf("outcome with 1 of 2 (minimum 1) after the deadline: %v; want commit", got)
	}
}

func TestRoundOutcomes(t *testing.T) {
	t0 := time.Unix(0, 0)
	deadline := t0.Add(time.Second)
	hdr := func(n uint32) *pb.UpdateHeader {
		return &pb.UpdateHeader{Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 1, Examples: 1}
	}
	r := NewRound("j", 1, 1, []string{"a", "b", "c"}, map[string]uint64{"a": 1, "b": 1, "c": 1}, 1, "d", deadline, 2, aggregate.NewFedAvg(1))
	if got, _ := r.outcome(deadline); got != roundAbort {
		t.Error("no updates at the deadline: want abort")
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := r.Admit(id, hdr(1), t0); err != nil {
			t.Fatal(err)
		}
		r.Add(id, []float32{1})
	}
	if got, _ := r.outcome(t0); got != roundComplete {
		t.Error("every cohort member in: want complete")
	}
}

// TestRoundClosesEarly: a round closes once the updates it wants arrived
// (later ones are refused as late, and the late are not silent), or once
// stragglers held it for the straggler factor times its median member's
// time (committing with enough updates, aborting with too few), and not
// before the local time budget is added; without the rules it waits for
// its deadline. Times are a fake clock: seconds after the round opened.
func TestRoundClosesEarly(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	deadline := at(600)
	type arrival struct {
		from string
		at   float64
	}
	cases := []struct {
		name       string
		cohort     int
		wanted     int
		minUpdates int
		straggler  float64
		budget     time.Duration
		arrivals   []arrival
		// pendingAt: still pending then (negative: no check); closesAt:
		// closes then with want.
		pendingAt, closesAt float64
		want                roundOutcome
		why                 string
		silent              []string
	}{
		{name: "the updates wanted arrived", cohort: 9, wanted: 6, minUpdates: 2, straggler: 3,
			arrivals:  []arrival{{"p0", 1}, {"p1", 1}, {"p2", 1}, {"p3", 2}, {"p4", 2}, {"p5", 2.5}},
			pendingAt: -1, closesAt: 2.5, want: roundCommit, why: "the 6 updates wanted arrived", silent: []string{"p6", "p7", "p8"}},
		{name: "stragglers past 3× the median: commit", cohort: 4, minUpdates: 2, straggler: 3,
			arrivals:  []arrival{{"p0", 1}, {"p1", 2}},
			pendingAt: 5.9, closesAt: 6, want: roundCommit, why: "stragglers", silent: []string{"p2", "p3"}},
		{name: "stragglers past 3× the median, too few: abort", cohort: 4, minUpdates: 3, straggler: 3,
			arrivals:  []arrival{{"p0", 1}, {"p1", 2}},
			pendingAt: 5.9, closesAt: 6, want: roundAbort, why: "stragglers", silent: []string{"p2", "p3"}},
		{name: "never before the least wait", cohort: 4, minUpdates: 2, straggler: 3,
			arrivals:  []arrival{{"p0", 0.1}, {"p1", 0.2}},
			pendingAt: 1.9, closesAt: 2, want: roundCommit, why: "stragglers", silent: []string{"p2", "p3"}},
		{name: "the local time budget is added", cohort: 4, minUpdates: 2, straggler: 3, budget: 10 * time.Second,
			arrivals:  []arrival{{"p0", 1}, {"p1", 2}},
			pendingAt: 15.9, closesAt: 16, want: roundCommit, why: "stragglers", silent: []string{"p2", "p3"}},
		{name: "fewer than half answered: no median, deadline", cohort: 5, minUpdates: 2, straggler: 3,
			arrivals:  []arrival{{"p0", 1}, {"p1", 2}},
			pendingAt: 599, closesAt: 600, want: roundCommit, why: "deadline", silent: []string{"p2", "p3", "p4"}},
		{name: "rules off: deadline", cohort: 9, minUpdates: 2,
			arrivals:  []arrival{{"p0", 1}, {"p1", 1}, {"p2", 1}, {"p3", 2}, {"p4", 2}, {"p5", 2.5}},
			pendingAt: 599, closesAt: 600, want: roundCommit, why: "deadline", silent: []string{"p6", "p7", "p8"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cohort []string
			weights := map[string]uint64{}
			for i := range c.cohort {
				id := fmt.Sprintf("p%d", i)
				cohort = append(cohort, id)
				weights[id] = 1
			}
			r := NewRound("j", 1, 1, cohort, weights, 1, "d", deadline, c.minUpdates, aggregate.NewFedAvg(1))
			r.Opened, r.Wanted, r.straggler, r.budget = t0, c.wanted, c.straggler, c.budget
			for _, a := range c.arrivals {
				if err := r.Admit(a.from, &pb.UpdateHeader{Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 1, Examples: 1}, at(a.at)); err != nil {
					t.Fatal(err)
				}
				if err := r.Add(a.from, []float32{1}); err != nil {
					t.Fatal(err)
				}
				if got, why := r.outcome(at(a.at)); a.at < c.closesAt && got != roundPending {
					t.Fatalf("after %s's update at %gs: %v (%s); want pending", a.from, a.at, got, why)
				}
			}
			if got, why := r.outcome(at(c.pendingAt)); c.pendingAt >= 0 && got != roundPending {
				t.Errorf("at %gs: %v (%s); want pending", c.pendingAt, got, why)
			}
			got, why := r.outcome(at(c.closesAt))
			if got != c.want || !strings.Contains(why, c.why) {
				t.Errorf("at %gs: %v (%s); want %v (%s)", c.closesAt, got, why, c.want, c.why)
			}
			if c.wanted > 0 {
				// One more, after the round had what it wanted: refused as
				// late, and not silent.
				late := cohort[len(c.arrivals)]
				err := r.Admit(late, &pb.UpdateHeader{Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 1, Examples: 1}, at(c.closesAt))
				if !errors.Is(err, ErrRoundClosed) {
					t.Errorf("an update after the wanted ones: %v; want ErrRoundClosed", err)
				}
				c.silent = slices.DeleteFunc(c.silent, func(id string) bool { return id == late })
			}
			if got := r.Silent(); !slices.Equal(got, c.silent) {
				t.Errorf("silent %v; want %v", got, c.silent)
			}
		})
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
		e := newEvalCollection(1, "d", asked, time.Now())
		for _, id := range asked[:c.reported] {
			e.Got[id] = true
		}
		if got := e.decisive(); got != c.want {
			t.Errorf("%d of %d reported: decisive %v; want %v", c.reported, len(asked), got, c.want)
		}
	}
	// Only one of the 100 wanted could be asked (the others' queues were
	// full), and it reported: not enough to stop the job.
	e := newEvalCollection(1, "d", []string{"a"}, time.Now())
	e.intended, e.Got["a"] = 100, true
	if e.decisive() {
		t.Error("1 report of the 100 evaluators wanted stopped the job")
	}
}
