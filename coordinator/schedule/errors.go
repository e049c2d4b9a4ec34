package schedule

import "errors"

// Errors of a round in the leader's memory: a call that names another
// round, comes after its round or phase closed, or from outside its cohort.
var (
	// ErrWrongRound means an update names a round that is not open.
	ErrWrongRound = errors.New("round is not open")
	// ErrRoundClosed means an update (or secure-aggregation message) came
	// after its round, or its phase, had closed: the round went on
	// without it. The sender is recorded late, not silent.
	ErrRoundClosed = errors.New("round closed")
	// ErrWrongPhase means a secure-aggregation message came outside its
	// phase of the round.
	ErrWrongPhase = errors.New("not this phase of secure aggregation")
	// ErrNotInCohort means the sender was not selected for the round.
	ErrNotInCohort = errors.New("participant is not in the round's cohort")
	// ErrDuplicate means the sender already submitted an update this round.
	ErrDuplicate = errors.New("update already received from this participant this round")
)
