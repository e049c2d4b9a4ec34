package coordinator

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

type fsmDriver struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (d *fsmDriver) apply(t commandType, body any) error {
	d.t.Helper()
	b, err := encodeCommand(t, body)
	if err != nil {
		d.t.Fatal(err)
	}
	d.index++
	if resp := d.f.Apply(&raft.Log{Index: d.index, Type: raft.LogCommand, Data: b}); resp != nil {
		return resp.(error)
	}
	return nil
}

// TestFSMRoundLifecycle walks a job through its commands and checks that
// each command that does not fit the state is refused with ErrConflict (or a
// more precise error) and changes nothing.
func TestFSMRoundLifecycle(t *testing.T) {
	d := &fsmDriver{t: t, f: NewFSM(nil)}
	spec := DefaultJobSpec()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.apply(cmdSubmitJob, submitJob{Job: Job{ID: "j1", Spec: spec, InitialDigest: "d0", CreatedAt: 1}}))
	open := func(n, a uint32) error {
		return d.apply(cmdOpenRound, openRound{JobID: "j1", Round: RoundRecord{Number: n, Attempt: a, Cohort: []string{"p1"}, BaseDigest: "d0"}})
	}
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"submit the same job again", func() error { return d.apply(cmdSubmitJob, submitJob{Job: Job{ID: "j1"}}) }, ErrConflict},
		{"open round 2 first", func() error { return open(2, 1) }, ErrConflict},
		{"open round 1", func() error { return open(1, 1) }, nil},
		{"open a second round while one is open", func() error { return open(1, 2) }, ErrConflict},
		{"commit another attempt", func() error {
			return d.apply(cmdCommitRound, commitRound{JobID: "j1", Number: 1, Attempt: 2, Digest: "d1"})
		}, ErrConflict},
		{"abort round 1", func() error {
			return d.apply(cmdAbortRound, abortRound{JobID: "j1", Number: 1, Attempt: 1, Reason: "leader change"})
		}, nil},
		{"reopen attempt 1", func() error { return open(1, 1) }, ErrConflict},
		{"open attempt 2", func() error { return open(1, 2) }, nil},
		{"commit attempt 2", func() error {
			return d.apply(cmdCommitRound, commitRound{JobID: "j1", Number: 1, Attempt: 2, Digest: "d1", Contributors: []string{"p1"}})
		}, nil},
		{"commit it twice", func() error {
			return d.apply(cmdCommitRound, commitRound{JobID: "j1", Number: 1, Attempt: 2, Digest: "d1"})
		}, ErrConflict},
		{"evaluate an uncommitted round", func() error {
			return d.apply(cmdRecordEvaluation, recordEvaluation{JobID: "j1", ModelRound: 5})
		}, ErrUnknownRound},
		{"evaluate round 1", func() error {
			return d.apply(cmdRecordEvaluation, recordEvaluation{JobID: "j1", ModelRound: 1, Eval: Evaluation{Examples: 10, Correct: 9}})
		}, nil},
		{"open round 2", func() error { return open(2, 1) }, nil},
		{"finish the job", func() error {
			return d.apply(cmdFinishJob, finishJob{JobID: "j1", Status: pb.JobStatus_JOB_STATUS_SUCCEEDED, TargetRound: 1})
		}, nil},
		{"open a round of a finished job", func() error { return open(2, 2) }, ErrJobNotRunning},
		{"cancel a finished job", func() error { return d.apply(cmdCancelJob, cancelJob{JobID: "j1"}) }, ErrJobNotRunning},
		{"cancel an unknown job", func() error { return d.apply(cmdCancelJob, cancelJob{JobID: "nope"}) }, ErrUnknownJob},
	}
	for _, s := range steps {
		before := d.f.Digest()
		err := s.do()
		if s.want == nil && err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want != nil {
			if !errors.Is(err, s.want) {
				t.Fatalf("%s: got %v; want %v", s.name, err, s.want)
			}
			if d.f.Digest() != before {
				t.Fatalf("%s: refused, but the state changed", s.name)
			}
		}
	}
	j, _ := d.f.Job("j1")
	if j.CommittedRounds != 1 || j.modelDigest(1) != "d1" || j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || j.openRound() != nil {
		t.Fatalf("final job: %+v", j)
	}
	if got := j.Rounds[len(j.Rounds)-1]; got.Status != pb.RoundStatus_ROUND_STATUS_ABORTED || got.Reason != "job finished" {
		t.Fatalf("round left open at finish: %+v; want aborted", got)
	}
	if acc := j.committed(1).Eval.Accuracy(); acc != 0.9 {
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
	d := &fsmDriver{t: t, f: NewFSM(nil)}
	d.apply(cmdRegisterParticipant, registerParticipant{Participant: Participant{ID: "p1", Organization: "o", RegisteredAt: 5}})
	d.apply(cmdSubmitJob, submitJob{Job: Job{ID: "j1", Spec: DefaultJobSpec(), InitialDigest: "d0"}})
	d.apply(cmdOpenRound, openRound{JobID: "j1", Round: RoundRecord{Number: 1, Attempt: 1}})
	snap, err := d.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	d.apply(cmdCommitRound, commitRound{JobID: "j1", Number: 1, Attempt: 1, Digest: "d1"}) // after the snapshot
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	j, _ := restored.Job("j1")
	if j.CommittedRounds != 0 || j.openRound() == nil || restored.Participant("p1") == nil {
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
	for name, data := range map[string][]byte{
		"unknown command":  {0x7f, '{', '}'},
		"undecodable body": {byte(cmdSubmitJob), 'x'},
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
