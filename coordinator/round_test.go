package coordinator

import (
	"errors"
	"testing"
	"time"

	"github.com/accord-fl/accord/aggregate"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func TestRoundRefusesWhatDoesNotBelong(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRound("job1", 3, 2, []string{"a", "b"}, map[string]uint64{"a": 10, "b": 10}, make([]float32, 4), "sha256:base", t0.Add(time.Minute), 1, aggregate.NewFedAvg(4))
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
		{"wrong length", "a", func(h *pb.UpdateHeader) { h.NumParams = 5 }, t0, ErrBadUpdate, false},
		{"no examples", "a", func(h *pb.UpdateHeader) { h.Examples = 0 }, t0, ErrBadUpdate, false},
		{"after the deadline", "a", nil, t0.Add(time.Hour), ErrWrongRound, false},
		{"good", "a", nil, t0, nil, true},
		{"second from the same participant", "a", nil, t0, ErrDuplicate, false},
	}
	for _, c := range cases {
		h := good()
		if c.edit != nil {
			c.edit(h)
		}
		err := r.admit(c.from, h, c.at)
		if c.wantOK {
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if err := r.add(c.from, []float32{1, 2, 3, 4}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v; want %v", c.name, err, c.want)
		}
	}
	if got := r.outcome(t0); got != roundPending {
		t.Errorf("outcome with 1 of 2 before the deadline: %v; want pending", got)
	}
	if got := r.outcome(t0.Add(time.Hour)); got != roundCommit {
		t.Errorf("outcome with 1 of 2 (minimum 1) after the deadline: %v; want commit", got)
	}
}

func TestRoundOutcomes(t *testing.T) {
	t0 := time.Unix(0, 0)
	deadline := t0.Add(time.Second)
	hdr := func(n uint32) *pb.UpdateHeader {
		return &pb.UpdateHeader{Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 1, Examples: 1}
	}
	r := newRound("j", 1, 1, []string{"a", "b", "c"}, map[string]uint64{"a": 1, "b": 1, "c": 1}, []float32{0}, "d", deadline, 2, aggregate.NewFedAvg(1))
	if r.outcome(deadline) != roundAbort {
		t.Error("no updates at the deadline: want abort")
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := r.admit(id, hdr(1), t0); err != nil {
			t.Fatal(err)
		}
		r.add(id, []float32{1})
	}
	if r.outcome(t0) != roundComplete {
		t.Error("every cohort member in: want complete")
	}
}
