package state

import (
	"cmp"
	"slices"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Participant is a federation member as the FSM records it.
type Participant struct {
	ID           string `json:"id"`
	Organization string `json:"organization"`
	Region       string `json:"region"`
	Examples     uint64 `json:"examples"`
	RegisteredAt int64  `json:"registered_at"` // unix ms
	// Availability is when it trains (nil: always).
	Availability *Availability `json:"availability,omitempty"`
	// Serials are the certificate serials it registered with (the latest
	// few), so `accord revoke NAME` can find them.
	Serials []string `json:"serials,omitempty"`
	// Datasets are the datasets it registered, with their shapes where it
	// declared them (nil: registered before participants declared them).
	Datasets []DatasetShape `json:"datasets,omitempty"`
}

// DatasetShape is what a participant holds of one dataset: features per
// example and classes (0: not declared).
type DatasetShape struct {
	Name     string `json:"name"`
	Features uint32 `json:"features,omitempty"`
	Classes  uint32 `json:"classes,omitempty"`
}

// Evaluation is a model's federated evaluation, summed over reporters.
type Evaluation struct {
	Examples  uint64  `json:"examples"`
	Correct   uint64  `json:"correct"`
	LossSum   float64 `json:"loss_sum"`
	Reporters uint32  `json:"reporters"`
}

// Accuracy is Correct/Examples (0 with no examples).
func (e *Evaluation) Accuracy() float64 {
	if e == nil || e.Examples == 0 {
		return 0
	}
	return float64(e.Correct) / float64(e.Examples)
}

func (e *Evaluation) toProto() *pb.Evaluation {
	if e == nil {
		return nil
	}
	return &pb.Evaluation{Examples: e.Examples, Correct: e.Correct, LossSum: e.LossSum, Reporters: e.Reporters}
}

// Job is a job as the FSM records it.
type Job struct {
	ID                   string         `json:"id"`
	Spec                 JobSpec        `json:"spec"`
	Status               pb.JobStatus   `json:"status"`
	Reason               string         `json:"reason,omitempty"`
	InitialDigest        string         `json:"initial_digest"`
	CreatedAt            int64          `json:"created_at"`
	FinishedAt           int64          `json:"finished_at,omitempty"`
	CommittedRounds      uint32         `json:"committed_rounds"`
	TargetReachedAtRound uint32         `json:"target_reached_at_round,omitempty"`
	InitialEval          *Evaluation    `json:"initial_eval,omitempty"`
	Rounds               []*RoundRecord `json:"rounds"` // every attempt, in order
	// Organization and SubmittedBy are the submitting admin's.
	Organization string `json:"organization,omitempty"`
	SubmittedBy  string `json:"submitted_by,omitempty"`
	// Declared is each participant's example count as fixed at its first
	// task of this job (capped at max_examples).
	Declared map[string]uint64 `json:"declared,omitempty"`
	// Refusals are participants whose site policy refused the job; they
	// are not chosen for its rounds again.
	Refusals []Refusal `json:"refusals,omitempty"`
	// ModelsDeleted: an approved delete_job removed all its models.
	ModelsDeleted bool `json:"models_deleted,omitempty"`
	// Privacy is what a job with dp has spent so far.
	Privacy *Privacy `json:"privacy,omitempty"`
	// Failures are the latest task failures participants reported (the
	// model does not fit their data, training failed): one per
	// participant, at most maxTaskFailures, newest last.
	Failures []TaskFailure `json:"failures,omitempty"`
}

// RoundRecord is one attempt at one round.
type RoundRecord struct {
	Number       uint32         `json:"number"`
	Attempt      uint32         `json:"attempt"`
	Status       pb.RoundStatus `json:"status"`
	Cohort       []string       `json:"cohort"`
	Contributors []string       `json:"contributors,omitempty"`
	BaseDigest   string         `json:"base_digest"`
	Digest       string         `json:"digest,omitempty"`
	OpenedAt     int64          `json:"opened_at"`
	Deadline     int64          `json:"deadline"`
	ClosedAt     int64          `json:"closed_at,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	Examples     uint64         `json:"examples,omitempty"`
	Eval         *Evaluation    `json:"eval,omitempty"`
	// OptimizerDigest names the server optimiser's state after this round
	// (a blob, like the model; "" when the optimiser keeps none).
	OptimizerDigest string `json:"optimizer_digest,omitempty"`
	// SamplingRate is the cohort's share of the eligible participants
	// (what the privacy accountant composed); Epsilon the job's ε after
	// this round (jobs with dp).
	SamplingRate float64 `json:"sampling_rate,omitempty"`
	Epsilon      float64 `json:"epsilon,omitempty"`
	// SimulatedAt is the attempt's simulated time, unix ms (jobs with a
	// simulated clock).
	SimulatedAt int64 `json:"simulated_at,omitempty"`
	// Silent are the cohort members that had sent nothing, and given no
	// reason, when the attempt closed (committed or aborted); a member
	// whose update then arrived late moves to Late.
	Silent []string `json:"silent,omitempty"`
	// Responders, for an aborted attempt, are the cohort members that had
	// answered when it aborted (a committed one's are its Contributors).
	Responders []string `json:"responders,omitempty"`
	// Late are cohort members whose update (or secure-aggregation message)
	// arrived after the attempt, or its phase, had closed.
	Late []string `json:"late,omitempty"`
}

// responders is who answered the attempt: its contributors if it
// committed, else who had answered when it aborted.
func (r *RoundRecord) responders() []string {
	if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
		return r.Contributors
	}
	return r.Responders
}

// answersKnown reports whether the attempt recorded who answered it: it
// closed by the round's own rules (committed, or aborted with a list of
// who answered or was silent), not by a leader change or a cancellation.
func (r *RoundRecord) answersKnown() bool {
	switch r.Status {
	case pb.RoundStatus_ROUND_STATUS_COMMITTED:
		return true
	case pb.RoundStatus_ROUND_STATUS_ABORTED:
		return len(r.Silent)+len(r.Responders)+len(r.Late) > 0
	}
	return false
}

// OpenRound returns the job's open round attempt, or nil.
func (j *Job) OpenRound() *RoundRecord {
	if n := len(j.Rounds); n > 0 && j.Rounds[n-1].Status == pb.RoundStatus_ROUND_STATUS_OPEN {
		return j.Rounds[n-1]
	}
	return nil
}

// Committed returns the committed attempt of round number, or nil.
func (j *Job) Committed(number uint32) *RoundRecord {
	if i := j.committedIndex(number); i >= 0 {
		return j.Rounds[i]
	}
	return nil
}

// committedIndex returns the index in Rounds of round number's committed
// attempt, or -1. Attempts are recorded in round order, and round n is
// committed at most once, so it is found from the end (the rounds asked
// for are the latest) or, further back, by binary search.
func (j *Job) committedIndex(number uint32) int {
	// The attempts of round n and later: a few from the end for the
	// latest rounds.
	from, _ := slices.BinarySearchFunc(j.Rounds, number, func(r *RoundRecord, n uint32) int { return cmp.Compare(r.Number, n) })
	for i := from; i < len(j.Rounds) && j.Rounds[i].Number == number; i++ {
		if j.Rounds[i].Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
			return i
		}
	}
	return -1
}

// ModelDigest returns the digest of the model after round number (0: the
// initial model), or "".
func (j *Job) ModelDigest(number uint32) string {
	if number == 0 {
		return j.InitialDigest
	}
	if r := j.Committed(number); r != nil {
		return r.Digest
	}
	return ""
}

// Running reports whether the job is running.
func (j *Job) Running() bool { return j.Status == pb.JobStatus_JOB_STATUS_RUNNING }

// ToProto is the job as the admin API returns it.
func (j *Job) ToProto() *pb.Job {
	return &pb.Job{
		Id: j.ID, Spec: j.Spec.ToProto(), Status: j.Status, Reason: j.Reason, CommittedRounds: j.CommittedRounds,
		InitialModelDigest: j.InitialDigest, CreatedUnixMs: j.CreatedAt, FinishedUnixMs: j.FinishedAt,
		TargetReachedAtRound: j.TargetReachedAtRound, Organization: j.Organization, SubmittedBy: j.SubmittedBy,
		Refusals: refusalsToProto(j.Refusals), Privacy: j.privacyProto(), TaskFailures: failuresToProto(j.Failures),
	}
}

func refusalsToProto(rs []Refusal) []*pb.Refusal {
	var out []*pb.Refusal
	for _, r := range rs {
		out = append(out, &pb.Refusal{Participant: r.Participant, Reason: r.Reason, UnixMs: r.At})
	}
	return out
}

// ToProto is the round attempt as the admin API returns it.
func (r *RoundRecord) ToProto(jobID string) *pb.Round {
	return &pb.Round{
		JobId: jobID, Number: r.Number, Attempt: r.Attempt, Status: r.Status, Cohort: r.Cohort, Contributors: r.Contributors,
		BaseModelDigest: r.BaseDigest, ModelDigest: r.Digest, OpenedUnixMs: r.OpenedAt, DeadlineUnixMs: r.Deadline,
		ClosedUnixMs: r.ClosedAt, Reason: r.Reason, Examples: r.Examples, Evaluation: r.Eval.toProto(),
		Epsilon: r.Epsilon, SamplingRate: r.SamplingRate, SimulatedUnixMs: r.SimulatedAt,
		Responders: r.responders(), Silent: r.Silent, Late: r.Late,
	}
}

// ToProto is the participant as the admin API returns it, with its
// connection as this coordinator sees it.
func (p *Participant) ToProto(connected bool, lastSeen int64) *pb.Participant {
	out := &pb.Participant{Id: p.ID, Organization: p.Organization, Region: p.Region, Connected: connected,
		RegisteredUnixMs: p.RegisteredAt, LastSeenUnixMs: lastSeen, Examples: p.Examples}
	for _, d := range p.Datasets {
		out.Datasets = append(out.Datasets, &pb.DatasetShape{Name: d.Name, Features: d.Features, Classes: d.Classes})
	}
	return out
}

// RetryCandidates leaves out of connected the participants that were
// silent in an earlier aborted attempt of the same round — a member that
// is connected but never uploads should not sink the retry too — unless
// fewer than need would remain. The rule costs the silent ones this round
// only: the next round draws from everyone again, so a site that hiccuped
// once is not kept out for good.
func (j *Job) RetryCandidates(number uint32, connected []string, need int) []string {
	silent := map[string]bool{}
	for _, r := range j.Rounds {
		if r.Number == number && r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
			for _, id := range r.Silent {
				silent[id] = true
			}
		}
	}
	if len(silent) == 0 {
		return connected
	}
	others := slices.DeleteFunc(slices.Clone(connected), func(id string) bool { return silent[id] })
	if len(others) < need {
		return connected
	}
	return others
}

// AbortedInARow counts the aborted attempts of round number, and returns
// the last one's reason.
func (j *Job) AbortedInARow(number uint32) (n uint32, last string) {
	for _, r := range j.Rounds {
		if r.Number == number && r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
			n, last = n+1, r.Reason
		}
	}
	return n, last
}

// Evaluated reports whether the model after round number has a recorded
// federated evaluation.
func (j *Job) Evaluated(number uint32) bool {
	if number == 0 {
		return j.InitialEval != nil
	}
	r := j.Committed(number)
	return r != nil && r.Eval != nil
}
