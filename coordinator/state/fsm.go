package state

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/audit"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// CommandType is the first byte of every Raft log entry the FSM applies.
type CommandType byte

const (
	CmdRegisterParticipant CommandType = iota + 1
	cmdSubmitJob
	cmdCancelJob
	CmdOpenRound
	CmdCommitRound
	CmdAbortRound
	CmdRecordEvaluation
	CmdFinishJob
	CmdAdminAction
	CmdRecordRefusal
	CmdRecordTaskFailure
	CmdRecordLate
)

// ignoreUnknownFlag marks a command that an older FSM that does not know it
// may skip (as Nomad does); without it, an unknown command is corruption.
const ignoreUnknownFlag CommandType = 0x80

// RegisterParticipant adds a participant to the registry, or updates it.
type RegisterParticipant struct {
	Participant Participant `json:"participant"`
}

type submitJob struct {
	Job Job `json:"job"`
}

type cancelJob struct {
	JobID  string `json:"job_id"`
	Reason string `json:"reason"`
	At     int64  `json:"at"`
}

// OpenRound opens the next attempt of a job's next round.
type OpenRound struct {
	JobID string      `json:"job_id"`
	Round RoundRecord `json:"round"`
	// Declared fixes the example count of cohort members at their first
	// task of the job (capped at its max_examples); later claims do not
	// change it.
	Declared map[string]uint64 `json:"declared,omitempty"`
}

// CommitRound commits a round attempt's new model and who made it.
type CommitRound struct {
	JobID        string   `json:"job_id"`
	Number       uint32   `json:"number"`
	Attempt      uint32   `json:"attempt"`
	Digest       string   `json:"digest"`
	Contributors []string `json:"contributors"`
	Examples     uint64   `json:"examples"`
	At           int64    `json:"at"`
	// OptimizerDigest names the server optimiser's state after the round.
	OptimizerDigest string `json:"optimizer_digest,omitempty"`
	// SamplingRate is the cohort's share of the eligible participants; a
	// job with dp composes it into its privacy accountant.
	SamplingRate float64 `json:"sampling_rate,omitempty"`
	// PrivacyRDP is the round's per-order RDP (jobs with dp), and Epsilon
	// and Order the job's ε after it, computed by the leader (see
	// Job.roundPrivacy).
	PrivacyRDP []float64 `json:"privacy_rdp,omitempty"`
	Epsilon    float64   `json:"epsilon,omitempty"`
	Order      float64   `json:"order,omitempty"`
	// Reason says why the attempt closed when it did: every member
	// answered, the updates wanted arrived, stragglers cut, or the
	// deadline.
	Reason string `json:"reason,omitempty"`
	// Silent are the cohort members that had sent nothing, nor said why,
	// when it closed (see RoundRecord.Silent).
	Silent []string `json:"silent,omitempty"`
}

// AbortRound ends a round attempt without a model, saying why.
type AbortRound struct {
	JobID   string `json:"job_id"`
	Number  uint32 `json:"number"`
	Attempt uint32 `json:"attempt"`
	Reason  string `json:"reason"`
	At      int64  `json:"at"`
	// Silent are the cohort members that neither uploaded nor said why
	// (a deadline abort of a plain round): the round's retry leaves them
	// out (Job.retryCandidates).
	Silent []string `json:"silent,omitempty"`
	// Responders are the cohort members that had answered when it
	// aborted.
	Responders []string `json:"responders,omitempty"`
	// PrivacyRDP, Epsilon and Order charge a job with dp for a round whose
	// noised result was computed before it aborted (see commitRound).
	PrivacyRDP []float64 `json:"privacy_rdp,omitempty"`
	Epsilon    float64   `json:"epsilon,omitempty"`
	Order      float64   `json:"order,omitempty"`
}

// RecordLate notes that a participant recorded silent in a closed attempt
// did answer, too late to count: its update (or secure-aggregation
// message) reached the leader after the attempt or its phase closed.
type RecordLate struct {
	JobID       string `json:"job_id"`
	Number      uint32 `json:"number"`
	Attempt     uint32 `json:"attempt"`
	Participant string `json:"participant"`
}

// RecordEvaluation records the federated evaluation of a committed model.
type RecordEvaluation struct {
	JobID      string     `json:"job_id"`
	ModelRound uint32     `json:"model_round"`
	Eval       Evaluation `json:"eval"`
}

// FinishJob ends a job: succeeded, failed or cancelled, and why.
type FinishJob struct {
	JobID       string       `json:"job_id"`
	Status      pb.JobStatus `json:"status"`
	Reason      string       `json:"reason"`
	TargetRound uint32       `json:"target_round"`
	At          int64        `json:"at"`
}

// EncodeCommand lays out a log entry: the type byte, then JSON.
func EncodeCommand(t CommandType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(t)}, b...), nil
}

// fsmState is everything the FSM holds; a snapshot is its JSON.
type fsmState struct {
	Participants map[string]*Participant `json:"participants"`
	Jobs         map[string]*Job         `json:"jobs"`
	// Governance: the policy, proposals by ID, what approved proposals
	// decided about coordinators, revoked certificates by serial, and the
	// audit log of every admin action.
	Policy      Policy                 `json:"policy"`
	Proposals   map[string]*Proposal   `json:"proposals"`
	MemberRules map[string]string      `json:"member_rules"`
	Revoked     map[string]*Revocation `json:"revoked"`
	Audit       []audit.Entry          `json:"audit"`
	// Nonces of the signed admin requests received (carried out or not),
	// with their action time, for replay checks; LastActionAt is the latest
	// action time, which the next may not precede by more than MaxSkew.
	Nonces       map[string]int64 `json:"nonces"`
	LastActionAt int64            `json:"last_action_at"`
}

// init fills the maps a decoded state may lack.
func (st *fsmState) init() {
	if st.Participants == nil {
		st.Participants = map[string]*Participant{}
	}
	if st.Jobs == nil {
		st.Jobs = map[string]*Job{}
	}
	if st.Proposals == nil {
		st.Proposals = map[string]*Proposal{}
	}
	if st.MemberRules == nil {
		st.MemberRules = map[string]string{}
	}
	if st.Revoked == nil {
		st.Revoked = map[string]*Revocation{}
	}
	if st.Nonces == nil {
		st.Nonces = map[string]int64{}
	}
}

// FSM is the replicated state machine. It never reads a clock or a random
// source: the leader writes times and seeds into commands. Reads take a read
// lock; Apply takes the write lock.
type FSM struct {
	mu       sync.RWMutex
	st       fsmState
	restores atomic.Int64
	// ca checks admin signatures (see adminAction); onRevoke, if set, is
	// told of revocations as they are applied (it must not block or call
	// back into the FSM).
	ca       *x509.CertPool
	onRevoke func([]Revocation)
	// changed is closed, under mu, by the next Apply or Restore (see Changed).
	changed chan struct{}
	// beforeApply, if set, runs before each command is applied, outside
	// mu: a seam through which tests hold an apply (nil in the binary).
	beforeApply atomic.Pointer[func(CommandType)]
}

var _ raft.FSM = (*FSM)(nil)

// NotifyRevocations makes the FSM tell fn of revocations as they are
// applied; fn must not block or call back into the FSM. Call it before the
// FSM is used.
func (f *FSM) NotifyRevocations(fn func([]Revocation)) { f.onRevoke = fn }

// Restores counts the snapshots the FSM has restored.
func (f *FSM) Restores() int64 { return f.restores.Load() }

// HoldApplies makes fn run before each command is applied, outside the
// FSM's lock (nil: none): a seam through which tests hold an apply, as a
// slow commit would. The binary never sets it.
func (f *FSM) HoldApplies(fn func(CommandType)) {
	if fn == nil {
		f.beforeApply.Store(nil)
		return
	}
	f.beforeApply.Store(&fn)
}

// NewFSM returns an empty FSM that checks admin signatures against the
// federation CA in ca (nil: it refuses every admin action).
func NewFSM(ca *x509.CertPool) *FSM {
	f := &FSM{ca: ca}
	f.st.init()
	return f
}

// Apply applies one committed log entry. Its return value is nil or an error
// explaining why the command did not fit the state (which reaches the caller
// through the future's Response). An entry that does not decode panics: it
// means a corrupt log.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	t := CommandType(l.Data[0])
	body := l.Data[1:]
	if hook := f.beforeApply.Load(); hook != nil {
		(*hook)(t)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signalLocked()
	var err error
	switch t &^ ignoreUnknownFlag {
	case CmdRegisterParticipant:
		err = applyJSON(body, f.applyRegisterParticipant)
	case cmdSubmitJob:
		err = applyJSON(body, f.applySubmitJob)
	case cmdCancelJob:
		err = applyJSON(body, f.applyCancelJob)
	case CmdOpenRound:
		err = applyJSON(body, f.applyOpenRound)
	case CmdCommitRound:
		err = applyJSON(body, f.applyCommitRound)
	case CmdAbortRound:
		err = applyJSON(body, f.applyAbortRound)
	case CmdRecordEvaluation:
		err = applyJSON(body, f.applyRecordEvaluation)
	case CmdFinishJob:
		err = applyJSON(body, f.applyFinishJob)
	case CmdRecordRefusal:
		err = applyJSON(body, f.applyRecordRefusal)
	case CmdRecordTaskFailure:
		err = applyJSON(body, f.applyRecordTaskFailure)
	case CmdRecordLate:
		err = applyJSON(body, f.applyRecordLate)
	case CmdAdminAction:
		var res any
		err = applyJSON(body, func(c *AdminAction) error {
			var err error
			res, err = f.applyAdminAction(c)
			return err
		})
		if err == nil {
			return res
		}
	default:
		if t&ignoreUnknownFlag != 0 {
			return nil
		}
		panic(fmt.Sprintf("coordinator: unknown command type %d at log index %d", t, l.Index))
	}
	return err
}

// Changed returns a channel closed when the FSM next applies an entry or
// restores a snapshot, so a reader waits for a state instead of polling:
// take the channel, check the state, and wait on the channel if the state
// is not there yet.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

// signalLocked wakes the readers waiting on Changed; f.mu is held.
func (f *FSM) signalLocked() {
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// applyJSON decodes body into a C and applies it. A body that does not
// decode is refused, the same way on every coordinator: the leader that
// wrote it may be hostile, and a panic here would stop every FSM at the
// same entry, for good.
func applyJSON[C any](body []byte, apply func(*C) error) error {
	var c C
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("%w: undecodable command: %v", ErrConflict, err)
	}
	return apply(&c)
}

// maxSerialsPerParticipant bounds the certificate serials remembered per
// participant (for revocation by name).
const maxSerialsPerParticipant = 8

func (f *FSM) applyRegisterParticipant(c *RegisterParticipant) error {
	p := c.Participant
	if old, ok := f.st.Participants[p.ID]; ok {
		p.RegisteredAt = old.RegisteredAt
		serials := slices.Clone(old.Serials)
		for _, s := range p.Serials {
			if !slices.Contains(serials, s) {
				serials = append(serials, s)
			}
		}
		p.Serials = serials[max(0, len(serials)-maxSerialsPerParticipant):]
	}
	f.st.Participants[p.ID] = &p
	return nil
}

// applySubmitJob refuses the unsigned job submissions of logs written
// before admin actions were signed (adminAction): a leader could write one
// in any organisation's name.
func (f *FSM) applySubmitJob(c *submitJob) error {
	return fmt.Errorf("%w: unsigned job submission %s; jobs are submitted by an admin's signed request", ErrForbidden, c.Job.ID)
}

// runningJob returns a running job for an apply to change: a copy that
// replaces the published one (editJob).
func (f *FSM) runningJob(id string) (*Job, error) {
	j, ok := f.st.Jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, id)
	}
	if !j.Running() {
		return nil, fmt.Errorf("%w: job %s is %s", ErrJobNotRunning, id, j.Status)
	}
	return f.editJob(j), nil
}

// editJob is how an apply changes a job: the FSM never changes a Job, or
// a RoundRecord, that readers may hold (JobView), so it publishes a
// shallow copy in the published one's place and returns it. The copy
// shares the round records, and every slice and map, with the original:
// an apply replaces a record it changes (editRound) and builds new slices
// and maps instead of writing into shared ones. The copy of the Rounds
// list is of pointers: a commit copies a few tens of kilobytes after
// 10,000 rounds, where cloning the job for every read copied megabytes.
func (f *FSM) editJob(j *Job) *Job {
	c := *j
	c.Rounds = slices.Clone(j.Rounds)
	f.st.Jobs[j.ID] = &c
	return &c
}

// editRound replaces round record i of a job from editJob by a copy and
// returns the copy, for an apply to change.
func (j *Job) editRound(i int) *RoundRecord {
	r := *j.Rounds[i]
	j.Rounds[i] = &r
	return &r
}

// editOpenRound is editRound of the open attempt, or nil if none is open.
func (j *Job) editOpenRound() *RoundRecord {
	if j.OpenRound() == nil {
		return nil
	}
	return j.editRound(len(j.Rounds) - 1)
}

// applyCancelJob refuses the unsigned cancellations of older logs, like
// applySubmitJob.
func (f *FSM) applyCancelJob(c *cancelJob) error {
	return fmt.Errorf("%w: unsigned cancellation of job %s; cancellations are signed and approved", ErrForbidden, c.JobID)
}

func (f *FSM) applyOpenRound(c *OpenRound) error {
	j, err := f.runningJob(c.JobID)
	if err != nil {
		return err
	}
	if r := j.OpenRound(); r != nil {
		return fmt.Errorf("%w: job %s round %d attempt %d is still open", ErrConflict, j.ID, r.Number, r.Attempt)
	}
	if c.Round.Number != j.CommittedRounds+1 {
		return fmt.Errorf("%w: job %s has %d committed rounds; cannot open round %d", ErrConflict, j.ID, j.CommittedRounds, c.Round.Number)
	}
	// Attempts are recorded in order: those of this round are the last.
	for i := len(j.Rounds) - 1; i >= 0 && j.Rounds[i].Number >= c.Round.Number; i-- {
		if r := j.Rounds[i]; r.Number == c.Round.Number && r.Attempt >= c.Round.Attempt {
			return fmt.Errorf("%w: round %d attempt %d already used", ErrConflict, r.Number, r.Attempt)
		}
	}
	r := c.Round
	r.Status = pb.RoundStatus_ROUND_STATUS_OPEN
	j.Rounds = append(j.Rounds, &r)
	var declared map[string]uint64
	for id, n := range c.Declared {
		if _, ok := j.Declared[id]; !ok {
			if declared == nil {
				declared = maps.Clone(j.Declared)
				if declared == nil {
					declared = map[string]uint64{}
				}
			}
			declared[id] = j.Spec.Weight(n)
		}
	}
	if declared != nil {
		j.Declared = declared
	}
	return nil
}

func (f *FSM) openAttempt(jobID string, number, attempt uint32) (*Job, *RoundRecord, error) {
	j, err := f.runningJob(jobID)
	if err != nil {
		return nil, nil, err
	}
	r := j.OpenRound()
	if r == nil || r.Number != number || r.Attempt != attempt {
		return nil, nil, fmt.Errorf("%w: job %s round %d attempt %d is not open", ErrConflict, jobID, number, attempt)
	}
	return j, j.editOpenRound(), nil
}

func (f *FSM) applyCommitRound(c *CommitRound) error {
	j, r, err := f.openAttempt(c.JobID, c.Number, c.Attempt)
	if err != nil {
		return err
	}
	if !(c.SamplingRate >= 0 && c.SamplingRate <= 1) {
		return fmt.Errorf("%w: sampling rate %v", ErrBadRequest, c.SamplingRate)
	}
	if j.Spec.DP != nil {
		// charge refuses a bad vector before changing anything.
		if err := j.charge(r, c.PrivacyRDP, c.Epsilon, c.Order); err != nil {
			return err
		}
	}
	r.Status, r.Digest, r.Contributors, r.Examples, r.ClosedAt = pb.RoundStatus_ROUND_STATUS_COMMITTED, c.Digest, c.Contributors, c.Examples, c.At
	r.OptimizerDigest, r.SamplingRate, r.Reason, r.Silent = c.OptimizerDigest, c.SamplingRate, c.Reason, inCohort(r, c.Silent)
	j.CommittedRounds = r.Number
	return nil
}

func (f *FSM) applyAbortRound(c *AbortRound) error {
	j, r, err := f.openAttempt(c.JobID, c.Number, c.Attempt)
	if err != nil {
		return err
	}
	if j.Spec.DP != nil && c.PrivacyRDP != nil {
		if err := j.charge(r, c.PrivacyRDP, c.Epsilon, c.Order); err != nil {
			return err
		}
	}
	r.Status, r.Reason, r.ClosedAt = pb.RoundStatus_ROUND_STATUS_ABORTED, c.Reason, c.At
	r.Silent, r.Responders = inCohort(r, c.Silent), inCohort(r, c.Responders)
	return nil
}

// inCohort returns the ids that are members of the attempt's cohort.
func inCohort(r *RoundRecord, ids []string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !slices.Contains(r.Cohort, id) })
}

// applyRecordLate moves a participant from a closed attempt's silent
// members to its late ones. A participant already late is left as it is;
// one that was not silent there is refused.
func (f *FSM) applyRecordLate(c *RecordLate) error {
	j, ok := f.st.Jobs[c.JobID]
	if !ok {
		return fmt.Errorf("%w %s", ErrUnknownJob, c.JobID)
	}
	for i, r := range j.Rounds {
		if r.Number != c.Number || r.Attempt != c.Attempt || r.Status == pb.RoundStatus_ROUND_STATUS_OPEN {
			continue
		}
		switch {
		case slices.Contains(r.Late, c.Participant):
			return nil
		case !slices.Contains(r.Silent, c.Participant):
			return fmt.Errorf("%w: %s was not silent in job %s round %d attempt %d", ErrConflict, c.Participant, c.JobID, c.Number, c.Attempt)
		}
		r = f.editJob(j).editRound(i)
		r.Silent = slices.DeleteFunc(slices.Clone(r.Silent), func(id string) bool { return id == c.Participant })
		r.Late = append(slices.Clip(r.Late), c.Participant)
		return nil
	}
	return fmt.Errorf("%w: job %s has no closed round %d attempt %d", ErrConflict, c.JobID, c.Number, c.Attempt)
}

func (f *FSM) applyRecordEvaluation(c *RecordEvaluation) error {
	j, ok := f.st.Jobs[c.JobID]
	if !ok {
		return fmt.Errorf("%w %s", ErrUnknownJob, c.JobID)
	}
	e := c.Eval
	if c.ModelRound == 0 {
		f.editJob(j).InitialEval = &e
		return nil
	}
	i := j.committedIndex(c.ModelRound)
	if i < 0 {
		return fmt.Errorf("%w: job %s round %d", ErrUnknownRound, c.JobID, c.ModelRound)
	}
	f.editJob(j).editRound(i).Eval = &e
	return nil
}

func (f *FSM) applyFinishJob(c *FinishJob) error {
	j, err := f.runningJob(c.JobID)
	if err != nil {
		return err
	}
	if r := j.editOpenRound(); r != nil {
		r.Status, r.Reason, r.ClosedAt = pb.RoundStatus_ROUND_STATUS_ABORTED, "job finished", c.At
	}
	j.Status, j.Reason, j.FinishedAt, j.TargetReachedAtRound = c.Status, c.Reason, c.At, c.TargetRound
	return nil
}

// Snapshot captures the state for Persist to write as JSON. Under the
// lock it copies only what applies change in place, the small maps
// (participants, proposals, policy, nonces); the jobs, which the FSM
// replaces rather than changes (editJob), and the append-only audit log
// are captured by reference and written by Persist outside the lock, so a
// long job history no longer stops the FSM while it is marshalled.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	rest := f.st
	rest.Jobs, rest.Audit = nil, nil
	b, err := json.Marshal(&rest)
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{rest: b, jobs: maps.Clone(f.st.Jobs), audit: slices.Clip(f.st.Audit)}, nil
}

// fsmSnapshot is a captured state: the JSON of everything but the jobs
// and the audit log, and those two as views.
type fsmSnapshot struct {
	rest  []byte
	jobs  map[string]*Job
	audit []audit.Entry
}

// Persist writes the state as one JSON object, the form Restore reads.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.marshal()
	if err == nil {
		_, err = io.Copy(sink, bytes.NewReader(b))
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// marshal is the snapshot's JSON: the captured fields with the jobs and
// the audit log put back in.
func (s *fsmSnapshot) marshal() ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(s.rest, &fields); err != nil {
		return nil, err
	}
	for name, v := range map[string]any{"jobs": s.jobs, "audit": s.audit} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		fields[name] = b
	}
	return json.Marshal(fields)
}

func (s *fsmSnapshot) Release() {}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := fsmState{}
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("restoring FSM snapshot: %w", err)
	}
	st.init()
	for id, j := range st.Jobs {
		if j == nil || j.ID != id {
			return fmt.Errorf("restoring FSM snapshot: job %q is missing or misfiled", id)
		}
	}
	for id, p := range st.Participants {
		if p == nil || p.ID != id {
			return fmt.Errorf("restoring FSM snapshot: participant %q is missing or misfiled", id)
		}
	}
	for id, p := range st.Proposals {
		if p == nil || p.ID != id {
			return fmt.Errorf("restoring FSM snapshot: proposal %q is missing or misfiled", id)
		}
	}
	for s, r := range st.Revoked {
		if r == nil {
			return fmt.Errorf("restoring FSM snapshot: revocation %q is missing", s)
		}
	}
	var revoked []Revocation
	for _, r := range st.Revoked {
		revoked = append(revoked, *r)
	}
	f.mu.Lock()
	f.st = st
	if f.onRevoke != nil && len(revoked) > 0 {
		f.onRevoke(revoked)
	}
	// Counted before the change is signalled: a reader woken by it sees
	// the restore.
	f.restores.Add(1)
	f.signalLocked()
	f.mu.Unlock()
	return nil
}

// Digest is a hash of the whole state, equal on coordinators whose FSMs are
// equal.
func (f *FSM) Digest() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, _ := json.Marshal(&f.st) // map keys are sorted: deterministic
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Reads. Each returns copies, safe to use after the lock is released.

func cloneJSON[T any](v *T) *T {
	b, _ := json.Marshal(v)
	var out T
	_ = json.Unmarshal(b, &out)
	return &out
}

// Job returns a copy of the job.
func (f *FSM) Job(id string) (*Job, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.st.Jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, id)
	}
	return cloneJSON(j), nil
}

// JobView returns the job as the FSM holds it, without copying it: the
// FSM replaces a job it changes instead of writing into it (editJob), so
// the view stays as it was, and consistent, for as long as the caller
// keeps it. The caller must not change it, or anything it points to.
func (f *FSM) JobView(id string) (*Job, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.st.Jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, id)
	}
	return j, nil
}

// JobViews returns every job as the FSM holds it, by ID, without copying
// them (see JobView: the caller must not change them).
func (f *FSM) JobViews() map[string]*Job {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.st.Jobs)
}

// Jobs returns every job as the FSM holds it, oldest first, without
// copying them (see JobView: the caller must not change them).
func (f *FSM) Jobs() []*Job {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*Job, 0, len(f.st.Jobs))
	for _, j := range f.st.Jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].CreatedAt != out[b].CreatedAt {
			return out[a].CreatedAt < out[b].CreatedAt
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// RunningJobIDs lists the running jobs' IDs, sorted.
func (f *FSM) RunningJobIDs() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var ids []string
	for id, j := range f.st.Jobs {
		if j.Running() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// ModelDigest returns the digest of job's model after round (0: initial).
func (f *FSM) ModelDigest(jobID string, round uint32) (string, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.st.Jobs[jobID]
	if !ok {
		return "", fmt.Errorf("%w %s", ErrUnknownJob, jobID)
	}
	d := j.ModelDigest(round)
	if d == "" {
		return "", fmt.Errorf("%w: job %s has no committed round %d", ErrUnknownRound, jobID, round)
	}
	return d, nil
}

// Participants returns copies of every participant, by ID.
func (f *FSM) Participants() []*Participant {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*Participant, 0, len(f.st.Participants))
	for _, p := range f.st.Participants {
		c := *p
		out = append(out, &c)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// Participant returns a copy of one participant, or nil.
func (f *FSM) Participant(id string) *Participant {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if p, ok := f.st.Participants[id]; ok {
		c := *p
		return &c
	}
	return nil
}
