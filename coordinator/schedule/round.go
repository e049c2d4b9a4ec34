package schedule

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Round is the leader's in-memory view of one open round attempt: the base
// model, the aggregation rule's running state and who has contributed. It
// does no I/O and takes time as an argument, so deadlines and dropouts are
// tested without sockets or sleeps. The leader guards it with its own lock.
type Round struct {
	JobID           string
	Number, Attempt uint32
	Cohort          map[string]bool
	CohortList      []string
	// base is the model the round trains from, of length parameters; the
	// executor fetches it before the round opens.
	Base       []float32
	Length     int
	BaseDigest string
	Deadline   time.Time
	minUpdates int
	// rule combines plain updates (FedAvg or a robust rule).
	rule         aggregate.Rule
	Contributors []string
	examples     uint64
	receiving    map[string]float64 // uploads admitted but not yet added: the share of the work each did
	Done         map[string]bool    // contributors, as a set
	// weights are the cohort's FedAvg weights: each member's example count
	// as fixed at its first task of the job, capped at the job's
	// max_examples. What an update's header claims does not change them.
	weights map[string]uint64
	// refused are cohort members whose site policy refused the job; the
	// round does not wait for them.
	Refused map[string]bool
	// maxNorm refuses an update whose L2 norm is larger (0: no bound).
	maxNorm float64
	// epochs is the local epochs each task asks for: an update that did
	// fewer (its local time budget ran out) weighs its share of the work.
	epochs uint32
	// dpClip, when positive, is central DP: every update is clipped to
	// this L2 norm and weighs 1; dpNoise is the noise's standard deviation
	// on the sum, added when the round closes.
	dpClip, dpNoise float64
	// samplingRate is the cohort's share of the eligible participants.
	SamplingRate float64
	// groups run secure aggregation when the job asks for it (one group,
	// or several in grouped mode); then updates arrive masked, rule
	// combines the group means and deadline bounds training only.
	Groups  []*SecureRound
	groupOf map[string]int
	// wanted is how many updates the round wants: once that many arrived
	// it closes, and later uploads are refused as late (0: the whole
	// cohort's).
	Wanted int
	// opened is when the round opened; arrived are the times since then
	// at which the contributors' updates were seen, in order (outcome
	// notes them). straggler and budget set the straggler rule
	// (stragglersCut; straggler 0: off).
	Opened    time.Time
	arrived   []time.Duration
	straggler float64
	budget    time.Duration
	// late are cohort members whose update came after the round had its
	// wanted updates.
	late map[string]bool
	// closedBy says why the round closed, for its commit.
	ClosedBy string
}

// Abort is the command that aborts the round for reason, with who had
// answered and who was silent.
func (r *Round) Abort(reason string, now time.Time) state.AbortRound {
	return state.AbortRound{JobID: r.JobID, Number: r.Number, Attempt: r.Attempt, Reason: reason, At: now.UnixMilli(),
		Silent: r.Silent(), Responders: r.responders()}
}

// secureNotes says how a round with secure aggregation closed: how each
// phase that went on without some members closed.
func (r *Round) secureNotes() string {
	var notes []string
	for _, g := range r.Groups {
		for _, n := range g.notes {
			if len(r.Groups) > 1 {
				n = fmt.Sprintf("group %d %s", g.group, n)
			}
			notes = append(notes, n)
		}
	}
	if len(notes) == 0 {
		return "secure aggregation: every cohort member answered every phase"
	}
	return "secure aggregation: " + strings.Join(notes, "; ")
}

// NewRound opens a round attempt of plain updates combined by rule.
func NewRound(jobID string, number, attempt uint32, cohort []string, weights map[string]uint64, length int, baseDigest string, deadline time.Time, minUpdates int, rule aggregate.Rule) *Round {
	r := &Round{
		JobID: jobID, Number: number, Attempt: attempt, CohortList: cohort, Cohort: map[string]bool{},
		Length: length, BaseDigest: baseDigest, Deadline: deadline, minUpdates: minUpdates, rule: rule,
		receiving: map[string]float64{}, Done: map[string]bool{}, weights: weights, Refused: map[string]bool{},
		groupOf: map[string]int{}, late: map[string]bool{},
	}
	for _, id := range cohort {
		r.Cohort[id] = true
	}
	return r
}

// Unmasked reports whether any group's sum was unmasked.
func (r *Round) Unmasked() bool {
	return slices.ContainsFunc(r.Groups, func(g *SecureRound) bool { return g.phase == phaseDone })
}

// Secure reports whether the round's updates arrive masked.
func (r *Round) Secure() bool { return len(r.Groups) > 0 }

// Group is the secure-aggregation group from belongs to (nil: none).
func (r *Round) Group(from string) *SecureRound {
	g, ok := r.groupOf[from]
	if !ok || !r.Secure() {
		return nil
	}
	return r.Groups[g]
}

// maxEvalExamples bounds the examples one evaluation report may claim.
const maxEvalExamples = 1 << 32

// Admit checks an update's header before its data is received and reserves
// the sender's slot: the round and attempt must be this one, the sender in
// the cohort and not already heard from, the length the model's.
func (r *Round) Admit(from string, h *pb.UpdateHeader, now time.Time) error {
	if err := r.trainedIn(h, "update"); err != nil {
		return err
	}
	switch {
	case !now.Before(r.Deadline):
		return fmt.Errorf("%w: round %d's deadline has passed", ErrWrongRound, r.Number)
	case !r.Cohort[from]:
		return fmt.Errorf("%w: %s is not in round %d's cohort", ErrNotInCohort, from, r.Number)
	case r.Done[from] || r.IsReceiving(from):
		return fmt.Errorf("%w: %s, round %d", ErrDuplicate, from, r.Number)
	case r.full() && !r.Secure():
		r.late[from] = true
		return r.closedErr(from)
	case r.Secure():
		return fmt.Errorf("%w: round %d uses secure aggregation; updates must be masked", state.ErrBadUpdate, r.Number)
	case h.GetNumParams() != uint64(r.Length):
		return fmt.Errorf("%w: update has %d parameters; the model has %d", state.ErrBadUpdate, h.GetNumParams(), r.Length)
	case h.GetExamples() == 0:
		return fmt.Errorf("%w: update claims 0 examples", state.ErrBadUpdate)
	case r.Refused[from]:
		return fmt.Errorf("%w: %s refused job %s", state.ErrConflict, from, r.JobID)
	case h.GetEpochsDone() > r.epochs:
		return fmt.Errorf("%w: update claims %d local epochs; the task asked for %d", state.ErrBadUpdate, h.GetEpochsDone(), r.epochs)
	}
	r.receiving[from] = r.work(h.GetEpochsDone())
	return nil
}

// IsReceiving reports whether from's upload is admitted and arriving.
func (r *Round) IsReceiving(from string) bool {
	_, ok := r.receiving[from]
	return ok
}

// work is the share of the task's epochs an upload that completed done of
// them did (0 means all).
func (r *Round) work(done uint32) float64 {
	if done == 0 || r.epochs == 0 {
		return 1
	}
	return float64(done) / float64(r.epochs)
}

// AdmitMasked checks a masked input's header and reserves the sender's slot.
func (r *Round) AdmitMasked(from string, h *pb.UpdateHeader) error {
	if err := r.trainedIn(h, "masked input"); err != nil {
		return err
	}
	g := r.Group(from)
	if g == nil {
		if r.Secure() {
			return fmt.Errorf("%w: %s is not in round %d's cohort", ErrNotInCohort, from, r.Number)
		}
		return fmt.Errorf("%w: round %d does not use secure aggregation; send the update unmasked", state.ErrBadUpdate, r.Number)
	}
	return g.admitMasked(from, h.GetNumParams())
}

// Names checks that a message (what) names this round attempt.
func (r *Round) Names(number, attempt uint32, what string) error {
	if number != r.Number || attempt != r.Attempt {
		return fmt.Errorf("%w: %s for round %d attempt %d; job %s has round %d attempt %d open",
			ErrWrongRound, what, number, attempt, r.JobID, r.Number, r.Attempt)
	}
	return nil
}

// trainedIn checks that an upload's header names this round attempt and was
// trained from its base model.
func (r *Round) trainedIn(h *pb.UpdateHeader, what string) error {
	if err := r.Names(h.GetRound(), h.GetAttempt(), what); err != nil {
		return err
	}
	if h.GetBaseModelDigest() != r.BaseDigest {
		return fmt.Errorf("%w: %s trained from %s; the round's base model is %s", ErrWrongRound, what, h.GetBaseModelDigest(), r.BaseDigest)
	}
	return nil
}

// Release gives back a slot admit reserved when the upload failed.
func (r *Round) Release(from string) { delete(r.receiving, from) }

// full reports whether the round has the updates it wants.
func (r *Round) full() bool { return r.Wanted > 0 && len(r.Contributors) >= r.Wanted }

// closedErr is the refusal of from's update that came after the round had
// the updates it wants.
func (r *Round) closedErr(from string) error {
	return fmt.Errorf("%w: round %d attempt %d has the %d updates it wanted; %s's is not needed", ErrRoundClosed, r.Number, r.Attempt, r.Wanted, from)
}

// Add gives an admitted update to the round's rule, weighted by the
// sender's fixed weight (see weights) times the share of the work it did;
// under central DP it is clipped first and weighs 1. An update that comes
// once the round has the updates it wants is refused (ErrRoundClosed).
func (r *Round) Add(from string, delta []float32) error {
	share := r.receiving[from]
	delete(r.receiving, from)
	if r.full() {
		r.late[from] = true
		return r.closedErr(from)
	}
	if r.maxNorm > 0 {
		if n := aggregate.Norm(delta); !(n <= r.maxNorm) {
			return fmt.Errorf("%w: update norm %.4g exceeds the job's max_update_norm %.4g", state.ErrBadUpdate, n, r.maxNorm)
		}
	}
	examples := float64(r.weights[from]) * share
	w := examples
	if r.dpClip > 0 {
		dp.ClipL2(delta, r.dpClip)
		w = 1
	}
	if err := r.rule.Add(delta, w); err != nil {
		return fmt.Errorf("%w: %w", state.ErrBadUpdate, err)
	}
	r.Done[from] = true
	r.Contributors = append(r.Contributors, from)
	r.examples += uint64(math.Round(examples))
	return nil
}

// update is the round's combined update: the rule's result, plus under
// central DP Gaussian noise of standard deviation dpNoise on the sum
// (dpNoise / contributors on the mean), drawn from rng.
func (r *Round) update(rng *rand.Rand) ([]float32, error) {
	delta, err := r.rule.Result()
	if err != nil {
		return nil, err
	}
	if r.dpNoise > 0 {
		dp.AddGaussian(delta, r.dpNoise/float64(len(r.Contributors)), rng)
	}
	return delta, nil
}

// Result is the combined update of a round that closed (decide detached
// it: nothing else touches it), with its contributors, sorted, and the
// examples they stand for. With secure aggregation it first unmasks the
// sums of the groups whose unmasking phase closed, the heavy step of a
// secure round, and notes how the phases closed (closedBy).
func (r *Round) Result(now time.Time, rule aggregate.RuleConfig, rng *rand.Rand) (delta []float32, contributors []string, examples uint64, err error) {
	if !r.Secure() {
		if delta, err = r.update(rng); err != nil {
			return nil, nil, 0, fmt.Errorf("aggregation: %w", err)
		}
		return delta, slices.Sorted(slices.Values(r.Contributors)), r.examples, nil
	}
	// Decide detached the round once each group's unmasking phase could
	// close, and no answer can arrive since: close them.
	for _, g := range r.Groups {
		if g.err == nil && g.phase == phaseUnmask {
			if _, _, err := g.closePhase(now); err != nil {
				g.err = err
			}
		}
	}
	if delta, contributors, examples, err = r.secureUpdate(rule); err != nil {
		return nil, nil, 0, err
	}
	r.ClosedBy = r.secureNotes()
	return delta, contributors, examples, nil
}

// Refuse records that a cohort member's site refused the job: the round
// stops waiting for it.
func (r *Round) Refuse(from string) {
	if r.Cohort[from] && !r.Done[from] {
		r.Refused[from] = true
	}
}

type roundOutcome int

const (
	roundPending  roundOutcome = iota
	roundComplete              // every cohort member contributed
	roundCommit                // deadline passed with enough contributors
	roundAbort                 // deadline passed with too few
)

// outcome decides, at now, whether the round closes and says why. It
// first notes the arrival, at now, of the updates added since it last
// looked (the straggler rule's times). A round closes when every cohort
// member answered, when the updates it wants arrived, when stragglers
// held it too long (commit with enough updates, abort with too few), or
// at its deadline.
func (r *Round) outcome(now time.Time) (roundOutcome, string) {
	for len(r.arrived) < len(r.Contributors) {
		r.arrived = append(r.arrived, now.Sub(r.Opened))
	}
	n, cohort := len(r.Contributors), len(r.CohortList)
	expected := cohort - len(r.Refused)
	switch {
	case n == cohort:
		return roundComplete, "every cohort member's update arrived"
	case n+len(r.Refused) == cohort && n >= max(1, r.minUpdates):
		return roundComplete, "every cohort member answered or said why not" // everyone who will answer has
	case r.full() && n >= r.minUpdates:
		return roundCommit, fmt.Sprintf("the %d updates wanted arrived (%d selected)", r.Wanted, cohort)
	case len(r.receiving) == 0 && now.Before(r.Deadline) && stragglersCut(r.arrived, expected, r.straggler, r.budget, now.Sub(r.Opened)):
		why := fmt.Sprintf("stragglers: %d of %d updates after %s, %g× the median member's %s",
			n, cohort, roundDuration(now.Sub(r.Opened)), r.straggler, roundDuration(median(r.arrived, expected)))
		if n >= max(1, r.minUpdates) {
			return roundCommit, why
		}
		return roundAbort, fmt.Sprintf("%s (minimum %d)", why, r.minUpdates)
	case now.Before(r.Deadline):
		return roundPending, ""
	case n >= r.minUpdates:
		return roundCommit, fmt.Sprintf("deadline passed with %d of %d updates", n, cohort)
	default:
		return roundAbort, fmt.Sprintf("deadline passed with %d of %d updates (minimum %d)", n, cohort, r.minUpdates)
	}
}

// EvalCollection sums the federated evaluation of one model while reports
// arrive. Pure, like round.
type EvalCollection struct {
	ModelRound uint32
	digest     string
	Expected   map[string]bool
	Got        map[string]bool
	sum        state.Evaluation
	deadline   time.Time
	// intended is how many evaluators the job wanted (evaluate_fraction of
	// those connected); expected holds those who could be asked.
	intended int
}

func newEvalCollection(modelRound uint32, digest string, evaluators []string, deadline time.Time) *EvalCollection {
	e := &EvalCollection{ModelRound: modelRound, digest: digest, Expected: map[string]bool{}, Got: map[string]bool{}, deadline: deadline}
	for _, id := range evaluators {
		e.Expected[id] = true
	}
	return e
}

// Add adds one participant's evaluation report.
func (e *EvalCollection) Add(from string, req *pb.ReportEvaluationRequest) error {
	switch {
	case req.GetModelRound() != e.ModelRound || req.GetModelDigest() != e.digest:
		return fmt.Errorf("%w: evaluation of round %d (%s); collecting round %d (%s)", ErrWrongRound, req.GetModelRound(), req.GetModelDigest(), e.ModelRound, e.digest)
	case !e.Expected[from]:
		return fmt.Errorf("%w: %s was not asked to evaluate round %d", ErrNotInCohort, from, e.ModelRound)
	case e.Got[from]:
		return fmt.Errorf("%w: evaluation from %s for round %d", ErrDuplicate, from, e.ModelRound)
	case req.GetExamples() == 0 || req.GetExamples() > maxEvalExamples || req.GetCorrect() > req.GetExamples():
		return fmt.Errorf("%w: evaluation of %d examples with %d correct", state.ErrBadUpdate, req.GetExamples(), req.GetCorrect())
	case math.IsNaN(req.GetLossSum()) || math.IsInf(req.GetLossSum(), 0) || req.GetLossSum() < 0:
		return fmt.Errorf("%w: evaluation loss %v", state.ErrBadUpdate, req.GetLossSum())
	}
	e.Got[from] = true
	e.sum.Examples += req.GetExamples()
	e.sum.Correct += req.GetCorrect()
	e.sum.LossSum += req.GetLossSum()
	e.sum.Reporters++
	return nil
}

// finished reports whether every evaluator reported or the deadline passed.
func (e *EvalCollection) finished(now time.Time) bool {
	return len(e.Got) == len(e.Expected) || !now.Before(e.deadline)
}

// decisive reports whether the evaluation heard from enough evaluators to
// stop a job at its target: at least half of those the job wanted, however
// many could be asked. An evaluation that heard from a few (the others'
// task queues full, or busy training the next round) is recorded, but a
// handful of validation shards cannot say the model reached the target:
// one site's 100 examples once read 100% for a model at 97.8% on the whole
// test set.
func (e *EvalCollection) decisive() bool {
	return 2*len(e.Got) >= max(len(e.Expected), e.intended)
}

// groupsFailed says why the round's secure aggregation failed when every
// group did before unmasking: the group's reason, or each group's.
func (r *Round) groupsFailed() error {
	if len(r.Groups) == 1 {
		return r.Groups[0].err
	}
	var failed []error
	for _, g := range r.Groups {
		failed = append(failed, g.failure())
	}
	return everyGroupFailed(failed)
}

// failure is why group g failed, naming it.
func (g *SecureRound) failure() error { return fmt.Errorf("group %d: %w", g.group, g.err) }

// everyGroupFailed joins the groups' failures.
func everyGroupFailed(failed []error) error {
	return fmt.Errorf("every secure-aggregation group failed: %w", errors.Join(failed...))
}

// secureUpdate combines the means of the groups that finished secure
// aggregation: the one group's mean, or in grouped mode the rule over the
// group means, each weighing its group's Σ w. It fails when no group
// finished or fewer than minUpdates inputs made the sums.
func (r *Round) secureUpdate(rule aggregate.RuleConfig) (delta []float32, contributors []string, examples uint64, err error) {
	if len(r.Groups) == 1 {
		g := r.Groups[0]
		if g.err != nil {
			return nil, nil, 0, r.groupsFailed()
		}
		delta, _, contributors, examples, err = g.mean(r.minUpdates)
		return delta, contributors, examples, err
	}
	combined, err := aggregate.NewRule(rule, r.Length)
	if err != nil {
		return nil, nil, 0, err
	}
	var failed []error
	for _, g := range r.Groups {
		if g.err != nil {
			failed = append(failed, g.failure())
			continue
		}
		mean, weight, who, n, err := g.mean(1)
		if err == nil {
			err = combined.Add(mean, weight)
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("group %d: %w", g.group, err))
			continue
		}
		contributors = append(contributors, who...)
		examples += n
	}
	switch {
	case combined.Count() == 0:
		return nil, nil, 0, everyGroupFailed(failed)
	case rule.Name != "" && rule.Name != aggregate.RuleFedAvg && combined.Count() < 3:
		return nil, nil, 0, fmt.Errorf("%d of %d secure-aggregation groups finished; a %s needs 3 (%w)", combined.Count(), len(r.Groups), rule.Name, errors.Join(failed...))
	case rule.Name == aggregate.RuleTrimmedMean && int(rule.Beta*float64(combined.Count())) < 1:
		return nil, nil, 0, fmt.Errorf("%d of %d secure-aggregation groups finished: too few for a trimmed mean with beta %g to trim any (%w)", combined.Count(), len(r.Groups), rule.Beta, errors.Join(failed...))
	case len(contributors) < r.minUpdates:
		return nil, nil, 0, fmt.Errorf("%d masked inputs in %d groups; the job needs at least %d", len(contributors), combined.Count(), r.minUpdates)
	}
	if delta, err = combined.Result(); err != nil {
		return nil, nil, 0, fmt.Errorf("combining %d group means: %w", combined.Count(), err)
	}
	slices.Sort(contributors)
	return delta, contributors, examples, nil
}

// chooseGroups draws a cohort of k from connected for grouped secure
// aggregation and splits it into n groups. With by "random" the cohort is
// drawn as for any round and dealt out over the groups. With by "region"
// the groups are fixed sets of regions (largest region first, each on the
// group with the fewest participants), and each group's share of k is
// drawn from its regions' participants, so the members of one region
// always share a group. pick draws k of a sorted list (the selection
// weighting: chooseWeighted), rng deals the random groups. Every group
// needs 3 members.
func chooseGroups(connected []string, k, n int, by string, region func(id string) string, pick func(ids []string, k int) []string, rng *rand.Rand) (cohort []string, groups [][]string, err error) {
	groups = make([][]string, n)
	if by != state.GroupByRegion {
		cohort = pick(connected, k)
		shuffled := slices.Clone(cohort)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for i, id := range shuffled {
			groups[i%n] = append(groups[i%n], id)
		}
	} else {
		byRegion := map[string][]string{}
		for _, id := range connected {
			byRegion[region(id)] = append(byRegion[region(id)], id)
		}
		regions := slices.Sorted(maps.Keys(byRegion))
		slices.SortStableFunc(regions, func(a, b string) int { return len(byRegion[b]) - len(byRegion[a]) })
		pools := make([][]string, n)
		for _, reg := range regions {
			smallest := 0
			for i := range pools {
				if len(pools[i]) < len(pools[smallest]) {
					smallest = i
				}
			}
			pools[smallest] = append(pools[smallest], byRegion[reg]...)
		}
		for i, pool := range pools {
			share := k / n
			if i < k%n {
				share++
			}
			slices.Sort(pool)
			groups[i] = pick(pool, share)
			cohort = append(cohort, groups[i]...)
		}
		slices.Sort(cohort)
	}
	for i, g := range groups {
		if len(g) < 3 {
			return nil, nil, fmt.Errorf("secure-aggregation group %d of %d would have %d members; each needs at least 3", i+1, n, len(g))
		}
	}
	return cohort, groups, nil
}

// Silent returns the cohort members that had not answered when the round
// closed: no update (none arriving either; under secure aggregation, not
// among those still in the protocol), no refusal or failure with a reason,
// and no message that came too late.
func (r *Round) Silent() []string {
	answered := r.answeredSet()
	var out []string
	for _, id := range r.CohortList {
		if !answered[id] && !r.Refused[id] && !r.isLate(id) && !r.IsReceiving(id) {
			out = append(out, id)
		}
	}
	return out
}

// responders returns the cohort members that had answered: the
// contributors of a plain round; under secure aggregation, the members
// still in the protocol (see SecureRound.answered).
func (r *Round) responders() []string {
	answered := r.answeredSet()
	var out []string
	for _, id := range r.CohortList {
		if answered[id] {
			out = append(out, id)
		}
	}
	return out
}

// answeredSet is who answered, as a set (see responders).
func (r *Round) answeredSet() map[string]bool {
	if !r.Secure() {
		return r.Done
	}
	out := map[string]bool{}
	for _, g := range r.Groups {
		for _, i := range g.answered() {
			out[g.ids[i]] = true
		}
	}
	return out
}

// isLate reports whether id's update, or under secure aggregation one of
// its messages, came after the round or its phase had closed.
func (r *Round) isLate(id string) bool {
	if g := r.Group(id); g != nil && g.late[g.index[id]] {
		return true
	}
	return r.late[id]
}
