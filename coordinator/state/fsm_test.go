package state

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

type fsmDriver struct {
	t      *testing.T
	f      *FSM
	index  uint64
	ca     *pki.CA
	admins map[pki.Identity]tls.Certificate
	now    int64 // unix ms; each admin action one second later
}

func newFSMDriver(t *testing.T) *fsmDriver {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return &fsmDriver{t: t, f: NewFSM(ca.Pool()), ca: ca, admins: map[pki.Identity]tls.Certificate{}, now: time.Now().UnixMilli()}
}

func (d *fsmDriver) apply(t CommandType, body any) error {
	d.t.Helper()
	b, err := EncodeCommand(t, body)
	if err != nil {
		d.t.Fatal(err)
	}
	d.index++
	if err, ok := d.f.Apply(&raft.Log{Index: d.index, Type: raft.LogCommand, Data: b}).(error); ok {
		return err
	}
	return nil
}

// act applies an admin action signed by who, as the leader would.
func (d *fsmDriver) act(who pki.Identity, method string, req proto.Message, edit func(*AdminAction)) error {
	d.t.Helper()
	cert, ok := d.admins[who]
	if !ok {
		var err error
		if cert, err = d.ca.Issue(who); err != nil {
			d.t.Fatal(err)
		}
		d.admins[who] = cert
	}
	d.now += 1000
	s, err := adminauth.Sign(cert, method, req, time.UnixMilli(d.now))
	if err != nil {
		d.t.Fatal(err)
	}
	a := AdminAction{Signed: *s, At: d.now}
	if edit != nil {
		edit(&a)
	}
	return d.apply(CmdAdminAction, a)
}

var (
	fsmAdmin  = pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"}
	fsmAdmin2 = pki.Identity{Role: pki.RoleAdmin, Name: "ana", Organization: "org2"}
)

// submit applies a signed job submission with the given ID.
func (d *fsmDriver) submit(id string, spec JobSpec) error {
	d.t.Helper()
	return d.act(fsmAdmin, MethodSubmitJob, &pb.SubmitJobRequest{Spec: spec.ToProto()}, func(a *AdminAction) { a.JobID, a.InitialDigest = id, "d0" })
}

// digest is the FSM's digest without the replay records, which every
// signed request adds to, carried out or not.
func (d *fsmDriver) digest() string {
	d.f.mu.RLock()
	st := d.f.st
	d.f.mu.RUnlock()
	st.Nonces, st.LastActionAt = nil, 0
	b, _ := json.Marshal(&st)
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

const j1 = "job-000000000001"

// TestFSMRoundLifecycle walks a job through its commands and checks that
// each command that does not fit the state is refused with ErrConflict (or a
// more precise error) and changes nothing.
func TestFSMRoundLifecycle(t *testing.T) {
	d := newFSMDriver(t)
	spec := DefaultJobSpec()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.submit(j1, spec))
	open := func(n, a uint32) error {
		return d.apply(CmdOpenRound, OpenRound{JobID: j1, Round: RoundRecord{Number: n, Attempt: a, Cohort: []string{"p1"}, BaseDigest: "d0"}})
	}
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"submit the same job again", func() error { return d.submit(j1, spec) }, ErrConflict},
		{"submit a job under a proposal-like ID", func() error { return d.submit("policy-1", spec) }, ErrConflict},
		{"submit unsigned", func() error { return d.apply(cmdSubmitJob, submitJob{Job: Job{ID: "job-000000000002", Spec: spec}}) }, ErrForbidden},
		{"open round 2 first", func() error { return open(2, 1) }, ErrConflict},
		{"open round 1", func() error { return open(1, 1) }, nil},
		{"open a second round while one is open", func() error { return open(1, 2) }, ErrConflict},
		{"commit another attempt", func() error {
			return d.apply(CmdCommitRound, CommitRound{JobID: j1, Number: 1, Attempt: 2, Digest: "d1"})
		}, ErrConflict},
		{"abort round 1", func() error {
			return d.apply(CmdAbortRound, AbortRound{JobID: j1, Number: 1, Attempt: 1, Reason: "leader change"})
		}, nil},
		{"reopen attempt 1", func() error { return open(1, 1) }, ErrConflict},
		{"open attempt 2", func() error { return open(1, 2) }, nil},
		{"commit attempt 2", func() error {
			return d.apply(CmdCommitRound, CommitRound{JobID: j1, Number: 1, Attempt: 2, Digest: "d1", Contributors: []string{"p1"}})
		}, nil},
		{"commit it twice", func() error {
			return d.apply(CmdCommitRound, CommitRound{JobID: j1, Number: 1, Attempt: 2, Digest: "d1"})
		}, ErrConflict},
		{"evaluate an uncommitted round", func() error {
			return d.apply(CmdRecordEvaluation, RecordEvaluation{JobID: j1, ModelRound: 5})
		}, ErrUnknownRound},
		{"evaluate round 1", func() error {
			return d.apply(CmdRecordEvaluation, RecordEvaluation{JobID: j1, ModelRound: 1, Eval: Evaluation{Examples: 10, Correct: 9}})
		}, nil},
		{"open round 2", func() error { return open(2, 1) }, nil},
		{"finish the job", func() error {
			return d.apply(CmdFinishJob, FinishJob{JobID: j1, Status: pb.JobStatus_JOB_STATUS_SUCCEEDED, TargetRound: 1})
		}, nil},
		{"open a round of a finished job", func() error { return open(2, 2) }, ErrJobNotRunning},
		{"cancel a finished job", func() error { return d.act(fsmAdmin, MethodCancelJob, &pb.CancelJobRequest{JobId: j1}, nil) }, ErrJobNotRunning},
		{"cancel an unknown job", func() error { return d.act(fsmAdmin, MethodCancelJob, &pb.CancelJobRequest{JobId: "nope"}, nil) }, ErrUnknownJob},
		{"cancel unsigned", func() error { return d.apply(cmdCancelJob, cancelJob{JobID: j1}) }, ErrForbidden},
	}
	for _, s := range steps {
		before := d.digest()
		err := s.do()
		if s.want == nil && err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want != nil {
			if !errors.Is(err, s.want) {
				t.Fatalf("%s: got %v; want %v", s.name, err, s.want)
			}
			if d.digest() != before {
				t.Fatalf("%s: refused, but the state changed", s.name)
			}
		}
	}
	j, _ := d.f.Job(j1)
	if j.CommittedRounds != 1 || j.ModelDigest(1) != "d1" || j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || j.OpenRound() != nil {
		t.Fatalf("final job: %+v", j)
	}
	if got := j.Rounds[len(j.Rounds)-1]; got.Status != pb.RoundStatus_ROUND_STATUS_ABORTED || got.Reason != "job finished" {
		t.Fatalf("round left open at finish: %+v; want aborted", got)
	}
	if acc := j.Committed(1).Eval.Accuracy(); acc != 0.9 {
		t.Fatalf("round 1 accuracy %v; want 0.9", acc)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	d := newFSMDriver(t)
	d.apply(CmdRegisterParticipant, RegisterParticipant{Participant: Participant{ID: "p1", Organization: "o", RegisteredAt: 5}})
	if err := d.submit(j1, DefaultJobSpec()); err != nil {
		t.Fatal(err)
	}
	d.apply(CmdOpenRound, OpenRound{JobID: j1, Round: RoundRecord{Number: 1, Attempt: 1}})
	snap, err := d.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	d.apply(CmdCommitRound, CommitRound{JobID: j1, Number: 1, Attempt: 1, Digest: "d1"}) // after the snapshot
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	j, _ := restored.Job(j1)
	if j.CommittedRounds != 0 || j.OpenRound() == nil || restored.Participant("p1") == nil {
		t.Fatalf("restored state is not the snapshot's: %+v", j)
	}
	if err := restored.Restore(io.NopCloser(bytes.NewReader([]byte("{not json")))); err == nil {
		t.Fatal("restoring garbage succeeded")
	}
}

func TestFSMUnknownCommands(t *testing.T) {
	f := NewFSM(nil)
	if resp := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{byte(ignoreUnknownFlag | 0x7f), '{', '}'}}); resp != nil {
		t.Fatalf("a skippable unknown command returned %v", resp)
	}
	// A body that does not decode is refused the same way everywhere (a
	// hostile leader may write one); a command type this FSM does not know
	// stops it (an older binary must not skip what a newer one applies).
	if err, ok := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{byte(CmdAdminAction), 'x'}}).(error); !ok || !errors.Is(err, ErrConflict) {
		t.Errorf("undecodable body: %v; want ErrConflict", err)
	}
	for name, data := range map[string][]byte{
		"unknown command": {0x7f, '{', '}'},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic; a corrupt log must stop the FSM", name)
				}
			}()
			f.Apply(&raft.Log{Type: raft.LogCommand, Data: data})
		}()
	}
}

// TestFSMGovernance checks, at the FSM, the rules a hostile leader or a
// careless admin meets: approvals bound to a kind and counted once per
// organisation, requests spent once even when refused, actions that cannot
// be backdated, revoked approvers that no longer count, and revocations of
// another organisation's certificates that need approvals.
func TestFSMGovernance(t *testing.T) {
	d := newFSMDriver(t)
	org3 := pki.Identity{Role: pki.RoleAdmin, Name: "kai", Organization: "org3"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	approve := func(who pki.Identity, id, kind string) error {
		return d.act(who, MethodApprove, &pb.ApproveRequest{ProposalId: id, Kind: kind}, nil)
	}
	must(d.act(fsmAdmin, MethodSetPolicy, &pb.SetPolicyRequest{Policy: &pb.Policy{Organizations: []string{"org1", "org2", "org3"}, ApprovalsRequired: 3}}, nil))
	if p := d.f.Policy(); p.ApprovalsRequired != 3 {
		t.Fatalf("policy %+v", p)
	}

	// A request refused once is spent: replayed when it would fit, it is a
	// replay.
	const j2 = "job-000000000002"
	cert := d.admins[fsmAdmin2]
	if cert.Certificate == nil {
		var err error
		cert, err = d.ca.Issue(fsmAdmin2)
		must(err)
		d.admins[fsmAdmin2] = cert
	}
	early, err := adminauth.Sign(cert, MethodApprove, &pb.ApproveRequest{ProposalId: j2, Kind: kindSubmitJob}, time.UnixMilli(d.now+1000))
	must(err)
	replay := func() error { return d.apply(CmdAdminAction, AdminAction{Signed: *early, At: early.UnixMs}) }
	if err := replay(); !errors.Is(err, ErrUnknownProposal) {
		t.Fatalf("approval of a job not yet submitted: %v; want ErrUnknownProposal", err)
	}
	d.now += 1000
	must(d.submit(j2, DefaultJobSpec()))
	if err := replay(); !errors.Is(err, ErrReplay) {
		t.Fatalf("the refused approval replayed once the job exists: %v; want ErrReplay", err)
	}

	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"org2 approves as a cancellation", func() error { return approve(fsmAdmin2, j2, kindCancelJob) }, ErrConflict},
		{"org2 approves without naming the kind", func() error { return approve(fsmAdmin2, j2, "") }, ErrBadPolicy},
		{"org1 approves its own job again", func() error { return approve(fsmAdmin, j2, kindSubmitJob) }, ErrAlreadyApproved},
		{"an admin of a non-member organisation approves", func() error {
			return approve(pki.Identity{Role: pki.RoleAdmin, Name: "eve", Organization: "org9"}, j2, kindSubmitJob)
		}, ErrForbidden},
		{"org2 approves", func() error { return approve(fsmAdmin2, j2, kindSubmitJob) }, nil},
		{"a backdated action", func() error {
			return d.act(org3, MethodApprove, &pb.ApproveRequest{ProposalId: j2, Kind: kindSubmitJob}, func(a *AdminAction) {
				a.At -= 2 * adminauth.MaxSkew.Milliseconds()
			})
		}, ErrConflict},
		// org2 revokes its own admin's key at once; its approval stops counting.
		{"org2 revokes its own admin", func() error { return d.act(fsmAdmin2, MethodRevoke, &pb.RevokeRequest{Name: "ana"}, nil) }, nil},
		{"org3 approves", func() error { return approve(org3, j2, kindSubmitJob) }, nil},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%s: got %v; want %v", s.name, err, s.want)
		}
	}
	if j, _ := d.f.Job(j2); j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		t.Fatalf("job %v with org2's approval revoked; want it still pending (2 of 3)", j.Status)
	}

	// Revoking another organisation's admin needs the policy's approvals.
	must(d.act(fsmAdmin, MethodRevoke, &pb.RevokeRequest{Name: "kai"}, nil))
	if d.f.IsRevoked(pki.SerialOf(d.admins[org3].Leaf)) {
		t.Fatal("org1 alone revoked org3's admin")
	}
	var pending *Proposal
	for _, p := range d.f.Proposals() {
		if p.Kind == kindRevoke && p.Status == proposalPending {
			pending = p
		}
	}
	if pending == nil || len(pending.Revocations) != 1 || pending.Revocations[0].Organization != "org3" {
		t.Fatalf("revoke proposal %+v; want one pending for org3's admin", pending)
	}
	// Audit: every action carried out, in a chain that verifies.
	entries, _ := d.f.Audit(0, 0)
	if len(entries) == 0 {
		t.Fatal("no audit entries")
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	// Carried-out actions only: refused requests spend their nonce but
	// leave no entry.
	want := []string{kindSetPolicy, kindSubmitJob, "approve", kindRevoke, "approve", kindRevoke}
	if !slices.Equal(actions, want) {
		t.Errorf("audit actions %v; want %v", actions, want)
	}
}

// TestJobViewsAreNeverChanged takes a view of the job (FSM.JobView) before
// each command of a job's life and checks, after every later command, that
// every view still reads as it did when taken: the FSM replaces what it
// changes, so the leader reads jobs without copying them.
func TestJobViewsAreNeverChanged(t *testing.T) {
	d := newFSMDriver(t)
	spec := DefaultJobSpec()
	if err := d.submit(j1, spec); err != nil {
		t.Fatal(err)
	}
	cohort := []string{"p1", "p2", "p3"}
	steps := []struct {
		name string
		t    CommandType
		body any
	}{
		{"open round 1", CmdOpenRound, OpenRound{JobID: j1, Round: RoundRecord{Number: 1, Attempt: 1, Cohort: cohort, BaseDigest: "d0"}, Declared: map[string]uint64{"p1": 10, "p2": 20}}},
		{"abort it", CmdAbortRound, AbortRound{JobID: j1, Number: 1, Attempt: 1, Reason: "deadline", Silent: []string{"p2", "p3"}, Responders: []string{"p1"}}},
		{"record p2 late", CmdRecordLate, RecordLate{JobID: j1, Number: 1, Attempt: 1, Participant: "p2"}},
		{"record a task failure", CmdRecordTaskFailure, RecordTaskFailure{JobID: j1, Failure: TaskFailure{Participant: "p3", Reason: "out of memory"}}},
		{"record another from p3", CmdRecordTaskFailure, RecordTaskFailure{JobID: j1, Failure: TaskFailure{Participant: "p3", Reason: "again"}}},
		{"record a refusal", CmdRecordRefusal, RecordRefusal{JobID: j1, Participant: "p4", Reason: "policy"}},
		{"open attempt 2", CmdOpenRound, OpenRound{JobID: j1, Round: RoundRecord{Number: 1, Attempt: 2, Cohort: cohort, BaseDigest: "d0"}, Declared: map[string]uint64{"p3": 30}}},
		{"commit it", CmdCommitRound, CommitRound{JobID: j1, Number: 1, Attempt: 2, Digest: "d1", Contributors: cohort, Silent: []string{"p3"}}},
		{"evaluate the initial model", CmdRecordEvaluation, RecordEvaluation{JobID: j1, ModelRound: 0, Eval: Evaluation{Reporters: 1, Examples: 10, Correct: 5}}},
		{"evaluate round 1", CmdRecordEvaluation, RecordEvaluation{JobID: j1, ModelRound: 1, Eval: Evaluation{Reporters: 2, Examples: 20, Correct: 15}}},
		{"open round 2", CmdOpenRound, OpenRound{JobID: j1, Round: RoundRecord{Number: 2, Attempt: 1, Cohort: cohort, BaseDigest: "d1"}}},
		{"finish the job", CmdFinishJob, FinishJob{JobID: j1, Status: pb.JobStatus_JOB_STATUS_SUCCEEDED, Reason: "done"}},
	}
	type view struct {
		after string
		job   *Job
		json  []byte
	}
	var views []view
	take := func(after string) {
		j, err := d.f.JobView(j1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, view{after, j, b})
	}
	take("submission")
	for _, s := range steps {
		if err := d.apply(s.t, s.body); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, v := range views {
			if b, _ := json.Marshal(v.job); !bytes.Equal(b, v.json) {
				t.Fatalf("%s changed the view taken after %s:\n was %s\n now %s", s.name, v.after, v.json, b)
			}
		}
		take(s.name)
	}
	if j, _ := d.f.Job(j1); j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || len(j.Rounds) != 3 || j.Rounds[1].Eval == nil || len(j.Failures) != 1 || len(j.Refusals) != 1 {
		t.Fatalf("job after the steps: %+v", j)
	}
}
