package schedule

import (
	"time"

	"github.com/accord-fl/accord/aggregate"
)

// NewJobRun returns the leader's memory of a job it has not decided on
// yet.
func NewJobRun() *JobRun { return &JobRun{EvalAttempted: map[uint32]bool{}} }

// JobRun is one job's work in flight on the leader: decide changes it
// under the leader's lock; participants' calls change Round, Eval and
// Reasons under it. The executor, on the leader loop's goroutine like
// decide, also keeps Optimizer here.
type JobRun struct {
	// started is set at the job's first decision on this leader: a round
	// open in the FSM then was left by the previous leader.
	started       bool
	Round         *Round
	Eval          *EvalCollection
	EvalAttempted map[uint32]bool // models whose evaluation was started
	waitingLogged bool
	// Optimizer is the server optimiser's state after round OptimizerRound.
	Optimizer      *aggregate.OptimizerState
	OptimizerRound uint32
	// Reasons are why members of the open round's cohort refused or
	// failed its task, by participant (cut to maxReasonBytes), for the
	// abort reason.
	Reasons map[string]string
	// clockBase, clockSkip and clockWaitSince are the leader's wait on a
	// simulated clock (roundTime): the next attempt's base time, the steps
	// moved on from it, and since when too few have come.
	clockBase      time.Time
	clockSkip      int
	clockWaitSince time.Time
}
