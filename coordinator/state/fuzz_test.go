package state

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/adminauth"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Fuzz targets for what a coordinator decodes from its peers: Raft log
// entries (a hostile leader writes them) and job specs (from an admin's
// request). `make fuzz` runs them; see also the job-file loader's in
// cmd/accord.

const fuzzJob = "job-0123456789ab"

// fuzzFSM is an FSM (without a CA: admin actions are refused) holding a
// running job with two committed rounds and an open third, a finished job,
// and a participant, so that the round commands reach their checks.
func fuzzFSM() *FSM {
	f := NewFSM(nil)
	spec := DefaultJobSpec()
	f.st.Participants["p-1"] = &Participant{ID: "p-1", Organization: "org", Examples: 10, Serials: []string{"1f"}}
	eval := &Evaluation{Examples: 10, Correct: 7, LossSum: 3, Reporters: 1}
	f.st.Jobs[fuzzJob] = &Job{ID: fuzzJob, Spec: spec, Status: pb.JobStatus_JOB_STATUS_RUNNING, InitialDigest: "sha256:00",
		CommittedRounds: 2, InitialEval: eval, Declared: map[string]uint64{"p-1": 10},
		Rounds: []*RoundRecord{
			{Number: 1, Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_COMMITTED, Cohort: []string{"p-1"}, Digest: "sha256:01", Eval: eval},
			{Number: 2, Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_ABORTED, Cohort: []string{"p-1"}},
			{Number: 2, Attempt: 2, Status: pb.RoundStatus_ROUND_STATUS_COMMITTED, Cohort: []string{"p-1"}, Digest: "sha256:02"},
			{Number: 3, Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_OPEN, Cohort: []string{"p-1"}, BaseDigest: "sha256:02"},
		}}
	f.st.Jobs["job-000000000000"] = &Job{ID: "job-000000000000", Spec: spec, Status: pb.JobStatus_JOB_STATUS_SUCCEEDED}
	return f
}

// knownCommand reports whether an entry's type byte is one the FSM knows
// or may skip: any other type panics by design (coordinator/DESIGN.md).
func knownCommand(t CommandType) bool {
	return t&ignoreUnknownFlag != 0 || t&^ignoreUnknownFlag >= CmdRegisterParticipant && t&^ignoreUnknownFlag <= CmdRecordTaskFailure
}

func FuzzFSMApply(f *testing.F) {
	add := func(t CommandType, body any) {
		b, err := EncodeCommand(t, body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	add(CmdRegisterParticipant, RegisterParticipant{Participant: Participant{ID: "p-2", Organization: "org", Examples: 5, Serials: []string{"2a"}}})
	add(CmdRegisterParticipant, RegisterParticipant{Participant: Participant{ID: "p-1", Serials: []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}}})
	add(cmdSubmitJob, submitJob{Job: Job{ID: "job-111111111111", Spec: DefaultJobSpec()}})
	add(cmdCancelJob, cancelJob{JobID: fuzzJob, Reason: "no"})
	add(CmdOpenRound, OpenRound{JobID: fuzzJob, Round: RoundRecord{Number: 3, Attempt: 2, Cohort: []string{"p-1"}}, Declared: map[string]uint64{"p-2": 1 << 40}})
	add(CmdCommitRound, CommitRound{JobID: fuzzJob, Number: 3, Attempt: 1, Digest: "sha256:03", Contributors: []string{"p-1"}, Examples: 10})
	add(CmdAbortRound, AbortRound{JobID: fuzzJob, Number: 3, Attempt: 1, Reason: "deadline"})
	add(CmdRecordEvaluation, RecordEvaluation{JobID: fuzzJob, ModelRound: 2, Eval: Evaluation{Examples: 1, Correct: 2}})
	add(CmdRecordEvaluation, RecordEvaluation{JobID: fuzzJob, ModelRound: 0})
	add(CmdFinishJob, FinishJob{JobID: fuzzJob, Status: pb.JobStatus_JOB_STATUS_FAILED, Reason: "x", TargetRound: 9})
	add(CmdRecordRefusal, RecordRefusal{JobID: fuzzJob, Participant: "p-1", Reason: "policy"})
	add(CmdRecordTaskFailure, RecordTaskFailure{JobID: fuzzJob, Failure: TaskFailure{Participant: "p-1", Reason: "shape mismatch\x1b[2J", Round: 3, Attempt: 1, Task: "train"}})
	add(CmdRegisterParticipant, RegisterParticipant{Participant: Participant{ID: "p-3", Datasets: []DatasetShape{{Name: "mnist", Features: 784, Classes: 10}}}})
	add(CmdAdminAction, AdminAction{Signed: adminauth.Signed{Method: MethodSubmitJob, Request: []byte{0x0a, 0x00}, Nonce: make([]byte, adminauth.NonceSize)}, JobID: "job-222222222222"})
	f.Add([]byte{byte(CmdCommitRound), '{', '"', 'n', 'u', 'm', 'b', 'e', 'r', '"', ':', '-', '1', '}'})
	f.Add([]byte{byte(CmdOpenRound), 'n', 'u', 'l', 'l'})
	f.Add([]byte{byte(CmdOpenRound | ignoreUnknownFlag), '{', '}'})
	f.Add([]byte{0x8f, 0xff})
	f.Add([]byte{byte(CmdFinishJob)})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && !knownCommand(CommandType(data[0])) {
			t.Skip("an unknown command type without the ignore flag panics by design")
		}
		log := &raft.Log{Index: 7, Term: 2, Type: raft.LogCommand, Data: data}
		empty := func() *FSM { return NewFSM(nil) }
		for _, newFSM := range []func() *FSM{empty, fuzzFSM} {
			fsm, other := newFSM(), newFSM()
			res := fsm.Apply(log)
			if again := other.Apply(log); (res == nil) != (again == nil) {
				t.Fatalf("one entry applied two ways: %v and %v", res, again)
			}
			// Every coordinator that applied it holds the same state, which
			// still snapshots, restores and reads.
			if fsm.Digest() != other.Digest() {
				t.Fatal("one entry left two FSMs in different states")
			}
			snap, err := fsm.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := snap.Persist(&fuzzSink{Buffer: &buf}); err != nil {
				t.Fatal(err)
			}
			restored := NewFSM(nil)
			if err := restored.Restore(io.NopCloser(&buf)); err != nil {
				t.Fatalf("the state does not restore: %v", err)
			}
			if restored.Digest() != fsm.Digest() {
				t.Fatal("the state changed through a snapshot")
			}
			for _, j := range fsm.Jobs() {
				_ = j.ToProto()
			}
			_ = fsm.PrunableDigests()
		}
	})
}

// fuzzSink is a raft.SnapshotSink writing to a buffer.
type fuzzSink struct{ *bytes.Buffer }

func (fuzzSink) ID() string    { return "fuzz" }
func (fuzzSink) Cancel() error { return nil }
func (fuzzSink) Close() error  { return nil }

// FuzzJobSpec: a job spec as an admin's SubmitJob request carries it
// (protobuf) and as the FSM stores it (JSON); Validate must refuse what is
// wrong without panicking or running long.
func FuzzJobSpec(f *testing.F) {
	spec := DefaultJobSpec()
	f.Add(mustMarshal(f, spec.ToProto()), mustJSON(f, spec))
	spec.SecureAggregation = SecureAggregation{Mode: ModeSecAggPlus, DropoutRate: 0.2, CorruptRate: 0.1, Threshold: 3}
	spec.Retain = &Retain{Last: 3, Every: 10, Best: 2}
	spec.MaxUpdateNorm, spec.MaxAttempts = 50, 3
	spec.ExpectedDropout, spec.MaxOverSelection, spec.StragglerFactor = 0.3, 1.5, -1
	f.Add(mustMarshal(f, spec.ToProto()), mustJSON(f, spec))
	spec.Model = "mlp:784-65536-65536-65536-65536-65536-65536-65536-65536-10"
	spec.ParticipantsPerRound = 1 << 31
	f.Add(mustMarshal(f, spec.ToProto()), mustJSON(f, spec))
	f.Add([]byte{0x12, 0x03, 'm', 'l', 'p'}, []byte(`{"model":"logreg:2-2","rounds":1,"round_deadline":"1s"}`))
	f.Fuzz(func(t *testing.T, wire, stored []byte) {
		p := &pb.JobSpec{}
		if proto.Unmarshal(wire, p) == nil {
			s := JobSpecFromProto(p)
			if s.Validate() == nil {
				if err := JobSpecFromProto(s.ToProto()).Validate(); err != nil {
					t.Fatalf("a valid spec does not survive the wire: %v", err)
				}
			}
		}
		var s JobSpec
		if json.Unmarshal(stored, &s) == nil {
			_ = s.Validate()
		}
	})
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestJobSpecValidateReturnsQuickly: a job file naming a huge secure
// cohort with rates no sparse graph meets once held Validate (and so every
// FSM applying the submission) for hours in secagg.ChooseGraph.
func TestJobSpecValidateReturnsQuickly(t *testing.T) {
	for _, c := range []struct {
		name             string
		perRound         uint32
		dropout, corrupt float64
	}{
		{"4 billion clients", 1<<32 - 1, 0.99, 0.9},
		{"3000 clients", 3000, 0.5, 0.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := DefaultJobSpec()
			s.ParticipantsPerRound = c.perRound
			s.SecureAggregation = SecureAggregation{Mode: ModeSecAggPlus, DropoutRate: c.dropout, CorruptRate: c.corrupt}
			start := time.Now()
			_ = s.Validate()
			// Generous: -race and a loaded machine; it was minutes to hours.
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("Validate took %v", d)
			}
		})
	}
}
