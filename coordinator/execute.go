package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/protocol"
)

// execute performs the effects decide chose for job, in order, without
// the leader's lock: it takes the lock only to change what participants'
// calls read (a round becoming the open one, evaluators that could not be
// asked). It stops at the first error.
func (c *Coordinator) execute(job *state.Job, run *jobRun, effects []effect, now time.Time) error {
	for _, e := range effects {
		var err error
		switch e := e.(type) {
		case note:
			c.log.Log(context.Background(), e.level, e.msg, e.args...)
		case phaseClosed:
			c.metrics.secaggPhaseSeconds.WithLabelValues(e.phase.String()).Observe(e.seconds)
			c.metrics.secaggDropouts.WithLabelValues(e.phase.String()).Add(float64(e.dropouts))
		case propose:
			err = c.propose(e)
		case sendTasks:
			for _, t := range e.tasks {
				c.sessions.send(t.to, t.task)
			}
		case askEvaluation:
			c.askEvaluation(run, e)
		case openAttempt:
			err = c.openAttempt(run, e)
		case closeAttempt:
			err = c.closeAttempt(job, run, e.round, now)
		default:
			err = fmt.Errorf("%w: unknown effect %T", state.ErrConflict, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// propose commits a command a decision chose.
func (c *Coordinator) propose(p propose) error {
	if cmd, ok := p.body.(state.AbortRound); ok {
		return c.applyAbort(cmd)
	}
	return c.apply(p.kind, p.body)
}

// applyAbort commits an abort command and counts it.
func (c *Coordinator) applyAbort(cmd state.AbortRound) error {
	c.log.Info("round aborted", "job", cmd.JobID, "round", cmd.Number, "attempt", cmd.Attempt, "reason", cmd.Reason)
	if err := c.apply(state.CmdAbortRound, cmd); err != nil {
		return err
	}
	c.metrics.roundsAborted.Inc()
	return nil
}

// askEvaluation sends an evaluation's tasks; those that cannot be queued
// are not waited for, and an evaluation nobody could be asked for is
// dropped, to be started again once someone can be.
func (c *Coordinator) askEvaluation(run *jobRun, e askEvaluation) {
	var unsent []string
	for _, t := range e.tasks {
		if !c.sessions.send(t.to, t.task) {
			unsent = append(unsent, t.to)
		}
	}
	if len(unsent) == 0 {
		return
	}
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	for _, id := range unsent {
		delete(e.eval.expected, id)
	}
	if len(e.eval.expected) == 0 && run.eval == e.eval {
		run.eval = nil
		delete(run.evalAttempted, e.eval.modelRound)
	}
}

// openAttempt fetches the round's base model, commits the attempt, makes
// it the job's open round and sends the cohort its tasks. No round of the
// job is open on the leader until the apply returned: an update that
// comes meanwhile is refused.
func (c *Coordinator) openAttempt(run *jobRun, o openAttempt) error {
	r := o.round
	blob, err := c.blob(context.Background(), r.baseDigest)
	if err != nil {
		return fmt.Errorf("base model of round %d: %w", r.number, err)
	}
	base, err := protocol.DecodeFloat32(blob)
	if err != nil {
		return fmt.Errorf("base model of round %d: %w", r.number, err)
	}
	if len(base) != r.length {
		return fmt.Errorf("%w: base model of round %d has %d parameters; the job's model has %d", state.ErrConflict, r.number, len(base), r.length)
	}
	r.base = base
	if err := c.apply(state.CmdOpenRound, o.cmd); err != nil {
		return err
	}
	c.leader.mu.Lock()
	if c.leader.jobs[r.jobID] == run {
		run.round, run.reasons = r, map[string]string{}
	}
	c.leader.mu.Unlock()
	sent := 0
	for _, t := range o.tasks {
		if c.sessions.send(t.to, t.task) {
			sent++
		}
	}
	c.log.Debug("round opened", "job", r.jobID, "round", r.number, "attempt", r.attempt, "cohort", len(r.cohortList),
		"wanted", r.wanted, "groups", len(r.groups), "sent", sent)
	return nil
}

// closeAttempt computes a detached round's combined update and commits it,
// or aborts the attempt.
func (c *Coordinator) closeAttempt(job *state.Job, run *jobRun, r *round, now time.Time) error {
	c.leader.mu.Lock()
	reasons := withReasons("", run.reasons)
	c.leader.mu.Unlock()
	rng, err := dp.NewRNG()
	if err != nil {
		return err
	}
	for _, g := range r.groups {
		if g.err == nil && g.phase == phaseUnmask {
			c.metrics.secaggPhaseSeconds.WithLabelValues(phaseUnmask.String()).Observe(now.Sub(g.phaseStart).Seconds())
			c.metrics.secaggDropouts.WithLabelValues(phaseUnmask.String()).Add(float64(len(g.waiting)))
		}
	}
	delta, contributors, examples, err := r.result(now, job.Spec.Aggregation.RuleConfig(), rng)
	switch {
	case err != nil && r.unmasked():
		return c.recordReleasedAbort(job, r, err.Error()+reasons, now)
	case err != nil:
		return c.applyAbort(r.abort(err.Error()+reasons, now))
	}
	return c.commitUpdate(job, run, r, delta, contributors, examples, now)
}

// recordReleasedAbort aborts a round whose result (under DP, a noised
// sum) has already left the participants' hands: a job with dp is charged
// for it as if it had committed, since what was computed can no longer be
// taken back.
func (c *Coordinator) recordReleasedAbort(job *state.Job, r *round, reason string, now time.Time) error {
	cmd := r.abort(reason, now)
	if job.Spec.DP != nil {
		cmd.PrivacyRDP, cmd.Epsilon, cmd.Order = job.RoundPrivacy(r.samplingRate)
		cmd.Reason += " (its privacy cost is charged: the noised result was computed)"
	}
	return c.applyAbort(cmd)
}

// commitUpdate applies the round's combined update to its base model with
// the job's server optimiser, and commits the new model and the
// optimiser's state.
func (c *Coordinator) commitUpdate(job *state.Job, run *jobRun, r *round, delta []float32, contributors []string, examples uint64, now time.Time) error {
	optState, err := c.optimizerState(job, run)
	if err != nil {
		return errors.Join(err, c.recordReleasedAbort(job, r, "server optimiser state unavailable", now))
	}
	params, next, err := job.Spec.Optimizer().Step(r.base, delta, optState)
	if err != nil {
		return c.recordReleasedAbort(job, r, "server optimiser: "+err.Error(), now)
	}
	return c.commitRound(job, run, r, params, next, contributors, examples, now)
}

// optimizerState is the server optimiser's state after the job's latest
// committed round: the leader's copy, or the one committed with that round
// (a new leader goes on with the same moments); nil before the first.
func (c *Coordinator) optimizerState(job *state.Job, run *jobRun) (*aggregate.OptimizerState, error) {
	if run.optimizer != nil && run.optimizerRound == job.CommittedRounds {
		return run.optimizer, nil
	}
	rec := job.Committed(job.CommittedRounds)
	if rec == nil || rec.OptimizerDigest == "" {
		return nil, nil
	}
	blob, err := c.blob(context.Background(), rec.OptimizerDigest)
	if err != nil {
		return nil, fmt.Errorf("server optimiser state of round %d: %w", rec.Number, err)
	}
	st := &aggregate.OptimizerState{}
	if err := st.UnmarshalBinary(blob); err != nil {
		return nil, fmt.Errorf("server optimiser state of round %d: %w", rec.Number, err)
	}
	run.optimizer, run.optimizerRound = st, job.CommittedRounds
	return st, nil
}

// commitRound stores the round's new model (and the server optimiser's
// state, if it keeps one) on a quorum of coordinators and commits it, or
// aborts the round if it cannot.
func (c *Coordinator) commitRound(job *state.Job, run *jobRun, r *round, params []float32, optState *aggregate.OptimizerState, contributors []string, examples uint64, now time.Time) error {
	if err := probeModel(model.MustParseSpec(job.Spec.Model), params); err != nil {
		return c.recordReleasedAbort(job, r, "new model not committed: "+err.Error(), now)
	}
	var stateBlob []byte
	if optState != nil && (len(optState.M) > 0 || len(optState.V) > 0) {
		b, err := optState.MarshalBinary()
		if err != nil {
			return errors.Join(err, c.recordReleasedAbort(job, r, "server optimiser state not encoded", now))
		}
		stateBlob = b
	}
	cmd := state.CommitRound{JobID: job.ID, Number: r.number, Attempt: r.attempt,
		Contributors: contributors, Examples: examples, At: now.UnixMilli(), SamplingRate: r.samplingRate,
		Reason: r.closedBy, Silent: r.silent()}
	if job.Spec.DP != nil {
		cmd.PrivacyRDP, cmd.Epsilon, cmd.Order = job.RoundPrivacy(r.samplingRate)
	}
	var err error
	if cmd.Digest, err = c.replicateBlob(context.Background(), protocol.EncodeFloat32(params)); err != nil {
		return errors.Join(err, c.recordReleasedAbort(job, r, "new model did not reach a quorum of coordinators", now))
	}
	if stateBlob != nil {
		if cmd.OptimizerDigest, err = c.replicateBlob(context.Background(), stateBlob); err != nil {
			return errors.Join(err, c.recordReleasedAbort(job, r, "server optimiser state did not reach a quorum of coordinators", now))
		}
	}
	if err := c.apply(state.CmdCommitRound, cmd); err != nil {
		return err
	}
	run.optimizer, run.optimizerRound = optState, r.number
	c.metrics.roundsCommitted.Inc()
	c.metrics.roundSeconds.Observe(now.Sub(r.opened).Seconds())
	c.log.Info("round committed", "job", job.ID, "round", r.number, "attempt", r.attempt, "cohort", len(r.cohortList),
		"contributors", len(contributors), "closed", r.closedBy, "seconds", now.Sub(r.opened).Seconds(), "digest", cmd.Digest)
	c.kickLeader()
	return nil
}
