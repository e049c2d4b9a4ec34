package schedule

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// World is what Decide reads besides a job and the leader's memory of it.
// The coordinator's is its participants' sessions and its FSM's registry;
// tests give a fixed one.
type World interface {
	// Connected returns the participants whose task streams are open and
	// that hold dataset ("": any), sorted.
	Connected(dataset string) []string
	// Live reports whether the participant's task stream is open.
	Live(id string) bool
	// Participants returns every registered participant, sorted by ID.
	Participants() []*state.Participant
}

// Effect is one thing a decision asks the executor to do.
type Effect interface{ effect() }

// Addressed is a task for one participant.
type Addressed struct {
	To   string
	Task *pb.Task
}

// Propose commits a command through Raft: the end of a job, an
// evaluation's result.
type Propose struct {
	Kind state.CommandType
	Body any
}

// AbortAttempt commits a round attempt's abort, logged and counted.
type AbortAttempt struct{ Cmd state.AbortRound }

// OpenAttempt opens a round attempt: it fetches the base model into the
// round, commits the openRound command, makes the round the job's open one
// and sends the cohort its tasks. Until then no update for it is taken.
type OpenAttempt struct {
	Round *Round
	Cmd   state.OpenRound
	Tasks []Addressed
}

// CloseAttempt closes a round decide detached from the job (no call of a
// participant reaches it any more): it computes the combined update (the
// rule's result; with secure aggregation, it unmasks the groups whose
// unmasking phase closed), steps the server optimiser and commits the new
// model, or aborts the attempt if any of that fails.
type CloseAttempt struct{ Round *Round }

// SendTasks sends the tasks of a secure-aggregation phase.
type SendTasks struct{ Tasks []Addressed }

// AskEvaluation sends the tasks of an evaluation decide started (run.eval);
// participants whose task cannot be queued are not waited for.
type AskEvaluation struct {
	Eval  *EvalCollection
	Tasks []Addressed
}

// PhaseClosed counts a secure-aggregation phase that ended, for metrics.
type PhaseClosed struct {
	Phase    secPhase
	Seconds  float64
	Dropouts int
}

// Note is a log line.
type Note struct {
	Level slog.Level
	Msg   string
	Args  []any
}

func (Propose) effect()       {}
func (AbortAttempt) effect()  {}
func (OpenAttempt) effect()   {}
func (CloseAttempt) effect()  {}
func (SendTasks) effect()     {}
func (AskEvaluation) effect() {}
func (PhaseClosed) effect()   {}
func (Note) effect()          {}

// Decider makes the leader's decisions.
type Decider struct {
	World World
	// CA verifies secure-aggregation advertisements.
	CA *x509.CertPool
}

// decision is one decide call in the making: its inputs and the effects
// chosen so far.
type decision struct {
	Decider
	// registered and registry are the World's participants, read once
	// (participants).
	registered []*state.Participant
	registry   map[string]*state.Participant
	job        *state.Job
	run        *JobRun
	now        time.Time
	effects    []Effect
}

// Decide takes the next step of one job at now: finish an evaluation,
// advance or close its open round, or start an evaluation or the next
// round, or end the job. The caller holds the leader's lock, which guards
// run.
func (d Decider) Decide(job *state.Job, run *JobRun, now time.Time) []Effect {
	s := &decision{Decider: d, job: job, run: run, now: now}
	s.step()
	return s.effects
}

func (s *decision) emit(e Effect) { s.effects = append(s.effects, e) }

func (s *decision) log(level slog.Level, msg string, args ...any) {
	s.emit(Note{Level: level, Msg: msg, Args: append([]any{"job", s.job.ID}, args...)})
}

func (s *decision) step() {
	job, run, now, spec := s.job, s.run, s.now, s.job.Spec
	inherited := !run.started
	run.started = true
	if ev := run.Eval; ev != nil {
		if !ev.finished(now) {
			return
		}
		run.Eval = nil
		if ev.sum.Reporters > 0 {
			s.emit(Propose{state.CmdRecordEvaluation, state.RecordEvaluation{JobID: job.ID, ModelRound: ev.ModelRound, Eval: ev.sum}})
			s.log(slog.LevelInfo, "model evaluated", "round", ev.ModelRound, "accuracy", ev.sum.Accuracy(), "reporters", ev.sum.Reporters)
			if reached := spec.TargetAccuracy > 0 && ev.sum.Accuracy() >= spec.TargetAccuracy; reached && ev.decisive() {
				s.finish(pb.JobStatus_JOB_STATUS_SUCCEEDED, fmt.Sprintf("target accuracy %.4g reached by round %d (%.4f)",
					spec.TargetAccuracy, ev.ModelRound, ev.sum.Accuracy()), ev.ModelRound)
				return
			} else if reached {
				s.log(slog.LevelInfo, "target accuracy reached by too few evaluators to stop the job", "round", ev.ModelRound,
					"accuracy", ev.sum.Accuracy(), "reporters", ev.sum.Reporters, "asked", len(ev.Expected))
			}
		}
	}
	if r := run.Round; r != nil && r.Secure() {
		s.advanceSecure()
		return
	}
	if r := run.Round; r != nil {
		s.closePlain()
		return
	}
	// A round open in the FSM that this leader does not hold cannot finish:
	// the updates and sums were in another leader's memory (a leader
	// change), or an apply that failed here committed anyway.
	if rec := job.OpenRound(); rec != nil {
		reason := "round lost by the leader"
		if inherited {
			reason = "leader change"
		}
		s.abort(state.AbortRound{JobID: job.ID, Number: rec.Number, Attempt: rec.Attempt, Reason: reason, At: now.UnixMilli()})
		return
	}
	// Evaluate the latest model first if nobody has. Nobody to ask
	// (participants still reconnecting after a leader change) is not an
	// attempt: the evaluation starts once someone is back.
	latest := job.CommittedRounds
	unevaluated := spec.EvaluateFraction > 0 && !run.EvalAttempted[latest] && !job.Evaluated(latest)
	if unevaluated && s.startEvaluation(latest) {
		return
	}
	if latest >= spec.Rounds {
		reason := fmt.Sprintf("all %d rounds committed", spec.Rounds)
		if unevaluated {
			// The final model is the one the job is for: wait a round's
			// deadline for someone to evaluate it before finishing without.
			if committed := job.Committed(latest); committed != nil && now.Before(time.UnixMilli(committed.ClosedAt).Add(time.Duration(spec.RoundDeadline))) {
				s.waiting("waiting for participants to evaluate the final model", "round", latest)
				return
			}
			reason += "; the final model was not evaluated: no participant that could evaluate it was connected within a round deadline"
		}
		s.finish(pb.JobStatus_JOB_STATUS_SUCCEEDED, reason, 0)
		return
	}
	if n, last := job.AbortedInARow(latest + 1); n >= spec.EffectiveMaxAttempts() {
		reason := fmt.Sprintf("round %d aborted %d times in a row (max_attempts %d); last: %s", latest+1, n, spec.EffectiveMaxAttempts(), last)
		// The last attempt may have aborted for another cause (a leader
		// change): the participants' own reasons still say what is wrong.
		if lastRec := job.Rounds[len(job.Rounds)-1]; len(job.FailuresOf(latest+1, lastRec.Attempt)) == 0 {
			if sum := state.RefusalSummary(job.FailuresOf(latest+1, 0)); sum != "" {
				reason += "; earlier, " + sum
			}
		}
		s.finish(pb.JobStatus_JOB_STATUS_FAILED, reason, 0)
		return
	}
	s.open()
}

// closePlain closes the open plain round if its outcome is known: it
// detaches the round for the executor to commit, or aborts it.
func (s *decision) closePlain() {
	run, r := s.run, s.run.Round
	outcome, why := r.outcome(s.now)
	switch outcome {
	case roundComplete, roundCommit:
		run.Round = nil
		r.ClosedBy = why
		s.emit(CloseAttempt{Round: r})
	case roundAbort:
		run.Round = nil
		s.abort(r.Abort(WithReasons(why, run.Reasons), s.now))
	case roundPending:
		// Everyone who will answer has, and too few updates came: waiting
		// for the deadline would change nothing.
		if len(r.Refused) > 0 && len(r.Contributors)+len(r.Refused) == len(r.CohortList) {
			run.Round = nil
			msg := fmt.Sprintf("%d of %d updates (minimum %d): the other cohort members refused or failed the task", len(r.Contributors), len(r.CohortList), r.minUpdates)
			if len(r.Contributors) == 0 {
				msg = "no update arrived: every cohort member refused or failed the task"
			}
			s.abort(r.Abort(WithReasons(msg, run.Reasons), s.now))
		}
	}
}

// advanceSecure moves each group of the open round with secure aggregation
// through its phases, sending each phase's tasks. Once every group has
// failed or may close its unmasking phase, the round is detached for the
// executor to unmask and commit (a group finishes only there); if every
// group failed before unmasking, it is aborted here.
func (s *decision) advanceSecure() {
	job, run, now := s.job, s.run, s.now
	r := run.Round
	live := func(id string) bool { return s.World.Live(id) && !r.Refused[id] }
	pending, unmasking := false, false
	for _, g := range r.Groups {
		if g.err != nil {
			continue
		}
		if g.phase == phaseUnmask {
			// Unmasking is the heavy step: the executor runs it, outside
			// the leader's lock, once every group is ready.
			if g.closing(now, live) {
				unmasking = true
			} else {
				pending = true
			}
			continue
		}
		phase, missing, started := g.phase, len(g.waiting), g.phaseStart
		kind, tasks, err := g.advance(now, live)
		if err != nil || g.phase != phase {
			s.emit(PhaseClosed{Phase: phase, Seconds: now.Sub(started).Seconds(), Dropouts: missing})
		}
		if err != nil {
			g.err = err
			if len(r.Groups) > 1 {
				s.log(slog.LevelInfo, "secure aggregation group failed", "round", r.Number, "group", g.group, "err", err)
			}
			continue
		}
		pending = true // in a phase before unmasking, or just moved to it
		if len(tasks) == 0 {
			continue
		}
		var out []Addressed
		for _, id := range slices.Sorted(maps.Keys(tasks)) {
			st := tasks[id]
			st.Group = g.group
			out = append(out, Addressed{To: id, Task: &pb.Task{Kind: kind, JobId: job.ID, Round: r.Number, Attempt: r.Attempt, Model: job.Spec.Model,
				Dataset: job.Spec.Dataset, BaseModelDigest: r.BaseDigest, DeadlineUnixMs: g.Deadline.UnixMilli(), Secagg: st,
				JobOrganization: job.Organization, JobRounds: job.Spec.Rounds, SecureAggregation: job.Spec.SecureAggregation.Mode}})
		}
		s.emit(SendTasks{Tasks: out})
		s.log(slog.LevelDebug, "secure aggregation phase", "round", r.Number, "group", g.group, "phase", g.phase, "clients", len(tasks))
	}
	if pending {
		return
	}
	run.Round = nil
	if unmasking {
		// The unmasking phases close now; the executor unmasks.
		for _, g := range r.Groups {
			if g.err == nil && g.phase == phaseUnmask {
				s.emit(PhaseClosed{Phase: phaseUnmask, Seconds: now.Sub(g.phaseStart).Seconds(), Dropouts: len(g.waiting)})
			}
		}
		s.emit(CloseAttempt{Round: r})
		return
	}
	// Every group failed before anything was unmasked.
	s.abort(r.Abort(WithReasons(r.groupsFailed().Error(), run.Reasons), now))
}

// abort commits an attempt's abort.
func (s *decision) abort(cmd state.AbortRound) {
	s.emit(AbortAttempt{cmd})
}

// finish ends the job.
func (s *decision) finish(status pb.JobStatus, reason string, targetRound uint32) {
	s.log(slog.LevelInfo, "job finished", "status", status, "reason", reason)
	s.emit(Propose{state.CmdFinishJob, state.FinishJob{JobID: s.job.ID, Status: status, Reason: reason, TargetRound: targetRound, At: s.now.UnixMilli()}})
}

// startEvaluation asks a fraction of the connected participants to
// evaluate the model after round number; false if there is nobody to ask.
func (s *decision) startEvaluation(number uint32) bool {
	job, spec, now := s.job, s.job.Spec, s.now
	connected := slices.DeleteFunc(s.World.Connected(spec.Dataset), job.Refused)
	k := int(math.Ceil(spec.EvaluateFraction * float64(len(connected))))
	evaluators := choose(connected, k, seededRand(spec.Seed, uint64(number), 0xe7a1))
	if len(evaluators) == 0 {
		return false
	}
	digest := job.ModelDigest(number)
	deadline := now.Add(time.Duration(spec.RoundDeadline))
	var tasks []Addressed
	for _, id := range evaluators {
		tasks = append(tasks, Addressed{To: id, Task: &pb.Task{Kind: pb.TaskKind_TASK_KIND_EVALUATE, JobId: job.ID, Round: number, Model: spec.Model,
			Dataset: spec.Dataset, BaseModelDigest: digest, DeadlineUnixMs: deadline.UnixMilli(),
			JobOrganization: job.Organization, JobRounds: spec.Rounds, SecureAggregation: spec.SecureAggregation.Mode}})
	}
	ev := newEvalCollection(number, digest, evaluators, deadline)
	ev.intended = k
	s.run.Eval = ev
	s.run.EvalAttempted[number] = true
	s.emit(AskEvaluation{Eval: ev, Tasks: tasks})
	return true
}

// open draws the next round attempt's cohort and prepares the round, or
// waits (too few participants, or secure aggregation cannot start yet),
// or ends the job (nobody can train it, or its privacy budget is spent).
func (s *decision) open() {
	job, run, spec, now := s.job, s.run, s.job.Spec, s.now
	connected := slices.DeleteFunc(s.World.Connected(spec.Dataset), job.Refused)
	at, connected := s.roundTime(connected, max(int(spec.MinParticipants), 1))
	// k is the number of updates the round wants; the cohort is larger
	// when the job expects some of it not to answer (cohortSize).
	k := int(spec.ParticipantsPerRound)
	if k == 0 {
		k = int(math.Ceil(spec.ParticipantsFraction * float64(len(connected))))
	}
	if spec.SecureAggregation.Enabled() {
		k = min(k, state.MaxSecureCohort)
	}
	if len(connected) < int(spec.MinParticipants) || len(connected) == 0 {
		// Nobody registered holds the job's dataset: no round can ever
		// open, so there are no attempts to count. The job fails by the
		// rule that refuses such a job at submission.
		if why, noHolder := state.Untrainable(spec, s.participants()); noHolder {
			s.finish(pb.JobStatus_JOB_STATUS_FAILED, "no participant can train this job: "+why, 0)
			return
		}
		s.waiting("waiting for participants", "connected", len(connected), "minimum", spec.MinParticipants)
		return
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
	connected = job.RetryCandidates(number, connected, max(k, int(spec.MinParticipants)))
	size := job.CohortSize(k, len(connected))
	rng := seededRand(spec.Seed, uint64(number), uint64(attempt))
	// Participants silent in the job's recent attempts are drawn less
	// often (selectionWeights), never less than minSelectionWeight.
	selection := job.SelectionWeights()
	pick := func(ids []string, n int) []string { return chooseWeighted(ids, n, selection, rng) }
	var cohort []string
	var members [][]string
	if a := spec.Aggregation; a.Grouped() {
		region := func(id string) string {
			if p := s.participant(id); p != nil {
				return p.Region
			}
			return ""
		}
		var err error
		if cohort, members, err = chooseGroups(connected, size, int(a.Groups), a.GroupBy, region, pick, rng); err != nil {
			s.waiting("cannot open a round with grouped secure aggregation yet", "connected", len(connected), "err", err)
			return
		}
	} else {
		cohort = pick(connected, size)
	}
	samplingRate := float64(len(cohort)) / float64(len(connected))
	if d := spec.DP; d != nil && d.MaxEpsilon > 0 {
		if eps := job.EpsilonAfterRound(samplingRate); eps > d.MaxEpsilon {
			s.finish(pb.JobStatus_JOB_STATUS_SUCCEEDED, fmt.Sprintf(
				"privacy budget spent: round %d would take ε from %.4g to %.4g, above max_epsilon %.4g (δ = %g)",
				number, job.Epsilon(), eps, d.MaxEpsilon, d.EffectiveDelta()), 0)
			return
		}
	}
	mspec, err := model.ParseSpec(spec.Model)
	if err != nil {
		s.log(slog.LevelWarn, "scheduling job", "err", fmt.Errorf("round %d: %w", number, err))
		return
	}
	length := mspec.NumParams()
	baseDigest := job.ModelDigest(number - 1)
	deadline := now.Add(time.Duration(spec.RoundDeadline))
	var groups []*SecureRound
	var rule aggregate.Rule
	if spec.SecureAggregation.Enabled() {
		if members == nil {
			members = [][]string{cohort}
		}
		if groups, err = s.secureGroups(number, attempt, members, k, length, deadline); err != nil {
			s.waiting("cannot open a round with secure aggregation yet", "cohort", len(cohort), "err", err)
			return
		}
	} else if rule, err = aggregate.NewRule(spec.Aggregation.RuleConfig(), length); err != nil {
		s.log(slog.LevelWarn, "scheduling job", "err", fmt.Errorf("round %d: %w", number, err))
		return
	}
	weights, declared := s.cohortWeights(cohort)
	rec := state.RoundRecord{Number: number, Attempt: attempt, Cohort: cohort, BaseDigest: baseDigest, OpenedAt: now.UnixMilli(), Deadline: deadline.UnixMilli()}
	if spec.SimulatedClock != nil {
		rec.SimulatedAt = at.UnixMilli()
	}
	// The base model is fetched by the executor (openAttempt), before the
	// round is committed.
	r := NewRound(job.ID, number, attempt, cohort, weights, length, baseDigest, deadline, spec.MinUpdates(len(cohort)), rule)
	r.maxNorm, r.epochs, r.SamplingRate, r.Groups = spec.EffectiveMaxUpdateNorm(), spec.LocalEpochs, samplingRate, groups
	r.Opened, r.straggler, r.budget = now, spec.EffectiveStragglerFactor(), time.Duration(spec.LocalTimeBudget)
	if k < len(cohort) {
		r.Wanted = k
	}
	for gi, g := range groups {
		for _, id := range g.ids {
			r.groupOf[id] = gi
		}
	}
	if d := spec.DP; d != nil && d.Mode == state.DPCentral {
		r.dpClip, r.dpNoise = d.Clip, d.NoiseMultiplier*d.Clip
	}
	run.waitingLogged = false
	var tasks []Addressed
	for _, id := range cohort {
		t := &pb.Task{
			Kind: pb.TaskKind_TASK_KIND_TRAIN, JobId: job.ID, Round: number, Attempt: attempt, Model: spec.Model,
			Dataset: spec.Dataset, BaseModelDigest: baseDigest, LocalEpochs: spec.LocalEpochs, BatchSize: spec.BatchSize,
			LearningRate: spec.LearningRate, ProxMu: spec.ProxMu, DeadlineUnixMs: deadline.UnixMilli(),
			Seed:            TaskSeed(spec.Seed, number, attempt, id),
			JobOrganization: job.Organization, JobRounds: spec.Rounds, SecureAggregation: spec.SecureAggregation.Mode,
			LocalTimeBudgetMs: uint64(time.Duration(spec.LocalTimeBudget) / time.Millisecond),
		}
		g := r.Group(id)
		if g != nil {
			t.Secagg = g.trainTask(id)
		}
		t.Dp = dpTask(spec.DP, g)
		tasks = append(tasks, Addressed{To: id, Task: t})
	}
	s.emit(OpenAttempt{Round: r, Cmd: state.OpenRound{JobID: job.ID, Round: rec, Declared: declared}, Tasks: tasks})
}

// waiting logs, once per wait, why no round opens yet.
func (s *decision) waiting(msg string, args ...any) {
	if !s.run.waitingLogged {
		s.log(slog.LevelInfo, msg, args...)
		s.run.waitingLogged = true
	}
}

// participants returns every registered participant, sorted by ID, read
// from the World once per decision.
func (s *decision) participants() []*state.Participant {
	if s.registry == nil {
		s.registered = s.World.Participants()
		s.registry = make(map[string]*state.Participant, len(s.registered))
		for _, p := range s.registered {
			s.registry[p.ID] = p
		}
	}
	return s.registered
}

// participant returns a registered participant (nil: unknown).
func (s *decision) participant(id string) *state.Participant {
	s.participants()
	return s.registry[id]
}

// secureGroups prepares secure aggregation for a round that wants updates
// of a cohort split into members: one group, or the job's
// aggregation.groups in grouped mode, each with its own session, graph and
// threshold, and its share of the updates wanted.
func (s *decision) secureGroups(number, attempt uint32, members [][]string, wanted, length int, deadline time.Time) ([]*SecureRound, error) {
	job, spec := s.job, s.job.Spec
	cohort := 0
	for _, m := range members {
		cohort += len(m)
	}
	var groups []*SecureRound
	for i, m := range members {
		g := uint32(0)
		if spec.Aggregation.Grouped() {
			g = uint32(i + 1)
		}
		minInputs := 0
		if len(members) == 1 {
			minInputs = spec.MinUpdates(len(m))
		}
		sr, err := newSecureRound(spec.SecureAggregation, protocol.SecAggSession(job.ID, number, attempt, g), g, m, length,
			float64(spec.EffectiveMaxExamples()), s.now, deadline, s.CA, spec.DP, minInputs)
		if err != nil {
			if g > 0 {
				return nil, fmt.Errorf("group %d of %d: %w", g, len(members), err)
			}
			return nil, err
		}
		if share := (wanted*len(m) + cohort - 1) / cohort; share < len(m) {
			sr.wanted = share
		}
		sr.straggler, sr.budget = spec.EffectiveStragglerFactor(), time.Duration(spec.LocalTimeBudget)
		groups = append(groups, sr)
	}
	return groups, nil
}

// cohortWeights returns each cohort member's FedAvg weight in this job, and
// the counts to fix for members at their first task of the job: the
// example count it registered with, capped at the job's max_examples. A
// participant's weight never changes afterwards, whatever it claims later.
func (s *decision) cohortWeights(cohort []string) (weights, declared map[string]uint64) {
	job := s.job
	weights, declared = map[string]uint64{}, map[string]uint64{}
	for _, id := range cohort {
		n, ok := job.Declared[id]
		if !ok {
			if p := s.participant(id); p != nil {
				n = job.Spec.Weight(p.Examples)
			}
			n = max(n, 1)
			declared[id] = n
		}
		weights[id] = job.Spec.Weight(n)
	}
	return weights, declared
}
