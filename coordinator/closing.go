package coordinator

import (
	"fmt"
	"slices"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// minStragglerWait is the least time a round or a secure-aggregation phase
// runs before the straggler rule may close it: below it, scheduling and
// network jitter, not slow members, set the spread of answer times.
const minStragglerWait = 2 * time.Second

// stragglersCut is the straggler rule: a round (or phase) that waits for
// size members, of which those in arrived answered (their times since it
// opened, in order), stops waiting once at least half of them answered —
// so its median member's time m is known — and it has run
// max(minStragglerWait, factor × m) plus budget (the job's local time
// budget: a member that runs out of it sends its partial work at about
// that time). factor 0 turns the rule off.
func stragglersCut(arrived []time.Duration, size int, factor float64, budget, elapsed time.Duration) bool {
	if factor <= 0 || size <= 0 || len(arrived) < (size+1)/2 {
		return false
	}
	wait := max(minStragglerWait, time.Duration(factor*float64(median(arrived, size))))
	return elapsed >= wait+budget
}

// median is the time the median member of size took, given the answer
// times in arrived (those that did not answer count as slower than all):
// the ⌈size/2⌉-th smallest, or 0 if fewer answered.
func median(arrived []time.Duration, size int) time.Duration {
	m := (size + 1) / 2
	if m < 1 || len(arrived) < m {
		return 0
	}
	sorted := slices.Sorted(slices.Values(arrived))
	return sorted[m-1]
}

// roundDuration prints d to the millisecond, as abort reasons give times.
func roundDuration(d time.Duration) string { return d.Round(time.Millisecond).String() }

// lateFor checks whether a participant's upload or message names a round
// attempt of the job that has closed, with the sender in its cohort. If so
// the sender was late, not silent: a sender recorded silent there is
// recorded late instead (recordLate), so the selection weighting does not
// count the attempt against it, and the call is refused with
// ErrRoundClosed. Otherwise it returns nil and the caller refuses the call
// as it would any other. The caller must not hold c.leader.mu: the
// apply would make every upload wait for Raft.
func (c *Coordinator) lateFor(jobID string, number, attempt uint32, from string) error {
	job, err := c.fsm.JobView(jobID)
	if err != nil || !job.Running() {
		return nil
	}
	for _, r := range job.Rounds {
		if r.Number != number || r.Attempt != attempt || r.Status == pb.RoundStatus_ROUND_STATUS_OPEN || !slices.Contains(r.Cohort, from) {
			continue
		}
		if slices.Contains(r.Silent, from) {
			if err := c.apply(state.CmdRecordLate, state.RecordLate{JobID: jobID, Number: number, Attempt: attempt, Participant: from}); err != nil {
				return err
			}
			c.log.Info("update came after its round closed", "job", jobID, "round", number, "attempt", attempt, "participant", from)
		}
		outcome := "committed"
		if r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
			outcome = "aborted"
		}
		return fmt.Errorf("%w: round %d attempt %d %s before %s's update came; it is not needed", ErrRoundClosed, number, attempt, outcome, from)
	}
	return nil
}
