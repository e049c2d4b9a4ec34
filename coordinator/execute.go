package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// cluster is what the executor asks of the coordinators: commit a command
// through Raft, read a model (here or from a peer) and store one on a
// quorum. *Coordinator is the cluster; the executor's tests give one in
// memory.
type cluster interface {
	// apply commits a command and returns the FSM's refusal, or why it
	// could not be committed.
	apply(kind state.CommandType, body any) error
	// blob returns the blob with the digest, fetched from a peer if this
	// coordinator lacks it.
	blob(ctx context.Context, digest string) ([]byte, error)
	// replicateBlob stores a blob on a quorum of coordinators and returns
	// its digest.
	replicateBlob(ctx context.Context, blob []byte) (string, error)
}

// taskQueue queues a task for a participant; false if it cannot (not
// connected, or its queue is full).
type taskQueue interface {
	send(id string, t *pb.Task) bool
}

// executor performs the leader's decisions. It reaches the cluster and
// the participants only through cluster and tasks.
type executor struct {
	cluster cluster
	tasks   taskQueue
	leader  *leaderState
	metrics *metrics
	log     *slog.Logger
	// kick wakes the leader loop (after a commit, the next round opens at
	// once).
	kick func()
}

// execute performs the effects decide chose for job, in order, without
// the leader's lock: it takes the lock only to change what participants'
// calls read (a round becoming the open one, evaluators that could not be
// asked). It stops at the first error.
func (x *executor) execute(job *state.Job, run *schedule.JobRun, effects []schedule.Effect, now time.Time) error {
	for _, e := range effects {
		var err error
		switch e := e.(type) {
		case schedule.Note:
			x.log.Log(context.Background(), e.Level, e.Msg, e.Args...)
		case schedule.PhaseClosed:
			x.metrics.secaggPhaseSeconds.WithLabelValues(e.Phase.String()).Observe(e.Seconds)
			x.metrics.secaggDropouts.WithLabelValues(e.Phase.String()).Add(float64(e.Dropouts))
		case schedule.Propose:
			err = x.cluster.apply(e.Kind, e.Body)
		case schedule.AbortAttempt:
			err = x.applyAbort(e.Cmd)
		case schedule.SendTasks:
			x.sendAll(e.Tasks)
		case schedule.AskEvaluation:
			x.askEvaluation(run, e)
		case schedule.OpenAttempt:
			err = x.openAttempt(run, e)
		case schedule.CloseAttempt:
			err = x.closeAttempt(job, run, e.Round, now)
		default:
			err = fmt.Errorf("%w: unknown effect %T", state.ErrConflict, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyAbort commits an abort command and counts it.
func (x *executor) applyAbort(cmd state.AbortRound) error {
	x.log.Info("round aborted", "job", cmd.JobID, "round", cmd.Number, "attempt", cmd.Attempt, "reason", cmd.Reason)
	if err := x.cluster.apply(state.CmdAbortRound, cmd); err != nil {
		return err
	}
	x.metrics.roundsAborted.Inc()
	return nil
}

// sendAll queues tasks and returns to whom they could not be queued (not
// connected, or a full queue).
func (x *executor) sendAll(tasks []schedule.Addressed) (unsent []string) {
	for _, t := range tasks {
		if !x.tasks.send(t.To, t.Task) {
			unsent = append(unsent, t.To)
		}
	}
	return unsent
}

// askEvaluation sends an evaluation's tasks; those that cannot be queued
// are not waited for, and an evaluation nobody could be asked for is
// dropped, to be started again once someone can be.
func (x *executor) askEvaluation(run *schedule.JobRun, e schedule.AskEvaluation) {
	unsent := x.sendAll(e.Tasks)
	if len(unsent) == 0 {
		return
	}
	x.leader.mu.Lock()
	defer x.leader.mu.Unlock()
	for _, id := range unsent {
		delete(e.Eval.Expected, id)
	}
	if len(e.Eval.Expected) == 0 && run.Eval == e.Eval {
		run.Eval = nil
		delete(run.EvalAttempted, e.Eval.ModelRound)
	}
}

// openAttempt fetches the round's base model, commits the attempt, makes
// it the job's open round and sends the cohort its tasks. No round of the
// job is open on the leader until the apply returned: an update that
// comes meanwhile is refused.
func (x *executor) openAttempt(run *schedule.JobRun, o schedule.OpenAttempt) error {
	r := o.Round
	blob, err := x.cluster.blob(context.Background(), r.BaseDigest)
	if err != nil {
		return fmt.Errorf("base model of round %d: %w", r.Number, err)
	}
	base, err := protocol.DecodeFloat32(blob)
	if err != nil {
		return fmt.Errorf("base model of round %d: %w", r.Number, err)
	}
	if len(base) != r.Length {
		return fmt.Errorf("%w: base model of round %d has %d parameters; the job's model has %d", state.ErrConflict, r.Number, len(base), r.Length)
	}
	r.Base = base
	if err := x.cluster.apply(state.CmdOpenRound, o.Cmd); err != nil {
		return err
	}
	x.leader.mu.Lock()
	if x.leader.jobs[r.JobID] == run {
		run.Round, run.Reasons = r, map[string]string{}
	}
	x.leader.mu.Unlock()
	unsent := x.sendAll(o.Tasks)
	x.log.Debug("round opened", "job", r.JobID, "round", r.Number, "attempt", r.Attempt, "cohort", len(r.CohortList),
		"wanted", r.Wanted, "groups", len(r.Groups), "sent", len(o.Tasks)-len(unsent))
	return nil
}

// closeAttempt computes a detached round's combined update and commits it,
// or aborts the attempt.
func (x *executor) closeAttempt(job *state.Job, run *schedule.JobRun, r *schedule.Round, now time.Time) error {
	x.leader.mu.Lock()
	reasons := maps.Clone(run.Reasons)
	x.leader.mu.Unlock()
	rng, err := dp.NewRNG()
	if err != nil {
		return err
	}
	delta, contributors, examples, err := r.Result(now, job.Spec.Aggregation.RuleConfig(), rng)
	switch {
	case err != nil && r.Unmasked():
		return x.recordReleasedAbort(job, r, schedule.WithReasons(err.Error(), reasons), now)
	case err != nil:
		return x.applyAbort(r.Abort(schedule.WithReasons(err.Error(), reasons), now))
	}
	return x.commitUpdate(job, run, r, delta, contributors, examples, now)
}

// recordReleasedAbort aborts a round whose result (under DP, a noised
// sum) has already left the participants' hands: a job with dp is charged
// for it as if it had committed, since what was computed can no longer be
// taken back.
func (x *executor) recordReleasedAbort(job *state.Job, r *schedule.Round, reason string, now time.Time) error {
	cmd := r.Abort(reason, now)
	if job.Spec.DP != nil {
		cmd.PrivacyRDP, cmd.Epsilon, cmd.Order = job.RoundPrivacy(r.SamplingRate)
		cmd.Reason += " (its privacy cost is charged: the noised result was computed)"
	}
	return x.applyAbort(cmd)
}

// commitUpdate applies the round's combined update to its base model with
// the job's server optimiser, and commits the new model and the
// optimiser's state.
func (x *executor) commitUpdate(job *state.Job, run *schedule.JobRun, r *schedule.Round, delta []float32, contributors []string, examples uint64, now time.Time) error {
	optState, err := x.optimizerState(job, run)
	if err != nil {
		return errors.Join(err, x.recordReleasedAbort(job, r, "server optimiser state unavailable", now))
	}
	params, next, err := job.Spec.Optimizer().Step(r.Base, delta, optState)
	if err != nil {
		return x.recordReleasedAbort(job, r, "server optimiser: "+err.Error(), now)
	}
	return x.commitRound(job, run, r, params, next, contributors, examples, now)
}

// optimizerState is the server optimiser's state after the job's latest
// committed round: the leader's copy, or the one committed with that round
// (a new leader goes on with the same moments); nil before the first.
func (x *executor) optimizerState(job *state.Job, run *schedule.JobRun) (*aggregate.OptimizerState, error) {
	if run.Optimizer != nil && run.OptimizerRound == job.CommittedRounds {
		return run.Optimizer, nil
	}
	rec := job.Committed(job.CommittedRounds)
	if rec == nil || rec.OptimizerDigest == "" {
		return nil, nil
	}
	blob, err := x.cluster.blob(context.Background(), rec.OptimizerDigest)
	if err != nil {
		return nil, fmt.Errorf("server optimiser state of round %d: %w", rec.Number, err)
	}
	st := &aggregate.OptimizerState{}
	if err := st.UnmarshalBinary(blob); err != nil {
		return nil, fmt.Errorf("server optimiser state of round %d: %w", rec.Number, err)
	}
	run.Optimizer, run.OptimizerRound = st, job.CommittedRounds
	return st, nil
}

// commitRound stores the round's new model (and the server optimiser's
// state, if it keeps one) on a quorum of coordinators and commits it, or
// aborts the round if it cannot.
func (x *executor) commitRound(job *state.Job, run *schedule.JobRun, r *schedule.Round, params []float32, optState *aggregate.OptimizerState, contributors []string, examples uint64, now time.Time) error {
	if err := probeModel(model.MustParseSpec(job.Spec.Model), params); err != nil {
		return x.recordReleasedAbort(job, r, "new model not committed: "+err.Error(), now)
	}
	var stateBlob []byte
	if optState != nil && (len(optState.M) > 0 || len(optState.V) > 0) {
		b, err := optState.MarshalBinary()
		if err != nil {
			return errors.Join(err, x.recordReleasedAbort(job, r, "server optimiser state not encoded", now))
		}
		stateBlob = b
	}
	cmd := state.CommitRound{JobID: job.ID, Number: r.Number, Attempt: r.Attempt,
		Contributors: contributors, Examples: examples, At: now.UnixMilli(), SamplingRate: r.SamplingRate,
		Reason: r.ClosedBy, Silent: r.Silent()}
	if job.Spec.DP != nil {
		cmd.PrivacyRDP, cmd.Epsilon, cmd.Order = job.RoundPrivacy(r.SamplingRate)
	}
	var err error
	if cmd.Digest, err = x.cluster.replicateBlob(context.Background(), protocol.EncodeFloat32(params)); err != nil {
		return errors.Join(err, x.recordReleasedAbort(job, r, "new model did not reach a quorum of coordinators", now))
	}
	if stateBlob != nil {
		if cmd.OptimizerDigest, err = x.cluster.replicateBlob(context.Background(), stateBlob); err != nil {
			return errors.Join(err, x.recordReleasedAbort(job, r, "server optimiser state did not reach a quorum of coordinators", now))
		}
	}
	if err := x.cluster.apply(state.CmdCommitRound, cmd); err != nil {
		return err
	}
	run.Optimizer, run.OptimizerRound = optState, r.Number
	x.metrics.roundsCommitted.Inc()
	x.metrics.roundSeconds.Observe(now.Sub(r.Opened).Seconds())
	x.log.Info("round committed", "job", job.ID, "round", r.Number, "attempt", r.Attempt, "cohort", len(r.CohortList),
		"contributors", len(contributors), "closed", r.ClosedBy, "seconds", now.Sub(r.Opened).Seconds(), "digest", cmd.Digest)
	x.kick()
	return nil
}
