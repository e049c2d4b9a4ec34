// Package statetest drives a replicated state machine in memory for the
// tests of the packages above it: commands are applied in order, as Raft
// would apply them, with no Raft, socket or disk. It imports testing and is
// never linked into the binary.
package statetest

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Admin is the administrator Submit signs as.
var Admin = pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"}

// Driver applies commands to an FSM.
type Driver struct {
	tb testing.TB
	// FSM is the state driven; CA the federation's, which it trusts.
	FSM   *state.FSM
	CA    *pki.CA
	index uint64
	admin tls.Certificate
	now   int64 // unix ms; each admin action one second later
}

// New returns a driver of an empty FSM trusting a new CA.
func New(tb testing.TB) *Driver {
	tb.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := ca.Issue(Admin)
	if err != nil {
		tb.Fatal(err)
	}
	return &Driver{tb: tb, FSM: state.NewFSM(ca.Pool()), CA: ca, admin: admin, now: time.Now().UnixMilli()}
}

// Now is the time of the latest admin action.
func (d *Driver) Now() time.Time { return time.UnixMilli(d.now) }

// Apply applies one command, as the next log entry, and returns the
// FSM's refusal (nil: applied).
func (d *Driver) Apply(kind state.CommandType, body any) error {
	d.tb.Helper()
	b, err := state.EncodeCommand(kind, body)
	if err != nil {
		d.tb.Fatal(err)
	}
	d.index++
	if err, ok := d.FSM.Apply(&raft.Log{Index: d.index, Type: raft.LogCommand, Data: b}).(error); ok {
		return err
	}
	return nil
}

// Submit applies a job submission signed by Admin, with the given job ID
// and an initial model digest "d0".
func (d *Driver) Submit(id string, spec state.JobSpec) error {
	d.tb.Helper()
	return d.Apply(state.CmdAdminAction, d.SubmitAction(id, spec))
}

// SubmitAction is the command that submits a job, signed by Admin one
// second after the driver's latest admin action, with the given job ID and
// an initial model digest "d0", for a caller that applies it elsewhere
// (through Raft).
func (d *Driver) SubmitAction(id string, spec state.JobSpec) state.AdminAction {
	d.tb.Helper()
	d.now += 1000
	s, err := adminauth.Sign(d.admin, state.MethodSubmitJob, &pb.SubmitJobRequest{Spec: spec.ToProto()}, time.UnixMilli(d.now))
	if err != nil {
		d.tb.Fatal(err)
	}
	return state.AdminAction{Signed: *s, At: d.now, JobID: id, InitialDigest: "d0"}
}

// JobWithHistory submits a job with the default spec (a million rounds)
// and applies the commands of rounds committed rounds, each by a cohort of
// ten with an evaluation, then opens round rounds+1: a leader finds the job
// so on every tick while that round's updates arrive. It returns the job.
func (d *Driver) JobWithHistory(id string, rounds int) *state.Job {
	d.tb.Helper()
	spec := state.DefaultJobSpec()
	spec.Rounds = 1_000_000
	if err := d.Submit(id, spec); err != nil {
		d.tb.Fatal(err)
	}
	cohort := make([]string, 10)
	for i := range cohort {
		cohort[i] = fmt.Sprintf("participant-%03d", i)
	}
	at := d.now
	must := func(err error) {
		if err != nil {
			d.tb.Fatal(err)
		}
	}
	for n := uint32(1); n <= uint32(rounds)+1; n++ {
		at += 1000
		must(d.Apply(state.CmdOpenRound, state.OpenRound{JobID: id, Round: state.RoundRecord{Number: n, Attempt: 1, Cohort: cohort,
			BaseDigest: fmt.Sprintf("sha256:%064d", n-1), OpenedAt: at, Deadline: at + 60_000}}))
		if n > uint32(rounds) {
			break
		}
		must(d.Apply(state.CmdCommitRound, state.CommitRound{JobID: id, Number: n, Attempt: 1, Contributors: cohort,
			Digest: fmt.Sprintf("sha256:%064d", n), Examples: 6000, At: at + 500}))
		must(d.Apply(state.CmdRecordEvaluation, state.RecordEvaluation{JobID: id, ModelRound: n,
			Eval: state.Evaluation{Reporters: 10, Examples: 1000, Correct: 970}}))
	}
	j, err := d.FSM.JobView(id)
	must(err)
	return j
}
