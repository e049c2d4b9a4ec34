package coordinator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// reconcileInterval is how often the leader matches the Raft configuration
// to gossip membership (and whenever a membership event wakes it).
const reconcileInterval = 500 * time.Millisecond

// leaderState is the leader's in-memory work: the open round of each job
// and the evaluation being collected. It is lost on leader change by
// design; the new leader aborts the open round and opens a fresh one.
type leaderState struct {
	mu   sync.Mutex
	jobs map[string]*jobRun
	kick chan struct{}
	// inPass is set while the scheduling pass holds mu (schedule). The
	// pass releases mu around its Raft applies and model transfers
	// (outsidePass), so that uploads and other participants' calls, which
	// take mu, never wait for them. Only the leader loop's goroutine
	// reads or writes it.
	inPass bool
}

// jobRun is one job's work in flight on the leader.
type jobRun struct {
	round         *round
	eval          *evalCollection
	evalAttempted map[uint32]bool // models whose evaluation was started
	waitingLogged bool
	// optimizer is the server optimiser's state after round optimizerRound.
	optimizer      *aggregate.OptimizerState
	optimizerRound uint32
	// reasons are why members of the open round's cohort refused or
	// failed its task, by participant (cut to maxReasonBytes), for the
	// abort reason.
	reasons map[string]string
	// clockBase, clockSkip and clockWaitSince are the leader's wait on a
	// simulated clock (roundTime): the next attempt's base time, the steps
	// moved on from it, and since when too few have come.
	clockBase      time.Time
	clockSkip      int
	clockWaitSince time.Time
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
	c.leader.jobs = map[string]*jobRun{}
	c.leader.mu.Unlock()
	defer func() {
		c.leader.mu.Lock()
		c.leader.jobs = nil
		c.leader.mu.Unlock()
	}()

	// Rounds left open by an earlier leader cannot finish: their updates and
	// sums were in that leader's memory.
	now := time.Now()
	for _, id := range c.fsm.RunningJobIDs() {
		job, err := c.fsm.JobView(id)
		if err != nil {
			continue
		}
		if r := job.openRound(); r != nil {
			if err := c.recordAbort(id, r.Number, r.Attempt, "leader change", now); err != nil {
				c.log.Warn("aborting round left open by the previous leader", "job", id, "round", r.Number, "err", err)
			}
		}
	}

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

// schedule advances every running job.
func (c *Coordinator) schedule(now time.Time) {
	running := c.fsm.RunningJobIDs()
	c.leader.mu.Lock()
	c.leader.inPass = true
	defer func() {
		c.leader.inPass = false
		c.leader.mu.Unlock()
	}()
	if c.leader.jobs == nil {
		return
	}
	for id := range c.leader.jobs {
		if !slices.Contains(running, id) {
			delete(c.leader.jobs, id) // finished or cancelled
		}
	}
	for _, id := range running {
		job, err := c.fsm.JobView(id)
		if err != nil {
			continue
		}
		run := c.leader.jobs[id]
		if run == nil {
			run = &jobRun{evalAttempted: map[uint32]bool{}}
			c.leader.jobs[id] = run
		}
		if err := c.scheduleJob(job, run, now); err != nil {
			c.log.Warn("scheduling job", "job", id, "err", err)
			if errors.Is(err, ErrNotLeader) {
				return
			}
		}
	}
}

// outsidePass runs f, a Raft apply or a model transfer of the scheduling
// pass, with the leader's lock released when the pass holds it, and takes
// the lock back before it returns: an apply can take up to the apply
// timeout, a transfer to a peer as long, and uploads and the other calls
// of participants must not wait for either. The pass calls it only where
// the state those calls read is settled: a round it is closing is no
// longer the job's open round (run.round), an evaluation it is recording
// no longer run.eval; f touches nothing the lock guards. Called outside
// the pass (the leader loop's first aborts), it just runs f.
func (c *Coordinator) outsidePass(f func() error) error {
	if !c.leader.inPass {
		return f()
	}
	c.leader.inPass = false
	c.leader.mu.Unlock()
	defer func() {
		c.leader.mu.Lock()
		c.leader.inPass = true
	}()
	return f()
}

// scheduleJob takes the next step of one job: finish an evaluation, close a
// round, or open the next one. The caller holds c.leader.mu; Raft applies
// and model transfers run with it released (outsidePass).
func (c *Coordinator) scheduleJob(job *Job, run *jobRun, now time.Time) error {
	spec := job.Spec
	if ev := run.eval; ev != nil {
		if !ev.finished(now) {
			return nil
		}
		run.eval = nil
		if ev.sum.Reporters > 0 {
			if err := c.outsidePass(func() error {
				return c.apply(cmdRecordEvaluation, recordEvaluation{JobID: job.ID, ModelRound: ev.modelRound, Eval: ev.sum})
			}); err != nil {
				return err
			}
			c.log.Info("model evaluated", "job", job.ID, "round", ev.modelRound, "accuracy", ev.sum.Accuracy(), "reporters", ev.sum.Reporters)
			if spec.TargetAccuracy > 0 && ev.sum.Accuracy() >= spec.TargetAccuracy && !ev.decisive() {
				c.log.Info("target accuracy reached by too few evaluators to stop the job", "job", job.ID, "round", ev.modelRound,
					"accuracy", ev.sum.Accuracy(), "reporters", ev.sum.Reporters, "asked", len(ev.expected))
			}
			if spec.TargetAccuracy > 0 && ev.sum.Accuracy() >= spec.TargetAccuracy && ev.decisive() {
				return c.finish(job.ID, pb.JobStatus_JOB_STATUS_SUCCEEDED,
					fmt.Sprintf("target accuracy %.4g reached by round %d (%.4f)", spec.TargetAccuracy, ev.modelRound, ev.sum.Accuracy()), ev.modelRound, now)
			}
		}
	}
	if r := run.round; r != nil && r.secure() {
		return c.advanceSecure(job, run, now)
	}
	if r := run.round; r != nil {
		outcome, why := r.outcome(now)
		switch outcome {
		case roundComplete, roundCommit:
			rng, err := dp.NewRNG()
			if err != nil {
				return err
			}
			delta, err := r.update(rng)
			if err != nil {
				run.round = nil
				return c.recordAbort(job.ID, r.number, r.attempt, "aggregation: "+err.Error(), now)
			}
			r.closedBy = why
			return c.commitUpdate(job, run, delta, slices.Sorted(slices.Values(r.contributors)), r.examples, now)
		case roundAbort:
			run.round = nil
			return c.applyAbort(r.abort(withReasons(why, run.reasons), now))
		case roundPending:
			// Everyone who will answer has, and too few updates came:
			// waiting for the deadline would change nothing.
			if len(r.refused) > 0 && len(r.contributors)+len(r.refused) == len(r.cohortList) {
				run.round = nil
				msg := fmt.Sprintf("%d of %d updates (minimum %d): the other cohort members refused or failed the task", len(r.contributors), len(r.cohortList), r.minUpdates)
				if len(r.contributors) == 0 {
					msg = "no update arrived: every cohort member refused or failed the task"
				}
				return c.applyAbort(r.abort(withReasons(msg, run.reasons), now))
			}
			return nil
		}
	}
	// A round open in the FSM that this leader does not hold (an apply that
	// failed here but committed anyway) can never finish: abort it.
	if rec := job.openRound(); rec != nil {
		return c.recordAbort(job.ID, rec.Number, rec.Attempt, "round lost by the leader", now)
	}
	// Evaluate the latest model first if nobody has.
	latest := job.CommittedRounds
	// Nobody to ask (participants still reconnecting after a leader
	// change) is not an attempt: the evaluation starts once someone is back.
	if spec.EvaluateFraction > 0 && !run.evalAttempted[latest] && !job.evaluated(latest) {
		if c.startEvaluation(job, run, latest, now) {
			run.evalAttempted[latest] = true
			return nil
		}
	}
	if latest >= spec.Rounds {
		return c.finish(job.ID, pb.JobStatus_JOB_STATUS_SUCCEEDED, fmt.Sprintf("all %d rounds committed", spec.Rounds), 0, now)
	}
	if n, last := job.abortedInARow(latest + 1); n >= spec.maxAttempts() {
		reason := fmt.Sprintf("round %d aborted %d times in a row (max_attempts %d); last: %s", latest+1, n, spec.maxAttempts(), last)
		// The last attempt may have aborted for another cause (a leader
		// change): the participants' own reasons still say what is wrong.
		if lastRec := job.Rounds[len(job.Rounds)-1]; len(job.failuresOf(latest+1, lastRec.Attempt)) == 0 {
			if s := refusalSummary(job.failuresOf(latest+1, 0)); s != "" {
				reason += "; earlier, " + s
			}
		}
		return c.finish(job.ID, pb.JobStatus_JOB_STATUS_FAILED, reason, 0, now)
	}
	return c.openRound(job, run, now)
}

// abortedInARow counts the aborted attempts of round number, and returns
// the last one's reason.
func (j *Job) abortedInARow(number uint32) (n uint32, last string) {
	for _, r := range j.Rounds {
		if r.Number == number && r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
			n, last = n+1, r.Reason
		}
	}
	return n, last
}

// evaluated reports whether the model after round number has a recorded
// federated evaluation.
func (j *Job) evaluated(number uint32) bool {
	if number == 0 {
		return j.InitialEval != nil
	}
	r := j.committed(number)
	return r != nil && r.Eval != nil
}

func (c *Coordinator) finish(jobID string, status pb.JobStatus, reason string, targetRound uint32, now time.Time) error {
	c.log.Info("job finished", "job", jobID, "status", status, "reason", reason)
	delete(c.leader.jobs, jobID)
	return c.outsidePass(func() error {
		return c.apply(cmdFinishJob, finishJob{JobID: jobID, Status: status, Reason: reason, TargetRound: targetRound, At: now.UnixMilli()})
	})
}

// seededRand returns a generator seeded from a job's seed and the given
// numbers, so every choice the leader makes is reproducible.
func seededRand(seed uint64, parts ...uint64) *rand.Rand {
	h := fnv.New64a()
	for _, p := range append([]uint64{seed}, parts...) {
		h.Write(binary.LittleEndian.AppendUint64(nil, p))
	}
	return rand.New(rand.NewPCG(h.Sum64(), seed))
}

// TaskSeed is the seed of a participant's local training in a round
// attempt of a job with the given seed, as the leader sends it: anyone can
// reproduce a round's training from it.
func TaskSeed(jobSeed uint64, round, attempt uint32, participant string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(participant))
	return seededRand(jobSeed, uint64(round), uint64(attempt), h.Sum64()).Uint64()
}

// choose picks k of the sorted ids with rng.
func choose(ids []string, k int, rng *rand.Rand) []string {
	ids = slices.Clone(ids)
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	ids = ids[:min(k, len(ids))]
	slices.Sort(ids)
	return ids
}

func (c *Coordinator) openRound(job *Job, run *jobRun, now time.Time) error {
	spec := job.Spec
	connected := slices.DeleteFunc(c.sessions.connected(spec.Dataset), job.refused)
	at, connected := c.roundTime(job, run, connected, max(int(spec.MinParticipants), 1), now)
	// k is the number of updates the round wants; the cohort is larger
	// when the job expects some of it not to answer (cohortSize).
	k := int(spec.ParticipantsPerRound)
	if k == 0 {
		k = int(math.Ceil(spec.ParticipantsFraction * float64(len(connected))))
	}
	if spec.SecureAggregation.Enabled() {
		k = min(k, maxSecureCohort)
	}
	if len(connected) < int(spec.MinParticipants) || len(connected) == 0 {
		// Nobody registered holds the job's dataset: no round can ever
		// open, so there are no attempts to count. The job fails by the
		// rule that refuses such a job at submission.
		if why, noHolder := untrainable(spec, c.fsm.Participants()); noHolder {
			return c.finish(job.ID, pb.JobStatus_JOB_STATUS_FAILED, "no participant can train this job: "+why, 0, now)
		}
		if !run.waitingLogged {
			c.log.Info("waiting for participants", "job", job.ID, "connected", len(connected), "minimum", spec.MinParticipants)
			run.waitingLogged = true
		}
		return nil
	}
	number := job.CommittedRounds + 1
	attempt := uint32(1)
	for _, r := range job.Rounds {
		if r.Number == number {
			attempt = max(attempt, r.Attempt+1)
		}
	}
	// A retry leaves out who was silent in the round's aborted attempts;
	// the sampling rate is then over those left, which only raises it (DP
	// accounts for the larger rate).
	connected = job.retryCandidates(number, connected, max(k, int(spec.MinParticipants)))
	size := job.cohortSize(k, len(connected))
	rng := seededRand(spec.Seed, uint64(number), uint64(attempt))
	// Participants silent in the job's recent attempts are drawn less
	// often (selectionWeights), never less than minSelectionWeight.
	selection := job.selectionWeights()
	pick := func(ids []string, n int) []string { return chooseWeighted(ids, n, selection, rng) }
	var cohort []string
	var members [][]string
	if a := spec.Aggregation; a.grouped() {
		region := func(id string) string {
			if p := c.fsm.Participant(id); p != nil {
				return p.Region
			}
			return ""
		}
		var err error
		if cohort, members, err = chooseGroups(connected, size, int(a.Groups), a.GroupBy, region, pick, rng); err != nil {
			if !run.waitingLogged {
				c.log.Info("cannot open a round with grouped secure aggregation yet", "job", job.ID, "connected", len(connected), "err", err)
				run.waitingLogged = true
			}
			return nil
		}
	} else {
		cohort = pick(connected, size)
	}
	samplingRate := float64(len(cohort)) / float64(len(connected))
	if d := spec.DP; d != nil && d.MaxEpsilon > 0 {
		if eps := job.epsilonAfterRound(samplingRate); eps > d.MaxEpsilon {
			return c.finish(job.ID, pb.JobStatus_JOB_STATUS_SUCCEEDED, fmt.Sprintf(
				"privacy budget spent: round %d would take ε from %.4g to %.4g, above max_epsilon %.4g (δ = %g)",
				number, job.epsilon(), eps, d.MaxEpsilon, d.delta()), 0, now)
		}
	}
	baseDigest := job.modelDigest(number - 1)
	var blob []byte
	err := c.outsidePass(func() (err error) {
		blob, err = c.blob(context.Background(), baseDigest)
		return err
	})
	if err != nil {
		return fmt.Errorf("base model of round %d: %w", number, err)
	}
	base, err := protocol.DecodeFloat32(blob)
	if err != nil {
		return fmt.Errorf("base model of round %d: %w", number, err)
	}
	deadline := now.Add(time.Duration(spec.RoundDeadline))
	var groups []*secureRound
	var rule aggregate.Rule
	if spec.SecureAggregation.Enabled() {
		if members == nil {
			members = [][]string{cohort}
		}
		if groups, err = c.secureGroups(job, number, attempt, members, k, len(base), now, deadline); err != nil {
			if !run.waitingLogged {
				c.log.Info("cannot open a round with secure aggregation yet", "job", job.ID, "cohort", len(cohort), "err", err)
				run.waitingLogged = true
			}
			return nil
		}
	} else if rule, err = aggregate.NewRule(spec.Aggregation.ruleConfig(), len(base)); err != nil {
		return fmt.Errorf("round %d: %w", number, err)
	}
	weights, declared := c.cohortWeights(job, cohort)
	rec := RoundRecord{Number: number, Attempt: attempt, Cohort: cohort, BaseDigest: baseDigest, OpenedAt: now.UnixMilli(), Deadline: deadline.UnixMilli()}
	if spec.SimulatedClock != nil {
		rec.SimulatedAt = at.UnixMilli()
	}
	// No round of this job is open here until the apply returns and
	// run.round is set: an update that comes meanwhile is refused.
	if err := c.outsidePass(func() error {
		return c.apply(cmdOpenRound, openRound{JobID: job.ID, Round: rec, Declared: declared})
	}); err != nil {
		return err
	}
	minUpdates := spec.minUpdates(len(cohort))
	r := newRound(job.ID, number, attempt, cohort, weights, base, baseDigest, deadline, minUpdates, rule)
	r.maxNorm, r.epochs, r.samplingRate, r.groups = spec.maxUpdateNorm(), spec.LocalEpochs, samplingRate, groups
	r.opened, r.straggler, r.budget = now, spec.stragglerFactor(), time.Duration(spec.LocalTimeBudget)
	if k < len(cohort) {
		r.wanted = k
	}
	for gi, g := range groups {
		for _, id := range g.ids {
			r.groupOf[id] = gi
		}
	}
	if d := spec.DP; d != nil && d.Mode == DPCentral {
		r.dpClip, r.dpNoise = d.Clip, d.NoiseMultiplier*d.Clip
	}
	run.round, run.waitingLogged, run.reasons = r, false, map[string]string{}
	sent := 0
	for _, id := range cohort {
		t := &pb.Task{
			Kind: pb.TaskKind_TASK_KIND_TRAIN, JobId: job.ID, Round: number, Attempt: attempt, Model: spec.Model,
			Dataset: spec.Dataset, BaseModelDigest: baseDigest, LocalEpochs: spec.LocalEpochs, BatchSize: spec.BatchSize,
			LearningRate: spec.LearningRate, ProxMu: spec.ProxMu, DeadlineUnixMs: deadline.UnixMilli(),
			Seed:            TaskSeed(spec.Seed, number, attempt, id),
			JobOrganization: job.Organization, JobRounds: spec.Rounds, SecureAggregation: spec.SecureAggregation.Mode,
			LocalTimeBudgetMs: uint64(time.Duration(spec.LocalTimeBudget) / time.Millisecond),
		}
		g := r.group(id)
		if g != nil {
			t.Secagg = g.trainTask(id)
		}
		t.Dp = spec.DP.task(g)
		if c.sessions.send(id, t) {
			sent++
		}
	}
	c.log.Debug("round opened", "job", job.ID, "round", number, "attempt", attempt, "cohort", len(cohort), "wanted", k, "groups", len(groups), "sent", sent)
	return nil
}

// secureGroups prepares secure aggregation for a round that wants updates
// of a cohort split into members: one group, or the job's
// aggregation.groups in grouped mode, each with its own session, graph and
// threshold, and its share of the updates wanted.
func (c *Coordinator) secureGroups(job *Job, number, attempt uint32, members [][]string, wanted, length int, now, deadline time.Time) ([]*secureRound, error) {
	spec := job.Spec
	cohort := 0
	for _, m := range members {
		cohort += len(m)
	}
	var groups []*secureRound
	for i, m := range members {
		g := uint32(0)
		if spec.Aggregation.grouped() {
			g = uint32(i + 1)
		}
		minInputs := 0
		if len(members) == 1 {
			minInputs = spec.minUpdates(len(m))
		}
		sr, err := newSecureRound(spec.SecureAggregation, protocol.SecAggSession(job.ID, number, attempt, g), g, m, length,
			float64(spec.maxExamples()), now, deadline, c.cfg.CA, spec.DP, minInputs)
		if err != nil {
			if g > 0 {
				return nil, fmt.Errorf("group %d of %d: %w", g, len(members), err)
			}
			return nil, err
		}
		if share := (wanted*len(m) + cohort - 1) / cohort; share < len(m) {
			sr.wanted = share
		}
		sr.straggler, sr.budget = spec.stragglerFactor(), time.Duration(spec.LocalTimeBudget)
		groups = append(groups, sr)
	}
	return groups, nil
}

// cohortWeights returns each cohort member's FedAvg weight in this job, and
// the counts to fix for members at their first task of the job: the
// example count it registered with, capped at the job's max_examples. A
// participant's weight never changes afterwards, whatever it claims later.
func (c *Coordinator) cohortWeights(job *Job, cohort []string) (weights, declared map[string]uint64) {
	weights, declared = map[string]uint64{}, map[string]uint64{}
	for _, id := range cohort {
		n, ok := job.Declared[id]
		if !ok {
			if p := c.fsm.Participant(id); p != nil {
				n = job.Spec.weight(p.Examples)
			}
			n = max(n, 1)
			declared[id] = n
		}
		weights[id] = job.Spec.weight(n)
	}
	return weights, declared
}

// advanceSecure moves each group of a round with secure aggregation through
// its phases, sending each phase's tasks; once every group has finished or
// failed it commits the combined update, or aborts the round.
func (c *Coordinator) advanceSecure(job *Job, run *jobRun, now time.Time) error {
	r := run.round
	live := func(id string) bool { ok, _ := c.sessions.status(id); return ok && !r.refused[id] }
	pending := false
	for _, g := range r.groups {
		if g.err != nil || g.phase == phaseDone {
			continue
		}
		phase, missing, started := g.phase, len(g.waiting), g.phaseStart
		kind, tasks, err := g.advance(now, live)
		if err != nil || g.phase != phase {
			c.metrics.secaggPhaseSeconds.WithLabelValues(phase.String()).Observe(now.Sub(started).Seconds())
			c.metrics.secaggDropouts.WithLabelValues(phase.String()).Add(float64(missing))
		}
		if err != nil {
			g.err = err
			if len(r.groups) > 1 {
				c.log.Info("secure aggregation group failed", "job", job.ID, "round", r.number, "group", g.group, "err", err)
			}
			continue
		}
		if g.phase != phaseDone {
			pending = true
		}
		for id, st := range tasks {
			st.Group = g.group
			c.sessions.send(id, &pb.Task{Kind: kind, JobId: job.ID, Round: r.number, Attempt: r.attempt, Model: job.Spec.Model,
				Dataset: job.Spec.Dataset, BaseModelDigest: r.baseDigest, DeadlineUnixMs: g.deadline.UnixMilli(), Secagg: st,
				JobOrganization: job.Organization, JobRounds: job.Spec.Rounds, SecureAggregation: job.Spec.SecureAggregation.Mode})
		}
		if len(tasks) > 0 {
			c.log.Debug("secure aggregation phase", "job", job.ID, "round", r.number, "group", g.group, "phase", g.phase, "clients", len(tasks))
		}
	}
	if pending {
		return nil
	}
	delta, contributors, examples, err := r.secureUpdate(job.Spec.Aggregation.ruleConfig())
	if err != nil {
		run.round = nil
		if r.unmasked() {
			return c.recordReleasedAbort(job, r, withReasons(err.Error(), run.reasons), now)
		}
		return c.applyAbort(r.abort(withReasons(err.Error(), run.reasons), now))
	}
	r.closedBy = r.secureNotes()
	return c.commitUpdate(job, run, delta, contributors, examples, now)
}

// recordAbort commits a round attempt's abort, with its reason, through
// Raft; the next attempt draws a new cohort.
func (c *Coordinator) recordAbort(jobID string, number, attempt uint32, reason string, now time.Time) error {
	return c.applyAbort(abortRound{JobID: jobID, Number: number, Attempt: attempt, Reason: reason, At: now.UnixMilli()})
}

// applyAbort commits an abort command and counts it.
func (c *Coordinator) applyAbort(cmd abortRound) error {
	c.log.Info("round aborted", "job", cmd.JobID, "round", cmd.Number, "attempt", cmd.Attempt, "reason", cmd.Reason)
	if err := c.outsidePass(func() error { return c.apply(cmdAbortRound, cmd) }); err != nil {
		return err
	}
	c.metrics.roundsAborted.Inc()
	return nil
}

// recordReleasedAbort aborts a round whose result (under DP, a noised
// sum) has already left the participants' hands: a job with dp is charged
// for it as if it had committed, since what was computed can no longer be
// taken back.
func (c *Coordinator) recordReleasedAbort(job *Job, r *round, reason string, now time.Time) error {
	cmd := r.abort(reason, now)
	if job.Spec.DP != nil {
		cmd.PrivacyRDP, cmd.Epsilon, cmd.Order = job.roundPrivacy(r.samplingRate)
		cmd.Reason += " (its privacy cost is charged: the noised result was computed)"
	}
	return c.applyAbort(cmd)
}

// commitUpdate applies the round's combined update to its base model with
// the job's server optimiser, and commits the new model and the
// optimiser's state.
func (c *Coordinator) commitUpdate(job *Job, run *jobRun, delta []float32, contributors []string, examples uint64, now time.Time) error {
	// The round stops being the job's open one before anything can
	// release the leader's lock: an update that comes now is refused,
	// never summed after the result was taken.
	r := run.round
	run.round = nil
	state, err := c.optimizerState(job, run)
	if err != nil {
		return errors.Join(err, c.recordReleasedAbort(job, r, "server optimiser state unavailable", now))
	}
	params, next, err := job.Spec.Optimizer().Step(r.base, delta, state)
	if err != nil {
		return c.recordReleasedAbort(job, r, "server optimiser: "+err.Error(), now)
	}
	return c.commitRound(job, run, r, params, next, contributors, examples, now)
}

// optimizerState is the server optimiser's state after the job's latest
// committed round: the leader's copy, or the one committed with that round
// (a new leader goes on with the same moments); nil before the first.
func (c *Coordinator) optimizerState(job *Job, run *jobRun) (*aggregate.OptimizerState, error) {
	if run.optimizer != nil && run.optimizerRound == job.CommittedRounds {
		return run.optimizer, nil
	}
	rec := job.committed(job.CommittedRounds)
	if rec == nil || rec.OptimizerDigest == "" {
		return nil, nil
	}
	var blob []byte
	err := c.outsidePass(func() (err error) {
		blob, err = c.blob(context.Background(), rec.OptimizerDigest)
		return err
	})
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
func (c *Coordinator) commitRound(job *Job, run *jobRun, r *round, params []float32, state *aggregate.OptimizerState, contributors []string, examples uint64, now time.Time) error {
	if err := probeModel(model.MustParseSpec(job.Spec.Model), params); err != nil {
		return c.recordReleasedAbort(job, r, "new model not committed: "+err.Error(), now)
	}
	var stateBlob []byte
	if state != nil && (len(state.M) > 0 || len(state.V) > 0) {
		b, err := state.MarshalBinary()
		if err != nil {
			return errors.Join(err, c.recordReleasedAbort(job, r, "server optimiser state not encoded", now))
		}
		stateBlob = b
	}
	cmd := commitRound{JobID: job.ID, Number: r.number, Attempt: r.attempt,
		Contributors: contributors, Examples: examples, At: now.UnixMilli(), SamplingRate: r.samplingRate,
		Reason: r.closedBy, Silent: r.silent()}
	if job.Spec.DP != nil {
		cmd.PrivacyRDP, cmd.Epsilon, cmd.Order = job.roundPrivacy(r.samplingRate)
	}
	// The quorum pushes and the commit run with the leader's lock released.
	var abortReason string
	err := c.outsidePass(func() error {
		var err error
		if cmd.Digest, err = c.replicateBlob(context.Background(), protocol.EncodeFloat32(params)); err != nil {
			abortReason = "new model did not reach a quorum of coordinators"
			return err
		}
		if stateBlob != nil {
			if cmd.OptimizerDigest, err = c.replicateBlob(context.Background(), stateBlob); err != nil {
				abortReason = "server optimiser state did not reach a quorum of coordinators"
				return err
			}
		}
		return c.apply(cmdCommitRound, cmd)
	})
	if abortReason != "" {
		return errors.Join(err, c.recordReleasedAbort(job, r, abortReason, now))
	}
	if err != nil {
		return err
	}
	digest := cmd.Digest
	run.optimizer, run.optimizerRound = state, r.number
	opened := time.UnixMilli(0)
	if rec := job.openRound(); rec != nil {
		opened = time.UnixMilli(rec.OpenedAt)
	}
	c.metrics.roundsCommitted.Inc()
	c.metrics.roundSeconds.Observe(now.Sub(opened).Seconds())
	c.log.Info("round committed", "job", job.ID, "round", r.number, "attempt", r.attempt, "cohort", len(r.cohortList),
		"contributors", len(contributors), "closed", r.closedBy, "seconds", now.Sub(r.opened).Seconds(), "digest", digest)
	c.kickLeader()
	return nil
}

// startEvaluation asks a fraction of the connected participants to evaluate
// the model after round number; false if none could be asked.
func (c *Coordinator) startEvaluation(job *Job, run *jobRun, number uint32, now time.Time) bool {
	spec := job.Spec
	connected := slices.DeleteFunc(c.sessions.connected(spec.Dataset), job.refused)
	k := int(math.Ceil(spec.EvaluateFraction * float64(len(connected))))
	evaluators := choose(connected, k, seededRand(spec.Seed, uint64(number), 0xe7a1))
	digest := job.modelDigest(number)
	var asked []string
	for _, id := range evaluators {
		t := &pb.Task{Kind: pb.TaskKind_TASK_KIND_EVALUATE, JobId: job.ID, Round: number, Model: spec.Model,
			Dataset: spec.Dataset, BaseModelDigest: digest, DeadlineUnixMs: now.Add(time.Duration(spec.RoundDeadline)).UnixMilli(),
			JobOrganization: job.Organization, JobRounds: spec.Rounds, SecureAggregation: spec.SecureAggregation.Mode}
		if c.sessions.send(id, t) {
			asked = append(asked, id)
		}
	}
	if len(asked) == 0 {
		return false
	}
	run.eval = newEvalCollection(job.ID, number, digest, asked, now.Add(time.Duration(spec.RoundDeadline)))
	run.eval.intended = k
	return true
}

// admitUpdate checks an update's header against the open round and reserves
// the sender's slot.
func (c *Coordinator) admitUpdate(from string, h *pb.UpdateHeader) (*round, error) {
	if err := c.requireLeader(); err != nil {
		return nil, err
	}
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[h.GetJobId()]
	if run == nil || run.round == nil || run.round.names(h.GetRound(), h.GetAttempt(), "update") != nil {
		// lateFor may apply a command: not under the lock.
		c.leader.mu.Unlock()
		err := c.lateFor(h.GetJobId(), h.GetRound(), h.GetAttempt(), from)
		c.leader.mu.Lock()
		if err != nil {
			return nil, err
		}
		run = c.leader.jobs[h.GetJobId()]
	}
	if run != nil && run.round != nil {
		var err error
		if h.GetMasked() {
			err = run.round.admitMasked(from, h)
		} else {
			err = run.round.admit(from, h, time.Now())
		}
		if err != nil {
			return nil, err
		}
		return run.round, nil
	}
	job, err := c.fsm.JobView(h.GetJobId())
	if err != nil {
		return nil, err
	}
	if !job.running() {
		return nil, fmt.Errorf("%w: job %s is %s", ErrJobNotRunning, job.ID, job.Status)
	}
	return nil, fmt.Errorf("%w: job %s has no round open (update for round %d)", ErrWrongRound, job.ID, h.GetRound())
}

// addUpdate sums an admitted update into its round, if that round is still
// the open one.
func (c *Coordinator) addUpdate(r *round, from string, delta []float32) (int, error) {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	if run := c.leader.jobs[r.jobID]; run == nil || run.round != r {
		return 0, fmt.Errorf("%w: round %d closed while the update was arriving", ErrRoundClosed, r.number)
	}
	if err := r.add(from, delta); err != nil {
		return 0, err
	}
	c.kickLeader()
	return len(r.contributors), nil
}

func (c *Coordinator) releaseUpdate(r *round, from string) {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	r.release(from)
	if g := r.group(from); g != nil {
		g.releaseMasked(from)
	}
}

// uploadDeadline is when from's upload into r must have arrived: the end
// of training, or of the masked-input phase of from's group.
func (c *Coordinator) uploadDeadline(r *round, from string) time.Time {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	if g := r.group(from); g != nil {
		return g.deadline
	}
	return r.deadline
}

// addMasked sums an admitted masked input into its round, if that round is
// still the open one.
func (c *Coordinator) addMasked(r *round, from string, y []uint32) error {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	if run := c.leader.jobs[r.jobID]; run == nil || run.round != r {
		return fmt.Errorf("%w: round %d closed while the masked input was arriving", ErrRoundClosed, r.number)
	}
	g := r.group(from)
	if g == nil {
		return fmt.Errorf("%w: %s is not in round %d's cohort", ErrNotInCohort, from, r.number)
	}
	if err := g.addMasked(from, y); err != nil {
		return err
	}
	c.kickLeader()
	return nil
}

// secureMessage hands a secure-aggregation message from a participant to
// its group in the open round the message names, under the leader's lock.
func (c *Coordinator) secureMessage(from string, ref *pb.SecAggRound, deliver func(s *secureRound) error) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[ref.GetJobId()]
	if run == nil || run.round == nil || run.round.names(ref.GetRound(), ref.GetAttempt(), "message") != nil {
		// lateFor may apply a command: not under the lock.
		c.leader.mu.Unlock()
		err := c.lateFor(ref.GetJobId(), ref.GetRound(), ref.GetAttempt(), from)
		c.leader.mu.Lock()
		if err != nil {
			return err
		}
		run = c.leader.jobs[ref.GetJobId()]
	}
	if run == nil || run.round == nil {
		if _, err := c.fsm.JobView(ref.GetJobId()); err != nil {
			return err
		}
		return fmt.Errorf("%w: job %s has no round open (message for round %d)", ErrWrongRound, ref.GetJobId(), ref.GetRound())
	}
	r := run.round
	if err := r.names(ref.GetRound(), ref.GetAttempt(), "message"); err != nil {
		return err
	}
	if !r.secure() {
		return fmt.Errorf("%w: round %d does not use secure aggregation", ErrBadUpdate, r.number)
	}
	g := r.group(from)
	if g == nil {
		return fmt.Errorf("%w: %s is not in round %d's cohort", ErrNotInCohort, from, r.number)
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
	if run == nil || run.eval == nil {
		return fmt.Errorf("%w: no evaluation of job %s round %d is being collected", ErrWrongRound, req.GetJobId(), req.GetModelRound())
	}
	if err := run.eval.add(from, req); err != nil {
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
	if job, err := c.fsm.JobView(req.GetJobId()); err == nil && job.refused(from) {
		return nil // recorded already: nothing more to commit
	}
	// The open round and evaluation stop waiting for the participant
	// under the leader's lock; the refusal is committed after, without it
	// (a participant whose commit failed retries, and is still asked).
	if err := func() error {
		c.leader.mu.Lock()
		defer c.leader.mu.Unlock()
		run := c.leader.jobs[req.GetJobId()]
		asked := run != nil && ((run.round != nil && run.round.cohort[from]) || (run.eval != nil && run.eval.expected[from]))
		if !asked {
			if _, err := c.fsm.JobView(req.GetJobId()); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s has no task of job %s to refuse", ErrNotInCohort, from, req.GetJobId())
		}
		if run.round != nil && run.round.cohort[from] {
			run.round.refuse(from)
			run.reasons[from] = sanitizeReason("site policy: " + reason)
		}
		if run.eval != nil && run.eval.expected[from] && !run.eval.got[from] {
			delete(run.eval.expected, from)
		}
		return nil
	}(); err != nil {
		return err
	}
	if err := c.apply(cmdRecordRefusal, recordRefusal{JobID: req.GetJobId(), Participant: from, Reason: reason, At: time.Now().UnixMilli()}); err != nil {
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
	reason := sanitizeReason(req.GetReason())
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
	return c.apply(cmdRecordTaskFailure, recordTaskFailure{JobID: req.GetJobId(), Failure: *failure})
}

// noteTaskFailure makes the open round or the evaluation being collected
// stop waiting for a participant whose task failed, under the leader's
// lock, and returns the failure to commit (nil: reported already).
func (c *Coordinator) noteTaskFailure(from string, req *pb.ReportTaskFailureRequest, reason string) (*TaskFailure, error) {
	c.leader.mu.Lock()
	defer c.leader.mu.Unlock()
	run := c.leader.jobs[req.GetJobId()]
	if run == nil {
		if _, err := c.fsm.JobView(req.GetJobId()); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: job %s has no round or evaluation open", ErrWrongRound, req.GetJobId())
	}
	failure := TaskFailure{Participant: from, Reason: reason, Round: req.GetRound(), Attempt: req.GetAttempt(), At: time.Now().UnixMilli()}
	switch req.GetKind() {
	case pb.TaskKind_TASK_KIND_EVALUATE:
		e := run.eval
		switch {
		case e == nil || e.modelRound != req.GetRound():
			return nil, fmt.Errorf("%w: no evaluation of job %s round %d is being collected", ErrWrongRound, req.GetJobId(), req.GetRound())
		case e.got[from]:
			return nil, fmt.Errorf("%w: %s reported its evaluation of round %d", ErrDuplicate, from, e.modelRound)
		case !e.expected[from]:
			return nil, fmt.Errorf("%w: %s has no evaluation of round %d to report on (or reported already)", ErrNotInCohort, from, e.modelRound)
		}
		delete(e.expected, from)
		failure.Task, failure.Attempt = "evaluate", 0
	case pb.TaskKind_TASK_KIND_TRAIN, pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT, pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		r := run.round
		switch {
		case r == nil:
			return nil, fmt.Errorf("%w: job %s has no round open (report for round %d)", ErrWrongRound, req.GetJobId(), req.GetRound())
		case r.number != req.GetRound() || r.attempt != req.GetAttempt():
			return nil, fmt.Errorf("%w: round %d attempt %d is open, not round %d attempt %d", ErrWrongRound, r.number, r.attempt, req.GetRound(), req.GetAttempt())
		case !r.cohort[from]:
			return nil, fmt.Errorf("%w: %s is not in round %d's cohort", ErrNotInCohort, from, r.number)
		case r.refused[from]:
			return nil, nil // reported already
		case r.done[from] || r.isReceiving(from):
			return nil, fmt.Errorf("%w: %s's update of round %d arrived", ErrDuplicate, from, r.number)
		}
		r.refuse(from)
		run.reasons[from] = reason
		failure.Task = "train"
	default:
		return nil, fmt.Errorf("%w: task kind %v", ErrBadRequest, req.GetKind())
	}
	return &failure, nil
}

// withReasons appends to an abort reason why cohort members refused or
// failed the round's task, if any did.
func withReasons(reason string, reasons map[string]string) string {
	if s := refusalSummary(reasons); s != "" {
		return reason + "; " + s
	}
	return reason
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
