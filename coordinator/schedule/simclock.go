package schedule

import (
	"log/slog"
	"time"
)

// roundTime is when the job's next attempt happens, and the connected
// participants available then: with a simulated clock, PerRound after the
// job's latest attempt (Start for the first), moved on PerRound at a time
// until at least need eligible participants (registered, holding the
// job's dataset, not refusing it) are within their hours (for at most a
// day of steps); else now. The clock moves on for who works when, not for
// who happens to be connected: after a failover, the participants
// reconnecting are waited for — but for one round deadline of real time at
// most, so that participants who registered and went away (or declared
// hours to stall the job) cannot hold the clock for good. The wait is the
// leader's own (run); the time chosen is replicated with the round.
func (s *decision) roundTime(connected []string, need int) (time.Time, []string) {
	job, run, now := s.job, s.run, s.now
	clock := job.Spec.SimulatedClock
	if clock == nil {
		return now, s.availableAt(connected, now)
	}
	t := clock.StartTime()
	for _, r := range job.Rounds {
		if r.SimulatedAt != 0 {
			t = time.UnixMilli(r.SimulatedAt).Add(time.Duration(clock.PerRound))
		}
	}
	step := time.Duration(clock.PerRound)
	base := t
	if !run.clockBase.Equal(base) { // a new attempt: no wait carried over
		run.clockBase, run.clockSkip, run.clockWaitSince = base, 0, time.Time{}
	}
	t = t.Add(time.Duration(run.clockSkip) * step)
	var eligible []string
	for _, p := range s.participants() {
		if !job.Refused(p.ID) && p.Holds(job.Spec.Dataset) {
			eligible = append(eligible, p.ID)
		}
	}
	for range int(24*time.Hour/step) + 1 {
		if len(s.availableAt(eligible, t)) >= need {
			break
		}
		t = t.Add(step)
	}
	avail := s.availableAt(connected, t)
	switch {
	case len(avail) >= need:
		run.clockWaitSince = time.Time{}
	case run.clockWaitSince.IsZero():
		run.clockWaitSince = now
	case now.Sub(run.clockWaitSince) > time.Duration(job.Spec.RoundDeadline):
		// Those within their hours at t did not come for a round
		// deadline: move on past t.
		run.clockSkip = int(t.Sub(base)/step) + 1
		run.clockWaitSince = time.Time{}
		s.log(slog.LevelInfo, "simulated clock: too few participants within their hours connected; moving on", "from", t.UTC(), "connected", len(connected), "need", need)
	}
	return t, avail
}

// availableAt keeps the participants within their hours at t.
func (s *decision) availableAt(ids []string, t time.Time) []string {
	var out []string
	for _, id := range ids {
		if p := s.participant(id); p == nil || p.Availability.At(t) {
			out = append(out, id)
		}
	}
	return out
}
