package coordinator

import (
	"testing"
	"time"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func TestAvailabilityAt(t *testing.T) {
	day := &Availability{TimeZone: "Asia/Tokyo", FromHour: 9, ToHour: 17}
	night := &Availability{TimeZone: "Europe/Berlin", FromHour: 22, ToHour: 6}
	cases := []struct {
		a    *Availability
		utc  string
		want bool
	}{
		{nil, "2026-11-30T03:00:00Z", true},
		{day, "2026-11-30T00:00:00Z", true},   // 09:00 in Tokyo
		{day, "2026-11-30T07:59:00Z", true},   // 16:59
		{day, "2026-11-30T08:00:00Z", false},  // 17:00
		{day, "2026-11-29T23:59:00Z", false},  // 08:59
		{night, "2026-11-30T21:00:00Z", true}, // 22:00 in Berlin (CET)
		{night, "2026-11-30T04:59:00Z", true}, // 05:59
		{night, "2026-11-30T05:00:00Z", false},
		{night, "2026-11-30T12:00:00Z", false},
	}
	for _, c := range cases {
		at, _ := time.Parse(time.RFC3339, c.utc)
		if got := c.a.at(at); got != c.want {
			t.Errorf("%+v at %s: %v, want %v", c.a, c.utc, got, c.want)
		}
	}
}

func TestAvailabilityFromProtoRefusesNonsense(t *testing.T) {
	for _, a := range []*pb.Availability{
		{TimeZone: "Mars/Olympus", FromHour: 8, ToHour: 18},
		{TimeZone: "Europe/Berlin", FromHour: 8, ToHour: 8},
		{TimeZone: "Europe/Berlin", FromHour: 25, ToHour: 3},
	} {
		if _, err := availabilityFromProto(a); err == nil {
			t.Errorf("%v accepted", a)
		}
	}
}

// TestRoundTimeSkipsToWorkingHours: a simulated clock moves on, a step at
// a time, to the first time enough participants work.
func TestRoundTimeSkipsToWorkingHours(t *testing.T) {
	c := &Coordinator{fsm: NewFSM(nil)}
	c.fsm.st.Participants = map[string]*Participant{
		"tokyo-1":  {ID: "tokyo-1", Availability: &Availability{TimeZone: "Asia/Tokyo", FromHour: 9, ToHour: 17}},
		"berlin-1": {ID: "berlin-1", Availability: &Availability{TimeZone: "Europe/Berlin", FromHour: 9, ToHour: 17}},
		"always":   {ID: "always"},
	}
	clock := &SimulatedClock{Start: "2026-11-30T00:00:00Z", PerRound: Duration(2 * time.Hour)}
	job := &Job{Spec: JobSpec{SimulatedClock: clock}}
	ids := []string{"always", "berlin-1", "tokyo-1"}
	at, avail := c.roundTime(job, ids, 2, time.Now())
	if at.UTC().Format(time.RFC3339) != "2026-11-30T00:00:00Z" || len(avail) != 2 || avail[1] != "tokyo-1" {
		t.Fatalf("round 1 at %s with %v; want 00:00 UTC with always and tokyo-1", at.UTC(), avail)
	}
	// After a round at 06:00 UTC (15:00 Tokyo), the next is at 08:00:
	// Tokyo has gone home and Berlin (09:00 CET) has arrived.
	job.Rounds = []*RoundRecord{{Number: 1, Attempt: 1, SimulatedAt: time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC).UnixMilli()}}
	at, avail = c.roundTime(job, ids, 2, time.Now())
	if at.UTC().Hour() != 8 || len(avail) != 2 || avail[1] != "berlin-1" {
		t.Fatalf("round 2 at %s with %v; want 08:00 UTC with always and berlin-1", at.UTC(), avail)
	}
	// Needing three, it waits for the hour both work: none; it gives up
	// after a day of steps with whom it has.
	_, avail = c.roundTime(job, ids, 3, time.Now())
	if len(avail) == 3 {
		t.Fatalf("Tokyo and Berlin office hours do not overlap, yet %v", avail)
	}
}
