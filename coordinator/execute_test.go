package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/coordinator/state/statetest"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// memCluster is the executor's cluster in memory: commands go to an FSM
// (statetest), blobs to a map; replication can be made to fail.
type memCluster struct {
	d                *statetest.Driver
	blobs            map[string][]byte
	failReplications bool
}

func (m *memCluster) apply(kind state.CommandType, body any) error { return m.d.Apply(kind, body) }

func (m *memCluster) blob(_ context.Context, digest string) ([]byte, error) {
	b, ok := m.blobs[digest]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownModel, digest)
	}
	return b, nil
}

func (m *memCluster) replicateBlob(_ context.Context, b []byte) (string, error) {
	if m.failReplications {
		return "", errors.New("no quorum: the other coordinators are unreachable")
	}
	d := protocol.Digest(b)
	m.blobs[d] = b
	return d, nil
}

// sentTasks records the tasks the executor queued.
type sentTasks map[string][]*pb.Task

func (s sentTasks) send(id string, t *pb.Task) bool {
	s[id] = append(s[id], t)
	return true
}

// executorRig is a leader's decide step and executor on a cluster in
// memory, running one job.
type executorRig struct {
	t       *testing.T
	cluster *memCluster
	sent    sentTasks
	decider schedule.Decider
	exec    *executor
	run     *schedule.JobRun
	t0      time.Time
}

const execJob = "job-000000000001"

// newExecutorRig submits spec (its initial model all zeros, stored as
// "d0") in a world of participants a, b and c.
func newExecutorRig(t *testing.T, spec state.JobSpec, params int) *executorRig {
	t.Helper()
	d := statetest.New(t)
	if err := d.Submit(execJob, spec); err != nil {
		t.Fatal(err)
	}
	m := &memCluster{d: d, blobs: map[string][]byte{"d0": protocol.EncodeFloat32(make([]float32, params))}}
	rig := &executorRig{t: t, cluster: m, sent: sentTasks{}, run: schedule.NewJobRun(), t0: d.Now()}
	world := &registry{ids: []string{"a", "b", "c"}}
	rig.decider = schedule.Decider{World: world}
	rig.exec = &executor{cluster: m, tasks: rig.sent, leader: &leaderState{jobs: map[string]*schedule.JobRun{execJob: rig.run}},
		metrics: newMetrics(), log: slog.New(slog.DiscardHandler), kick: func() {}}
	return rig
}

// registry is a world of registered participants, all connected.
type registry struct{ ids []string }

func (r *registry) Connected(string) []string { return slices.Clone(r.ids) }
func (r *registry) Live(string) bool          { return true }
func (r *registry) Participants() []*state.Participant {
	var ps []*state.Participant
	for _, id := range r.ids {
		ps = append(ps, &state.Participant{ID: id, Examples: 100})
	}
	return ps
}

// step decides at t0 + d and executes the decision.
func (r *executorRig) step(d time.Duration) error {
	r.t.Helper()
	job, err := r.cluster.d.FSM.JobView(execJob)
	if err != nil {
		r.t.Fatal(err)
	}
	now := r.t0.Add(d)
	return r.exec.execute(job, r.run, r.decider.Decide(job, r.run, now), now)
}

// uploadAll adds every cohort member's update, all value, to the open
// round.
func (r *executorRig) uploadAll(value float32) {
	r.t.Helper()
	round := r.run.Round
	for _, id := range slices.Sorted(maps.Keys(round.Cohort)) {
		h := &pb.UpdateHeader{JobId: execJob, Round: round.Number, Attempt: round.Attempt, BaseModelDigest: round.BaseDigest,
			NumParams: uint64(round.Length), Examples: 100, EpochsDone: 1}
		if err := round.Admit(id, h, r.t0); err != nil {
			r.t.Fatal(err)
		}
		delta := make([]float32, round.Length)
		for i := range delta {
			delta[i] = value
		}
		if err := round.Add(id, delta); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *executorRig) job() *state.Job {
	j, err := r.cluster.d.FSM.JobView(execJob)
	if err != nil {
		r.t.Fatal(err)
	}
	return j
}

// execParams is the parameter count of execSpec's model.
var execParams = model.MustParseSpec(execSpec().Model).NumParams()

func execSpec() state.JobSpec {
	s := state.DefaultJobSpec()
	s.Model, s.Rounds, s.TargetAccuracy, s.EvaluateFraction = "logreg:4-2", 2, 0, 0
	s.ParticipantsPerRound, s.MinParticipants, s.StragglerFactor = 3, 2, -1
	return s
}

// TestExecutorOpensAndCommits: the executor opens a decided round (the
// base model fetched, the attempt committed, the round made the job's
// open one, the cohort's tasks queued), then commits the round's model:
// stored on the cluster under its digest and committed with it.
func TestExecutorOpensAndCommits(t *testing.T) {
	r := newExecutorRig(t, execSpec(), execParams)
	if err := r.step(0); err != nil {
		t.Fatal(err)
	}
	if r.run.Round == nil || len(r.run.Round.Base) != execParams || len(r.sent) != 3 {
		t.Fatalf("round %v, tasks to %d; want round 1 open on a base of %d and 3 tasks", r.run.Round, len(r.sent), execParams)
	}
	if rec := r.job().OpenRound(); rec == nil || rec.Number != 1 {
		t.Fatalf("the FSM's open round is %v; want round 1", rec)
	}
	r.uploadAll(0.25)
	if err := r.step(time.Second); err != nil {
		t.Fatal(err)
	}
	rec := r.job().Committed(1)
	if rec == nil || len(rec.Contributors) != 3 || r.run.Round != nil {
		t.Fatalf("round 1 committed %v; want by a, b and c, and no round held", rec)
	}
	blob, ok := r.cluster.blobs[rec.Digest]
	if !ok {
		t.Fatalf("the committed model %s is not stored", rec.Digest)
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range params {
		if math.Abs(float64(v)-0.25) > 1e-6 {
			t.Fatalf("parameter %d of the new model is %v; want the base 0 plus the mean update 0.25", i, v)
		}
	}
	// The next decision opens round 2 from that model.
	if err := r.step(time.Second); err != nil || r.run.Round == nil || r.run.Round.BaseDigest != rec.Digest {
		t.Fatalf("%v: round 2 %v; want it open on round 1's model", err, r.run.Round)
	}
}

// TestExecutorAbortsWhatItCannotCommit: a new model that does not reach a
// quorum aborts its round, saying so; a base model nobody has opens
// nothing.
func TestExecutorAbortsWhatItCannotCommit(t *testing.T) {
	t.Run("no quorum for the new model", func(t *testing.T) {
		r := newExecutorRig(t, execSpec(), execParams)
		if err := r.step(0); err != nil {
			t.Fatal(err)
		}
		r.uploadAll(0.25)
		r.cluster.failReplications = true
		err := r.step(time.Second)
		rec := r.job().Rounds[0]
		if err == nil || rec.Status != pb.RoundStatus_ROUND_STATUS_ABORTED || !strings.Contains(rec.Reason, "did not reach a quorum") {
			t.Fatalf("%v: round 1 %v (%q); want aborted for want of a quorum", err, rec.Status, rec.Reason)
		}
	})
	t.Run("no base model", func(t *testing.T) {
		r := newExecutorRig(t, execSpec(), execParams)
		delete(r.cluster.blobs, "d0")
		err := r.step(0)
		if !errors.Is(err, ErrUnknownModel) || r.run.Round != nil || len(r.job().Rounds) != 0 || len(r.sent) != 0 {
			t.Fatalf("%v: round %v, %d attempts, %d tasks; want nothing opened", err, r.run.Round, len(r.job().Rounds), len(r.sent))
		}
	})
	t.Run("a base model of another shape", func(t *testing.T) {
		r := newExecutorRig(t, execSpec(), execParams-3)
		if err := r.step(0); !errors.Is(err, state.ErrConflict) || r.run.Round != nil || len(r.job().Rounds) != 0 {
			t.Fatalf("%v: round %v; want nothing opened on a base of %d parameters for a model of %d", err, r.run.Round, execParams-3, execParams)
		}
	})
}
