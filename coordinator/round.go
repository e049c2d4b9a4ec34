package coordinator

import (
	"fmt"
	"math"
	"time"

	"github.com/accord-fl/accord/aggregate"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// round is the leader's in-memory view of one open round attempt: the base
// model, the running FedAvg sum and who has contributed. It does no I/O and
// takes time as an argument, so deadlines and dropouts are tested without
// sockets or sleeps. The leader guards it with its own lock.
type round struct {
	jobID           string
	number, attempt uint32
	cohort          map[string]bool
	cohortList      []string
	base            []float32
	baseDigest      string
	deadline        time.Time
	minUpdates      int
	acc             *aggregate.FedAvg
	contributors    []string
	examples        uint64
	receiving       map[string]bool // uploads admitted but not yet added
	done            map[string]bool // contributors, as a set
	// weights are the cohort's FedAvg weights: each member's example count
	// as fixed at its first task of the job, capped at the job's
	// max_examples. What an update's header claims does not change them.
	weights map[string]uint64
	// refused are cohort members whose site policy refused the job; the
	// round does not wait for them.
	refused map[string]bool
	// maxNorm refuses an update whose L2 norm is larger (0: no bound).
	maxNorm float64
	// sec runs secure aggregation when the job asks for it; then updates
	// arrive masked, acc is unused and deadline bounds training only.
	sec *secureRound
}

// newRound opens a round attempt; with sec set, its updates arrive masked
// and no FedAvg accumulator is kept.
func newRound(jobID string, number, attempt uint32, cohort []string, weights map[string]uint64, base []float32, baseDigest string, deadline time.Time, minUpdates int, sec *secureRound) *round {
	r := &round{
		jobID: jobID, number: number, attempt: attempt, cohortList: cohort, cohort: map[string]bool{},
		base: base, baseDigest: baseDigest, deadline: deadline, minUpdates: minUpdates,
		receiving: map[string]bool{}, done: map[string]bool{}, sec: sec, weights: weights, refused: map[string]bool{},
	}
	if sec == nil {
		r.acc = aggregate.NewFedAvg(len(base))
	}
	for _, id := range cohort {
		r.cohort[id] = true
	}
	return r
}

// maxEvalExamples bounds the examples one evaluation report may claim.
const maxEvalExamples = 1 << 32

// admit checks an update's header before its data is received and reserves
// the sender's slot: the round and attempt must be this one, the sender in
// the cohort and not already heard from, the length the model's.
func (r *round) admit(from string, h *pb.UpdateHeader, now time.Time) error {
	if err := r.trainedIn(h, "update"); err != nil {
		return err
	}
	switch {
	case !now.Before(r.deadline):
		return fmt.Errorf("%w: round %d's deadline has passed", ErrWrongRound, r.number)
	case !r.cohort[from]:
		return fmt.Errorf("%w: %s is not in round %d's cohort", ErrNotInCohort, from, r.number)
	case r.done[from] || r.receiving[from]:
		return fmt.Errorf("%w: %s, round %d", ErrDuplicate, from, r.number)
	case r.sec != nil:
		return fmt.Errorf("%w: round %d uses secure aggregation; updates must be masked", ErrBadUpdate, r.number)
	case h.GetNumParams() != uint64(len(r.base)):
		return fmt.Errorf("%w: update has %d parameters; the model has %d", ErrBadUpdate, h.GetNumParams(), len(r.base))
	case h.GetExamples() == 0:
		return fmt.Errorf("%w: update claims 0 examples", ErrBadUpdate)
	case r.refused[from]:
		return fmt.Errorf("%w: %s refused job %s", ErrConflict, from, r.jobID)
	}
	r.receiving[from] = true
	return nil
}

// admitMasked checks a masked input's header and reserves the sender's slot.
func (r *round) admitMasked(from string, h *pb.UpdateHeader) error {
	if err := r.trainedIn(h, "masked input"); err != nil {
		return err
	}
	if r.sec == nil {
		return fmt.Errorf("%w: round %d does not use secure aggregation; send the update unmasked", ErrBadUpdate, r.number)
	}
	return r.sec.admitMasked(from, h.GetNumParams())
}

// names checks that a message (what) names this round attempt.
func (r *round) names(number, attempt uint32, what string) error {
	if number != r.number || attempt != r.attempt {
		return fmt.Errorf("%w: %s for round %d attempt %d; job %s has round %d attempt %d open",
			ErrWrongRound, what, number, attempt, r.jobID, r.number, r.attempt)
	}
	return nil
}

// trainedIn checks that an upload's header names this round attempt and was
// trained from its base model.
func (r *round) trainedIn(h *pb.UpdateHeader, what string) error {
	if err := r.names(h.GetRound(), h.GetAttempt(), what); err != nil {
		return err
	}
	if h.GetBaseModelDigest() != r.baseDigest {
		return fmt.Errorf("%w: %s trained from %s; the round's base model is %s", ErrWrongRound, what, h.GetBaseModelDigest(), r.baseDigest)
	}
	return nil
}

// release gives back a slot admit reserved when the upload failed.
func (r *round) release(from string) { delete(r.receiving, from) }

// add sums an admitted update into the round, weighted by the sender's
// fixed weight (see weights).
func (r *round) add(from string, delta []float32) error {
	delete(r.receiving, from)
	if r.maxNorm > 0 {
		if n := norm(delta); !(n <= r.maxNorm) {
			return fmt.Errorf("%w: update norm %.4g exceeds the job's max_update_norm %.4g", ErrBadUpdate, n, r.maxNorm)
		}
	}
	w := r.weights[from]
	if err := r.acc.Add(delta, float64(w)); err != nil {
		return fmt.Errorf("%w: %w", ErrBadUpdate, err)
	}
	r.done[from] = true
	r.contributors = append(r.contributors, from)
	r.examples += w
	return nil
}

// norm is the L2 norm of v, in float64 (float32 entries of 1e38 square to
// 1e76: no overflow).
func norm(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// refuse records that a cohort member's site refused the job: the round
// stops waiting for it.
func (r *round) refuse(from string) {
	if r.cohort[from] && !r.done[from] {
		r.refused[from] = true
	}
}

type roundOutcome int

const (
	roundPending  roundOutcome = iota
	roundComplete              // every cohort member contributed
	roundCommit                // deadline passed with enough contributors
	roundAbort                 // deadline passed with too few
)

func (r *round) outcome(now time.Time) roundOutcome {
	switch {
	case len(r.contributors) == len(r.cohortList):
		return roundComplete
	case len(r.contributors)+len(r.refused) == len(r.cohortList) && len(r.contributors) >= max(1, r.minUpdates):
		return roundComplete // everyone who will answer has
	case now.Before(r.deadline):
		return roundPending
	case len(r.contributors) >= r.minUpdates:
		return roundCommit
	default:
		return roundAbort
	}
}

// evalCollection sums the federated evaluation of one model while reports
// arrive. Pure, like round.
type evalCollection struct {
	jobID      string
	modelRound uint32
	digest     string
	expected   map[string]bool
	got        map[string]bool
	sum        Evaluation
	deadline   time.Time
}

func newEvalCollection(jobID string, modelRound uint32, digest string, evaluators []string, deadline time.Time) *evalCollection {
	e := &evalCollection{jobID: jobID, modelRound: modelRound, digest: digest, expected: map[string]bool{}, got: map[string]bool{}, deadline: deadline}
	for _, id := range evaluators {
		e.expected[id] = true
	}
	return e
}

func (e *evalCollection) add(from string, req *pb.ReportEvaluationRequest) error {
	switch {
	case req.GetModelRound() != e.modelRound || req.GetModelDigest() != e.digest:
		return fmt.Errorf("%w: evaluation of round %d (%s); collecting round %d (%s)", ErrWrongRound, req.GetModelRound(), req.GetModelDigest(), e.modelRound, e.digest)
	case !e.expected[from]:
		return fmt.Errorf("%w: %s was not asked to evaluate round %d", ErrNotInCohort, from, e.modelRound)
	case e.got[from]:
		return fmt.Errorf("%w: evaluation from %s for round %d", ErrDuplicate, from, e.modelRound)
	case req.GetExamples() == 0 || req.GetExamples() > maxEvalExamples || req.GetCorrect() > req.GetExamples():
		return fmt.Errorf("%w: evaluation of %d examples with %d correct", ErrBadUpdate, req.GetExamples(), req.GetCorrect())
	case math.IsNaN(req.GetLossSum()) || math.IsInf(req.GetLossSum(), 0) || req.GetLossSum() < 0:
		return fmt.Errorf("%w: evaluation loss %v", ErrBadUpdate, req.GetLossSum())
	}
	e.got[from] = true
	e.sum.Examples += req.GetExamples()
	e.sum.Correct += req.GetCorrect()
	e.sum.LossSum += req.GetLossSum()
	e.sum.Reporters++
	return nil
}

// finished reports whether every evaluator reported or the deadline passed.
func (e *evalCollection) finished(now time.Time) bool {
	return len(e.got) == len(e.expected) || !now.Before(e.deadline)
}
