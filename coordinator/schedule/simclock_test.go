package schedule

import (
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
)

// TestRoundTimeSkipsToWorkingHours: a simulated clock moves on, a step at
// a time, to the first time enough participants work.
func TestRoundTimeSkipsToWorkingHours(t *testing.T) {
	w := &fixedWorld{down: map[string]bool{}, registered: map[string]*state.Participant{
		"tokyo-1":  {ID: "tokyo-1", Availability: &state.Availability{TimeZone: "Asia/Tokyo", FromHour: 9, ToHour: 17}},
		"berlin-1": {ID: "berlin-1", Availability: &state.Availability{TimeZone: "Europe/Berlin", FromHour: 9, ToHour: 17}},
		"always":   {ID: "always"},
	}}
	clock := &state.SimulatedClock{Start: "2026-11-30T00:00:00Z", PerRound: state.Duration(2 * time.Hour)}
	job := &state.Job{Spec: state.JobSpec{SimulatedClock: clock}}
	ids := []string{"always", "berlin-1", "tokyo-1"}
	at, avail := roundTimeFor(w, job, nil, ids, 2, time.Now())
	if at.UTC().Format(time.RFC3339) != "2026-11-30T00:00:00Z" || len(avail) != 2 || avail[1] != "tokyo-1" {
		t.Fatalf("round 1 at %s with %v; want 00:00 UTC with always and tokyo-1", at.UTC(), avail)
	}
	// After a round at 06:00 UTC (15:00 Tokyo), the next is at 08:00:
	// Tokyo has gone home and Berlin (09:00 CET) has arrived.
	job.Rounds = []*state.RoundRecord{{Number: 1, Attempt: 1, SimulatedAt: time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC).UnixMilli()}}
	at, avail = roundTimeFor(w, job, nil, ids, 2, time.Now())
	if at.UTC().Hour() != 8 || len(avail) != 2 || avail[1] != "berlin-1" {
		t.Fatalf("round 2 at %s with %v; want 08:00 UTC with always and berlin-1", at.UTC(), avail)
	}
	// Needing three, it waits for the hour both work: none; it gives up
	// after a day of steps with whom it has.
	_, avail = roundTimeFor(w, job, nil, ids, 3, time.Now())
	if len(avail) == 3 {
		t.Fatalf("Tokyo and Berlin office hours do not overlap, yet %v", avail)
	}
}

// TestRoundTimeDoesNotWaitForeverForTheAbsent: a participant registered
// within its hours but never connected holds the simulated clock for one
// round deadline of real time at most; one that does not hold the job's
// dataset does not hold it at all.
func TestRoundTimeDoesNotWaitForeverForTheAbsent(t *testing.T) {
	w := &fixedWorld{down: map[string]bool{}, registered: map[string]*state.Participant{
		// Works 00–08 UTC but never connects (gone, or stalling on purpose).
		"absent":  {ID: "absent", Availability: &state.Availability{TimeZone: "UTC", FromHour: 0, ToHour: 8}},
		"cifar":   {ID: "cifar", Datasets: []state.DatasetShape{{Name: "cifar10"}}, Availability: &state.Availability{TimeZone: "UTC", FromHour: 0, ToHour: 2}},
		"daytime": {ID: "daytime", Availability: &state.Availability{TimeZone: "UTC", FromHour: 8, ToHour: 18}},
	}}
	job := &state.Job{ID: "j", Spec: state.JobSpec{Dataset: "mnist", RoundDeadline: state.Duration(time.Minute),
		SimulatedClock: &state.SimulatedClock{Start: "2026-11-30T00:00:00Z", PerRound: state.Duration(time.Hour)}}}
	run := &JobRun{}
	now := time.Now()
	connected := []string{"daytime"}
	at, avail := roundTimeFor(w, job, run, connected, 1, now)
	if at.UTC().Hour() != 0 || len(avail) != 0 {
		t.Fatalf("first: %s with %v; want 00:00 (absent is within its hours) and nobody connected there", at.UTC(), avail)
	}
	if at, _ = roundTimeFor(w, job, run, connected, 1, now.Add(30*time.Second)); at.UTC().Hour() != 0 {
		t.Fatalf("within the round deadline the clock moved to %s", at.UTC())
	}
	roundTimeFor(w, job, run, connected, 1, now.Add(61*time.Second)) // the deadline passes: move on
	at, avail = roundTimeFor(w, job, run, connected, 1, now.Add(62*time.Second))
	if at.UTC().Hour() == 0 || len(avail) != 0 && at.UTC().Hour() < 8 {
		t.Fatalf("after a round deadline: %s with %v; want the clock moved on", at.UTC(), avail)
	}
	// The clock keeps moving on, a round deadline at a time, until the
	// connected participant's hours.
	for i := 0; len(avail) == 0; i++ {
		if i > 20 {
			t.Fatalf("never reached daytime's hours: %s", at.UTC())
		}
		now = now.Add(61 * time.Second)
		roundTimeFor(w, job, run, connected, 1, now)
		at, avail = roundTimeFor(w, job, run, connected, 1, now.Add(time.Second))
	}
	if at.UTC().Hour() != 8 || avail[0] != "daytime" {
		t.Fatalf("%s with %v; want 08:00 with daytime", at.UTC(), avail)
	}
}

// roundTimeFor is decide's roundTime for job in world w (a fresh jobRun
// when run is nil).
func roundTimeFor(w World, job *state.Job, run *JobRun, connected []string, need int, now time.Time) (time.Time, []string) {
	if run == nil {
		run = &JobRun{}
	}
	s := &decision{Decider: Decider{World: w}, job: job, run: run, now: now}
	return s.roundTime(connected, need)
}
