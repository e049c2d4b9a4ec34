package coordinator

import (
	"fmt"
	"slices"

	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

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
		return fmt.Errorf("%w: round %d attempt %d %s before %s's update came; it is not needed", schedule.ErrRoundClosed, number, attempt, outcome, from)
	}
	return nil
}
