package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/accord-fl/accord/coordinator/peers"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// reconcileInterval is how often the leader matches the Raft configuration
// to gossip membership (and whenever a membership event wakes it).
const reconcileInterval = 500 * time.Millisecond

// leaderState is the leader's in-memory work: the open round of each job
// and the evaluation being collected. It is lost on leader change by
// design; the new leader aborts the open round and opens a fresh one.
type leaderState struct {
	// mu guards jobs and what participants' calls read and change in a
	// schedule.JobRun (its round, eval and reasons). The scheduling pass
	// holds it while it decides, never while it executes (no Raft apply,
	// send or model transfer runs under it).
	mu   sync.Mutex
	jobs map[string]*schedule.JobRun
	kick chan struct{}
	// decider makes the scheduling pass's decisions (set by New).
	decider schedule.Decider
}

// kickLeader wakes the leader loop early (an update or report arrived).
func (c *Coordinator) kickLeader() {
	select {
	case c.leader.kick <- struct{}{}:
	default:
	}
}

// monitorLeadership starts the leader loop when this node gains leadership
// and stops it when it loses it.
func (c *Coordinator) monitorLeadership() {
	var stopLeader chan struct{}
	var loop sync.WaitGroup
	stopLoop := func() {
		if stopLeader != nil {
			close(stopLeader)
			loop.Wait()
			stopLeader = nil
		}
	}
	defer stopLoop()
	for {
		select {
		case <-c.stopLead:
			return
		case isLeader := <-c.notifyCh:
			switch {
			case isLeader && stopLeader == nil:
				c.log.Info("gained leadership")
				c.metrics.isLeader.Set(1)
				stopLeader = make(chan struct{})
				ch := stopLeader
				loop.Go(func() { c.leaderLoop(ch) })
			case !isLeader && stopLeader != nil:
				c.log.Info("lost leadership")
				c.metrics.isLeader.Set(0)
				stopLoop()
				c.sessions.closeAll()
			}
		}
	}
}

// leaderLoop runs the rounds of every running job while this node leads.
func (c *Coordinator) leaderLoop(stop <-chan struct{}) {
	// A barrier first: every entry of earlier terms is applied before this
	// leader reads the FSM.
	for {
		if err := c.raft.Barrier(c.cfg.ApplyTimeout).Error(); err == nil {
			break
		}
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.leader.mu.Lock()
	c.leader.jobs = map[string]*schedule.JobRun{}
	c.leader.mu.Unlock()
	defer func() {
		c.leader.mu.Lock()
		c.leader.jobs = nil
		c.leader.mu.Unlock()
	}()

	ticker := time.NewTicker(c.cfg.Tick)
	defer ticker.Stop()
	var reconciled time.Time
	for {
		if time.Since(reconciled) > reconcileInterval {
			c.reconcileMembers()
			reconciled = time.Now()
		}
		c.schedule(time.Now())
		select {
		case <-stop:
			return
		case <-ticker.C:
		case <-c.leader.kick:
		}
	}
}

// schedule advances every running job: for each, it decides under the
// leader's lock, then executes the decision without it.
func (c *Coordinator) schedule(now time.Time) {
	running := c.fsm.RunningJobIDs()
	c.leader.mu.Lock()
	if c.leader.jobs == nil {
		c.leader.mu.Unlock()
		return
	}
	for id := range c.leader.jobs {
		if !slices.Contains(running, id) {
			delete(c.leader.jobs, id) // finished or cancelled
		}
	}
	c.leader.mu.Unlock()
	for _, id := range running {
		job, err := c.fsm.JobView(id)
		if err != nil {
			continue
		}
		c.leader.mu.Lock()
		if c.leader.jobs == nil {
			c.leader.mu.Unlock()
			return
		}
		run := c.leader.jobs[id]
		if run == nil {
			run = schedule.NewJobRun()
			c.leader.jobs[id] = run
		}
		effects := c.leader.decider.Decide(job, run, now)
		c.leader.mu.Unlock()
		if err := c.exec.execute(job, run, effects, now); err != nil {
			c.log.Warn("scheduling job", "job", id, "err", err)
			// Not leading, or cut off from the peers a model must reach:
			// the other jobs would fail the same way, each after a timeout.
			if errors.Is(err, ErrNotLeader) || errors.Is(err, peers.ErrUnreachable) {
				return
			}
		}
	}
}

// admitUpdate checks an update's header against the open round, reserves
// the sender's slot, and returns the round and when the upload must have
// arrived: the end of training, or of the masked-input phase of the
// sender's group.
func (c *Coordinator) admitUpdate(from string, h *pb.UpdateHeader) (*schedule.Round, time.Time, error) {
	if err := c.requireLeader(); err != nil {
		return nil, time.Time{}, err
	}
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[h.GetJobId()]
	if run == nil || run.Round == nil || run.Round.Names(h.GetRound(), h.GetAttempt(), "update") != nil {
		// lateFor may apply a command: not under the lock.
		c.leader.mu.Unlock()
		err := c.lateFor(h.GetJobId(), h.GetRound(), h.GetAttempt(), from)
		c.leader.mu.Lock()
		if err != nil {
			return nil, time.Time{}, err
		}
		run = c.leader.jobs[h.GetJobId()]
	}
	if run != nil && run.Round != nil {
		var err error
		if h.GetMasked() {
			err = run.Round.AdmitMasked(from, h)
		} else {
			err = run.Round.Admit(from, h, time.Now())
		}
		if err != nil {
			return nil, time.Time{}, err
		}
		if g := run.Round.Group(from); g != nil {
			return run.Round, g.Deadline, nil
		}
		return run.Round, run.Round.Deadline, nil
	}
	job, err := c.fsm.JobView(h.GetJobId())
	if err != nil {
		return nil, time.Time{}, err
	}
	if !job.Running() {
		return nil, time.Time{}, fmt.Errorf("%w: job %s is %s", state.ErrJobNotRunning, job.ID, job.Status)
	}
	return nil, time.Time{}, fmt.Errorf("%w: job %s has no round open (update for round %d)", schedule.ErrWrongRound, job.ID, h.GetRound())
}

// addUpdate sums an admitted update into its round, if that round is still
// the open one.
func (c *Coordinator) addUpdate(r *schedule.Round, from string, delta []float32) (int, error) {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	if !c.isOpenLocked(r) {
		return 0, fmt.Errorf("%w: round %d closed while the update was arriving", schedule.ErrRoundClosed, r.Number)
	}
	if err := r.Add(from, delta); err != nil {
		return 0, err
	}
	c.kickLeader()
	return len(r.Contributors), nil
}

// releaseUpdate frees from's slot in r after its upload failed, if r is
// still the job's open round. A round the scheduling pass closed belongs
// to the executor: nothing else touches it.
func (c *Coordinator) releaseUpdate(r *schedule.Round, from string) {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	if !c.isOpenLocked(r) {
		return
	}
	r.Release(from)
	if g := r.Group(from); g != nil {
		g.ReleaseMasked(from)
	}
}

// isOpenLocked reports whether r is still its job's open round on this
// leader; the caller holds c.leader.mu.
func (c *Coordinator) isOpenLocked(r *schedule.Round) bool {
	run := c.leader.jobs[r.JobID]
	return run != nil && run.Round == r
}

// addMasked sums an admitted masked input into its round, if that round is
// still the open one.
func (c *Coordinator) addMasked(r *schedule.Round, from string, y []uint32) error {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	if !c.isOpenLocked(r) {
		return fmt.Errorf("%w: round %d closed while the masked input was arriving", schedule.ErrRoundClosed, r.Number)
	}
	g := r.Group(from)
	if g == nil {
		return fmt.Errorf("%w: %s is not in round %d's cohort", schedule.ErrNotInCohort, from, r.Number)
	}
	if err := g.AddMasked(from, y); err != nil {
		return err
	}
	c.kickLeader()
	return nil
}

// secureMessage hands a secure-aggregation message from a participant to
// its group in the open round the message names: check (nil: none) runs
// with the leader's lock released, then deliver under it, if the round is
// still open.
func (c *Coordinator) secureMessage(from string, ref *pb.SecAggRound, check, deliver func(s *schedule.SecureRound) error) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[ref.GetJobId()]
	if run == nil || run.Round == nil || run.Round.Names(ref.GetRound(), ref.GetAttempt(), "message") != nil {
		// lateFor may apply a command: not under the lock.
		c.leader.mu.Unlock()
		err := c.lateFor(ref.GetJobId(), ref.GetRound(), ref.GetAttempt(), from)
		c.leader.mu.Lock()
		if err != nil {
			return err
		}
		run = c.leader.jobs[ref.GetJobId()]
	}
	if run == nil || run.Round == nil {
		if _, err := c.fsm.JobView(ref.GetJobId()); err != nil {
			return err
		}
		return fmt.Errorf("%w: job %s has no round open (message for round %d)", schedule.ErrWrongRound, ref.GetJobId(), ref.GetRound())
	}
	r := run.Round
	if err := r.Names(ref.GetRound(), ref.GetAttempt(), "message"); err != nil {
		return err
	}
	if !r.Secure() {
		return fmt.Errorf("%w: round %d does not use secure aggregation", state.ErrBadUpdate, r.Number)
	}
	g := r.Group(from)
	if g == nil {
		return fmt.Errorf("%w: %s is not in round %d's cohort", schedule.ErrNotInCohort, from, r.Number)
	}
	if check != nil {
		c.leader.mu.Unlock()
		err := check(g)
		c.leader.mu.Lock()
		if err != nil {
			return err
		}
		if !c.isOpenLocked(r) {
			return fmt.Errorf("%w: round %d closed while the message was checked", schedule.ErrRoundClosed, r.Number)
		}
	}
	if err := deliver(g); err != nil {
		return err
	}
	c.kickLeader()
	return nil
}

// addEvaluation records one participant's evaluation report.
func (c *Coordinator) addEvaluation(from string, req *pb.ReportEvaluationRequest) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[req.GetJobId()]
	if run == nil || run.Eval == nil {
		return fmt.Errorf("%w: no evaluation of job %s round %d is being collected", schedule.ErrWrongRound, req.GetJobId(), req.GetModelRound())
	}
	if err := run.Eval.Add(from, req); err != nil {
		return err
	}
	c.kickLeader()
	return nil
}

// refuseTask records that a participant's site policy refused a job it was
// asked to work on, and lets the open round go on without it.
func (c *Coordinator) refuseTask(from string, req *pb.RefuseTaskRequest) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	reason := req.GetReason()
	if len(reason) > 512 {
		reason = reason[:512]
	}
	if job, err := c.fsm.JobView(req.GetJobId()); err == nil && job.Refused(from) {
		return nil // recorded already: nothing more to commit
	}
	// The open round and evaluation stop waiting for the participant
	// under the leader's lock; the refusal is committed after, without it
	// (a participant whose commit failed retries, and is still asked).
	if err := func() error {
		c.leader.mu.Lock()
		defer c.leader.mu.Unlock()
		run := c.leader.jobs[req.GetJobId()]
		asked := run != nil && ((run.Round != nil && run.Round.Cohort[from]) || (run.Eval != nil && run.Eval.Expected[from]))
		if !asked {
			if _, err := c.fsm.JobView(req.GetJobId()); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s has no task of job %s to refuse", schedule.ErrNotInCohort, from, req.GetJobId())
		}
		if run.Round != nil && run.Round.Cohort[from] {
			run.Round.Refuse(from)
			run.Reasons[from] = state.SanitizeReason("site policy: " + reason)
		}
		if run.Eval != nil && run.Eval.Expected[from] && !run.Eval.Got[from] {
			delete(run.Eval.Expected, from)
		}
		return nil
	}(); err != nil {
		return err
	}
	if err := c.apply(state.CmdRecordRefusal, state.RecordRefusal{JobID: req.GetJobId(), Participant: from, Reason: reason, At: time.Now().UnixMilli()}); err != nil {
		return err
	}
	c.log.Info("participant refused a job by its site policy", "job", req.GetJobId(), "participant", from, "reason", reason)
	c.kickLeader()
	return nil
}

// taskFailed records a participant's report that its task of the open
// round (or of the evaluation being collected) failed or cannot run on its
// data: the round or evaluation stops waiting for it, the reason goes
// into the round's abort reason, and it is committed on the job for
// `accord job show`. One report per participant and round attempt (or
// evaluation) is committed; a repeat is acknowledged and dropped.
func (c *Coordinator) taskFailed(from string, req *pb.ReportTaskFailureRequest) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	reason := state.SanitizeReason(req.GetReason())
	if reason == "" {
		reason = "no reason given"
	}
	failure, err := c.noteTaskFailure(from, req, reason)
	if err != nil || failure == nil {
		return err
	}
	c.log.Info("participant reported a failed task", "job", req.GetJobId(), "participant", from, "task", failure.Task,
		"round", failure.Round, "attempt", failure.Attempt, "reason", reason)
	c.kickLeader()
	return c.apply(state.CmdRecordTaskFailure, state.RecordTaskFailure{JobID: req.GetJobId(), Failure: *failure})
}

// noteTaskFailure makes the open round or the evaluation being collected
// stop waiting for a participant whose task failed, under the leader's
// lock, and returns the failure to commit (nil: reported already).
func (c *Coordinator) noteTaskFailure(from string, req *pb.ReportTaskFailureRequest, reason string) (*state.TaskFailure, error) {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[req.GetJobId()]
	if run == nil {
		if _, err := c.fsm.JobView(req.GetJobId()); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: job %s has no round or evaluation open", schedule.ErrWrongRound, req.GetJobId())
	}
	failure := state.TaskFailure{Participant: from, Reason: reason, Round: req.GetRound(), Attempt: req.GetAttempt(), At: time.Now().UnixMilli()}
	switch req.GetKind() {
	case pb.TaskKind_TASK_KIND_EVALUATE:
		e := run.Eval
		switch {
		case e == nil || e.ModelRound != req.GetRound():
			return nil, fmt.Errorf("%w: no evaluation of job %s round %d is being collected", schedule.ErrWrongRound, req.GetJobId(), req.GetRound())
		case e.Got[from]:
			return nil, fmt.Errorf("%w: %s reported its evaluation of round %d", schedule.ErrDuplicate, from, e.ModelRound)
		case !e.Expected[from]:
			return nil, fmt.Errorf("%w: %s has no evaluation of round %d to report on (or reported already)", schedule.ErrNotInCohort, from, e.ModelRound)
		}
		delete(e.Expected, from)
		failure.Task, failure.Attempt = "evaluate", 0
	case pb.TaskKind_TASK_KIND_TRAIN, pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT, pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		r := run.Round
		switch {
		case r == nil:
			return nil, fmt.Errorf("%w: job %s has no round open (report for round %d)", schedule.ErrWrongRound, req.GetJobId(), req.GetRound())
		case r.Number != req.GetRound() || r.Attempt != req.GetAttempt():
			return nil, fmt.Errorf("%w: round %d attempt %d is open, not round %d attempt %d", schedule.ErrWrongRound, r.Number, r.Attempt, req.GetRound(), req.GetAttempt())
		case !r.Cohort[from]:
			return nil, fmt.Errorf("%w: %s is not in round %d's cohort", schedule.ErrNotInCohort, from, r.Number)
		case r.Refused[from]:
			return nil, nil // reported already
		case r.Done[from] || r.IsReceiving(from):
			return nil, fmt.Errorf("%w: %s's update of round %d arrived", schedule.ErrDuplicate, from, r.Number)
		}
		r.Refuse(from)
		run.Reasons[from] = reason
		failure.Task = "train"
	default:
		return nil, fmt.Errorf("%w: task kind %v", state.ErrBadRequest, req.GetKind())
	}
	return &failure, nil
}

// probeModel checks a new model before it is committed: every parameter
// finite, and a finite loss on a fixed batch of random inputs. The leader
// holds no data, but a model whose logits overflow (an update of huge
// values got in) fails here instead of making every participant's training
// diverge from the next round on.
func probeModel(spec model.Spec, params []float32) error {
	if err := model.CheckParams(spec, params); err != nil {
		return err
	}
	m, err := model.FromParams(spec, params)
	if err != nil {
		return err
	}
	const rows = 8
	in, classes := spec.Widths[0], spec.Widths[len(spec.Widths)-1]
	ds := &model.Dataset{X: make([]float32, rows*in), Y: make([]int32, rows), Features: in, Classes: classes}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ds.X {
		ds.X[i] = float32(rng.NormFloat64())
	}
	met, err := model.Evaluate(context.Background(), m, ds)
	if err != nil {
		return err
	}
	if math.IsNaN(met.Loss) || math.IsInf(met.Loss, 0) {
		return fmt.Errorf("%w: its loss on a probe batch is %v", model.ErrNotFinite, met.Loss)
	}
	return nil
}
