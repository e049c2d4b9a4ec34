package schedule

import (
	"crypto/tls"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/aggregate/secagg"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/coordinator/state/statetest"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// The leader's decide step, tested without sockets: an FSM driven in
// memory (statetest), a fixed world of registered and connected
// participants, and a made-up clock. The scheduler below plays the
// executor in memory: proposals are applied to the FSM, a round's base
// model is zeros, a commit records a made-up digest, and tasks are kept
// for the test to answer.

// j1 is the job the scheduler runs.
const j1 = "job-000000000001"

// fixedWorld is a world whose participants are registered (all holding
// every dataset) and connected, except those down.
type fixedWorld struct {
	registered map[string]*state.Participant
	down       map[string]bool
}

func newFixedWorld(ids ...string) *fixedWorld {
	w := &fixedWorld{registered: map[string]*state.Participant{}, down: map[string]bool{}}
	for _, id := range ids {
		w.registered[id] = &state.Participant{ID: id, Examples: 100}
	}
	return w
}

func (w *fixedWorld) Connected(string) []string {
	return slices.DeleteFunc(w.ids(), func(id string) bool { return w.down[id] })
}
func (w *fixedWorld) Live(id string) bool { return w.registered[id] != nil && !w.down[id] }
func (w *fixedWorld) Participants() []*state.Participant {
	var ps []*state.Participant
	for _, id := range w.ids() {
		ps = append(ps, w.registered[id])
	}
	return ps
}

// ids are the registered participants, sorted.
func (w *fixedWorld) ids() []string {
	ids := slices.Collect(maps.Keys(w.registered))
	slices.Sort(ids)
	return ids
}

// scheduler runs one job's decisions on a made-up clock.
type scheduler struct {
	t       *testing.T
	fsm     *statetest.Driver
	world   *fixedWorld
	decider Decider
	run     *JobRun
	t0      time.Time
	// tasks are the tasks sent so far, by participant, in order.
	tasks map[string][]*pb.Task
	// effects are the last decision's; committed the updates committed.
	effects   []Effect
	committed [][]float32
}

// newScheduler submits spec as job j1 to an FSM and returns a scheduler
// for it in a world of the given participants, at t0 = the submission.
func newScheduler(t *testing.T, spec state.JobSpec, participants ...string) *scheduler {
	t.Helper()
	d := statetest.New(t)
	if err := d.Submit(j1, spec); err != nil {
		t.Fatal(err)
	}
	w := newFixedWorld(participants...)
	return &scheduler{t: t, fsm: d, world: w, decider: Decider{World: w, CA: d.CA.Pool()},
		run: NewJobRun(), t0: d.Now(), tasks: map[string][]*pb.Task{}}
}

// smallSpec is a plain FedAvg job of a 10-parameter model that asks no
// evaluation and has no straggler rule.
func smallSpec() state.JobSpec {
	s := state.DefaultJobSpec()
	s.Model, s.Rounds, s.TargetAccuracy, s.EvaluateFraction = "logreg:4-2", 3, 0, 0
	s.ParticipantsPerRound, s.MinParticipants, s.StragglerFactor = 3, 2, -1
	return s
}

func (s *scheduler) job() *state.Job {
	s.t.Helper()
	j, err := s.fsm.FSM.JobView(j1)
	if err != nil {
		s.t.Fatal(err)
	}
	return j
}

// at decides at t0 + d and executes the decision in memory.
func (s *scheduler) at(d time.Duration) []Effect {
	s.t.Helper()
	now := s.t0.Add(d)
	s.effects = s.decider.Decide(s.job(), s.run, now)
	for _, e := range s.effects {
		s.execute(e, now)
	}
	return s.effects
}

// execute does what Coordinator.execute does, in memory.
func (s *scheduler) execute(e Effect, now time.Time) {
	s.t.Helper()
	switch e := e.(type) {
	case Propose:
		if err := s.fsm.Apply(e.Kind, e.Body); err != nil {
			s.t.Fatalf("applying %T: %v", e.Body, err)
		}
	case AbortAttempt:
		if err := s.fsm.Apply(state.CmdAbortRound, e.Cmd); err != nil {
			s.t.Fatalf("aborting round %d: %v", e.Cmd.Number, err)
		}
	case OpenAttempt:
		e.Round.Base = make([]float32, e.Round.Length)
		if err := s.fsm.Apply(state.CmdOpenRound, e.Cmd); err != nil {
			s.t.Fatalf("opening round %d: %v", e.Round.Number, err)
		}
		s.run.Round, s.run.Reasons = e.Round, map[string]string{}
		s.send(e.Tasks)
	case CloseAttempt:
		r := e.Round
		delta, contributors, examples, err := r.Result(now, s.job().Spec.Aggregation.RuleConfig(), rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			s.execute(AbortAttempt{r.Abort(err.Error(), now)}, now)
			return
		}
		cmd := state.CommitRound{JobID: j1, Number: r.Number, Attempt: r.Attempt, Contributors: contributors, Examples: examples,
			At: now.UnixMilli(), Reason: r.ClosedBy, Silent: r.Silent(), Digest: fmt.Sprintf("sha256:round-%d", r.Number)}
		if err := s.fsm.Apply(state.CmdCommitRound, cmd); err != nil {
			s.t.Fatalf("committing round %d: %v", r.Number, err)
		}
		s.committed = append(s.committed, delta)
	case SendTasks:
		s.send(e.Tasks)
	case AskEvaluation:
		s.send(e.Tasks)
	}
}

func (s *scheduler) send(tasks []Addressed) {
	for _, t := range tasks {
		s.tasks[t.To] = append(s.tasks[t.To], t.Task)
	}
}

// lastTask is the last task sent to id.
func (s *scheduler) lastTask(id string) *pb.Task {
	s.t.Helper()
	ts := s.tasks[id]
	if len(ts) == 0 {
		s.t.Fatalf("%s was sent no task", id)
	}
	return ts[len(ts)-1]
}

// upload sends id's plain update of the open round at t0 + d, as the
// participant service does: admit, then add.
func (s *scheduler) upload(id string, d time.Duration, value float32) {
	s.t.Helper()
	r := s.run.Round
	h := &pb.UpdateHeader{JobId: j1, Round: r.Number, Attempt: r.Attempt, BaseModelDigest: r.BaseDigest,
		NumParams: uint64(r.Length), Examples: 100, EpochsDone: 1}
	if err := r.Admit(id, h, s.t0.Add(d)); err != nil {
		s.t.Fatalf("%s's update: %v", id, err)
	}
	delta := make([]float32, r.Length)
	for i := range delta {
		delta[i] = value
	}
	if err := r.Add(id, delta); err != nil {
		s.t.Fatalf("%s's update: %v", id, err)
	}
}

// proposed returns the commands of kind T the last decision proposed
// (aborts among them).
func proposed[T any](s *scheduler) []T {
	var out []T
	for _, e := range s.effects {
		var body any
		switch e := e.(type) {
		case Propose:
			body = e.Body
		case AbortAttempt:
			body = e.Cmd
		}
		if b, ok := body.(T); ok {
			out = append(out, b)
		}
	}
	return out
}

func opened(effects []Effect) *OpenAttempt {
	for _, e := range effects {
		if o, ok := e.(OpenAttempt); ok {
			return &o
		}
	}
	return nil
}

// TestDecidePlainRoundOutcomes: every way a plain round attempt ends,
// decided on a made-up clock: the cohort answers, the deadline passes with
// enough or too few updates, stragglers are cut, everyone refuses.
func TestDecidePlainRoundOutcomes(t *testing.T) {
	type upload struct {
		who string
		at  time.Duration
	}
	deadline := time.Duration(smallSpec().RoundDeadline)
	cases := []struct {
		name      string
		straggler float64
		uploads   []upload
		refuse    []string
		pendingAt time.Duration // a decision here leaves the round open (-1: none)
		closesAt  time.Duration
		commit    bool
		reason    string
	}{
		{"the whole cohort answers", -1, []upload{{"a", time.Second}, {"b", 2 * time.Second}, {"c", 3 * time.Second}},
			nil, 2 * time.Second, 3 * time.Second, true, "every cohort member's update arrived"},
		{"the deadline with enough", -1, []upload{{"a", time.Second}, {"b", time.Second}},
			nil, deadline - time.Second, deadline, true, "deadline passed with 2 of 3 updates"},
		{"the deadline with too few", -1, []upload{{"a", time.Second}},
			nil, deadline - time.Second, deadline, false, "deadline passed with 1 of 3 updates (minimum 2)"},
		{"stragglers cut", 3, []upload{{"a", time.Second}, {"b", time.Second}},
			nil, 2900 * time.Millisecond, 3 * time.Second, true, "stragglers: 2 of 3 updates after 3s"},
		{"stragglers cut with too few", 3, []upload{{"a", time.Second}},
			nil, -1, deadline, false, "deadline passed with 1 of 3"},
		{"everyone answers or refuses", -1, []upload{{"a", time.Second}, {"b", time.Second}},
			[]string{"c"}, -1, time.Second, true, "every cohort member answered or said why not"},
		{"everyone refuses", -1, nil,
			[]string{"a", "b", "c"}, -1, time.Second, false, "no update arrived: every cohort member refused or failed the task"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := smallSpec()
			spec.StragglerFactor = c.straggler
			s := newScheduler(t, spec, "a", "b", "c")
			o := opened(s.at(0))
			if o == nil || len(o.Tasks) != 3 || o.Cmd.Round.Number != 1 || o.Cmd.Round.Attempt != 1 {
				t.Fatalf("first decision %v; want round 1 attempt 1 opened with 3 tasks", s.effects)
			}
			for _, id := range c.refuse {
				s.run.Round.Refuse(id)
			}
			// The leader decides whenever an update arrives (an upload
			// wakes it), and at the times the case names.
			checked := c.pendingAt < 0
			for _, u := range c.uploads {
				if !checked && u.at > c.pendingAt {
					if s.at(c.pendingAt); s.run.Round == nil {
						t.Fatalf("closed at %s: %v", c.pendingAt, s.effects)
					}
					checked = true
				}
				s.upload(u.who, u.at, 1)
				if u.at < c.closesAt {
					if s.at(u.at); s.run.Round == nil {
						t.Fatalf("closed at %s, after %s's update: %v", u.at, u.who, s.effects)
					}
				}
			}
			if !checked {
				if s.at(c.pendingAt); s.run.Round == nil {
					t.Fatalf("closed at %s: %v", c.pendingAt, s.effects)
				}
			}
			s.at(c.closesAt)
			rec := s.job().Rounds[0]
			want := pb.RoundStatus_ROUND_STATUS_ABORTED
			if c.commit {
				want = pb.RoundStatus_ROUND_STATUS_COMMITTED
			}
			if s.run.Round != nil || rec.Status != want || !strings.Contains(rec.Reason, c.reason) {
				t.Fatalf("at %s: round 1 %v (%q); want %v (%q)", c.closesAt, rec.Status, rec.Reason, want, c.reason)
			}
			if c.commit && len(rec.Contributors) != len(c.uploads) {
				t.Fatalf("committed with %v; want the %d who uploaded", rec.Contributors, len(c.uploads))
			}
			// The next decision opens the next attempt: a new round after
			// a commit, a retry after an abort.
			next := opened(s.at(c.closesAt))
			wantNumber, wantAttempt := uint32(2), uint32(1)
			if !c.commit {
				wantNumber, wantAttempt = 1, 2
			}
			if next == nil || next.Cmd.Round.Number != wantNumber || next.Cmd.Round.Attempt != wantAttempt {
				t.Fatalf("after the close: %v; want round %d attempt %d opened", s.effects, wantNumber, wantAttempt)
			}
		})
	}
}

// TestDecideLeaderChange: a new leader finds a round open that its
// predecessor held: it aborts it ("leader change") and opens the retry;
// a round open in the FSM that a leader lost later is aborted too.
func TestDecideLeaderChange(t *testing.T) {
	s := newScheduler(t, smallSpec(), "a", "b", "c")
	s.at(0)
	if s.run.Round == nil {
		t.Fatalf("no round opened: %v", s.effects)
	}
	// The leader changes: the new one has no memory of the round.
	s.run = NewJobRun()
	s.at(time.Second)
	if aborts := proposed[state.AbortRound](s); len(aborts) != 1 || aborts[0].Reason != "leader change" || aborts[0].Attempt != 1 {
		t.Fatalf("new leader's first decision: %v; want attempt 1 aborted for a leader change", s.effects)
	}
	if o := opened(s.at(time.Second)); o == nil || o.Cmd.Round.Attempt != 2 {
		t.Fatalf("then %v; want attempt 2 opened", s.effects)
	}
	// The same leader loses the round it holds (an apply that failed here
	// but committed).
	s.run.Round = nil
	s.at(2 * time.Second)
	if aborts := proposed[state.AbortRound](s); len(aborts) != 1 || aborts[0].Reason != "round lost by the leader" {
		t.Fatalf("%v; want attempt 2 aborted as lost by the leader", s.effects)
	}
}

// TestDecideJobEnds: a job ends when its rounds are done, or fails when a
// round aborts max_attempts times in a row; with too few participants it
// waits, saying so once.
func TestDecideJobEnds(t *testing.T) {
	t.Run("every round committed", func(t *testing.T) {
		spec := smallSpec()
		spec.Rounds = 2
		s := newScheduler(t, spec, "a", "b", "c")
		clock := time.Duration(0)
		for round := 1; round <= 2; round++ {
			s.at(clock)
			for _, id := range []string{"a", "b", "c"} {
				s.upload(id, clock, float32(round))
			}
			clock += time.Second
			s.at(clock)
		}
		s.at(clock)
		if f := proposed[state.FinishJob](s); len(f) != 1 || f[0].Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || f[0].Reason != "all 2 rounds committed" {
			t.Fatalf("%v; want the job finished: all 2 rounds committed", s.effects)
		}
		if j := s.job(); j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || len(s.committed) != 2 || s.committed[1][0] != 2 {
			t.Fatalf("job %v with updates %v", j.Status, s.committed)
		}
	})
	t.Run("max attempts", func(t *testing.T) {
		spec := smallSpec()
		spec.MaxAttempts = 2
		s := newScheduler(t, spec, "a", "b", "c")
		clock := time.Duration(0)
		for range 2 {
			s.at(clock)
			clock += time.Minute
			s.at(clock) // nobody uploads: the deadline aborts it
		}
		s.at(clock)
		if f := proposed[state.FinishJob](s); len(f) != 1 || f[0].Status != pb.JobStatus_JOB_STATUS_FAILED ||
			!strings.HasPrefix(f[0].Reason, "round 1 aborted 2 times in a row (max_attempts 2); last: deadline passed with 0 of 3 updates") {
			t.Fatalf("%v; want the job failed after 2 attempts", s.effects)
		}
	})
	t.Run("too few connected", func(t *testing.T) {
		s := newScheduler(t, smallSpec(), "a", "b", "c")
		s.world.down["b"], s.world.down["c"] = true, true
		for i := range 3 {
			s.at(time.Duration(i) * time.Second)
			notes := 0
			for _, e := range s.effects {
				if n, ok := e.(Note); ok && n.Msg == "waiting for participants" {
					notes++
				} else {
					t.Fatalf("waiting, the decision had %T %v", e, e)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[i == 0]; notes != want {
				t.Fatalf("decision %d said it waits %d times; want %d", i, notes, want)
			}
		}
		delete(s.world.down, "b")
		if o := opened(s.at(3 * time.Second)); o == nil || !slices.Equal(o.Cmd.Round.Cohort, []string{"a", "b"}) {
			t.Fatalf("%v; want a round of a and b once b is back", s.effects)
		}
	})
	// The last round commits while nobody is connected to evaluate it (as
	// after a leader change): the job waits a round deadline for an
	// evaluator, and finishes without one only then.
	for _, back := range []bool{true, false} {
		t.Run(fmt.Sprintf("final model evaluated, evaluator back %v", back), func(t *testing.T) {
			spec := smallSpec()
			spec.Rounds, spec.EvaluateFraction = 1, 1
			s := newScheduler(t, spec, "a", "b", "c")
			s.at(0) // round 0's evaluation
			for _, id := range []string{"a", "b", "c"} {
				s.evaluate(id, 0)
			}
			s.at(0)
			s.at(0) // round 1 opens
			for _, id := range []string{"a", "b", "c"} {
				s.upload(id, time.Second, 1)
			}
			s.world.down["a"], s.world.down["b"], s.world.down["c"] = true, true, true
			s.at(time.Second) // round 1 commits, to nobody
			for _, d := range []time.Duration{time.Second, 2 * time.Second} {
				if s.at(d); len(proposed[state.FinishJob](s)) != 0 {
					t.Fatalf("at %v: %v; want the job waiting for an evaluator", d, s.effects)
				}
			}
			if !back {
				// A new leader (its memory of the job empty) past the
				// deadline finishes at once.
				s.run = NewJobRun()
				s.at(time.Second + time.Duration(spec.RoundDeadline))
				if f := proposed[state.FinishJob](s); len(f) != 1 || f[0].Reason != "all 1 rounds committed; the final model was not evaluated: no participant that could evaluate it was connected within a round deadline" {
					t.Fatalf("%v; want the job finished without its final evaluation", s.effects)
				}
				return
			}
			delete(s.world.down, "b")
			s.at(3 * time.Second)
			if task := s.lastTask("b"); task.Kind != pb.TaskKind_TASK_KIND_EVALUATE || task.Round != 1 {
				t.Fatalf("b was sent %v; want the evaluation of round 1", task)
			}
			s.evaluate("b", 1)
			s.at(3 * time.Second)
			if f := proposed[state.FinishJob](s); len(f) != 1 || f[0].Reason != "all 1 rounds committed" || !s.job().Evaluated(1) {
				t.Fatalf("%v; want round 1 evaluated, then the job finished", s.effects)
			}
		})
	}
}

// evaluate reports id's evaluation of the model after round number: 9 of
// 10 examples right.
func (s *scheduler) evaluate(id string, number uint32) {
	s.t.Helper()
	req := &pb.ReportEvaluationRequest{JobId: j1, ModelRound: number, ModelDigest: s.job().ModelDigest(number), Examples: 10, Correct: 9, LossSum: 1}
	if err := s.run.Eval.Add(id, req); err != nil {
		s.t.Fatalf("%s's evaluation of round %d: %v", id, number, err)
	}
}

// secureClient is a cohort member's side of secure aggregation in these
// tests, answering the tasks the scheduler sent it.
type secureClient struct {
	name   string
	cert   tls.Certificate
	client *secagg.Client
	certs  map[int][]byte
	cohort []string
}

// secureCohort issues certificates for ids and answers a secure round's
// train tasks: each member's update is all value, weighing 1.
func (s *scheduler) secureCohort(ids []string) map[string]*secureClient {
	s.t.Helper()
	out := map[string]*secureClient{}
	for _, id := range ids {
		cert, err := s.fsm.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: id, Organization: "org1"})
		if err != nil {
			s.t.Fatal(err)
		}
		out[id] = &secureClient{name: id, cert: cert, certs: map[int][]byte{}}
	}
	return out
}

// train answers id's train task: it masks an update of all value and
// advertises its keys.
func (s *scheduler) train(c *secureClient, value float32) {
	s.t.Helper()
	t := s.lastTask(c.name)
	st := t.GetSecagg()
	n := int(st.GetN())
	quant, err := secagg.NewQuantizer(st.GetClip(), n)
	if err != nil {
		s.t.Fatal(err)
	}
	x := make([]float32, st.GetLength())
	for i := range x {
		x[i] = value
	}
	x[len(x)-1] = float32(st.GetClip()) // weight 1
	params := secagg.Params{N: n, K: int(st.GetDegree()), T: int(st.GetThreshold()), Length: int(st.GetLength()),
		GraphSeed: st.GetGraphSeed(), Session: protocol.SecAggSession(t.GetJobId(), t.GetRound(), t.GetAttempt(), st.GetGroup())}
	c.cohort = st.GetCohort()
	verify := func(from int, identity string, msg, sig []byte) bool {
		return pki.VerifySigned(s.fsm.CA.Pool(), c.certs[from], pki.Identity{Role: pki.RoleParticipant, Name: identity}, msg, sig) == nil
	}
	sign := func(msg []byte) ([]byte, error) { return pki.Sign(c.cert, msg) }
	if c.client, err = secagg.NewClient(params, int(st.GetIndex()), c.name, quant.Quantize(x, rand.New(rand.NewPCG(3, 4))), sign, verify); err != nil {
		s.t.Fatal(err)
	}
	ad, err := c.client.Advertise()
	if err != nil {
		s.t.Fatal(err)
	}
	g := s.run.Round.Group(c.name)
	checked, err := g.CheckAdvertisement(c.name, protocol.AdvertisementToWire(ad, c.cert.Certificate[0]))
	if err == nil {
		err = g.Advertise(checked)
	}
	if err != nil {
		s.t.Fatalf("%s's advertisement: %v", c.name, err)
	}
}

// answer answers id's latest secure-aggregation task of a later phase.
func (s *scheduler) answer(c *secureClient) {
	s.t.Helper()
	t := s.lastTask(c.name)
	st, g := t.GetSecagg(), s.run.Round.Group(c.name)
	var err error
	switch t.GetKind() {
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS:
		var ads []secagg.Advertisement
		for _, a := range st.GetAdvertisements() {
			c.certs[int(a.GetFrom())] = a.GetCertificate()
			ads = append(ads, protocol.AdvertisementFromWire(a, c.cohort[a.GetFrom()]))
		}
		var shares []secagg.EncryptedShare
		if shares, err = c.client.ShareKeys(ads); err == nil {
			err = g.ShareKeys(c.name, protocol.SharesToWire(shares), 0, 1)
		}
	case pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT:
		var y []uint32
		if y, err = c.client.MaskedInput(protocol.SharesFromWire(st.GetShares()), ints(st.GetSurvivors())); err == nil {
			h := &pb.UpdateHeader{JobId: j1, Round: t.GetRound(), Attempt: t.GetAttempt(), BaseModelDigest: t.GetBaseModelDigest(),
				NumParams: uint64(len(y)), Masked: true}
			if err = s.run.Round.AdmitMasked(c.name, h); err == nil {
				err = g.AddMasked(c.name, y)
			}
		}
	case pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		var reveals []secagg.Reveal
		if reveals, err = c.client.Unmask(ints(st.GetSurvivors())); err == nil {
			err = g.Unmask(c.name, protocol.RevealsToWire(reveals), 0, 1)
		}
	default:
		s.t.Fatalf("%s's latest task is %v", c.name, t.GetKind())
	}
	if err != nil {
		s.t.Fatalf("%s answering %v: %v", c.name, t.GetKind(), err)
	}
}

func ints(v []uint32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// TestDecideSecureRound: a round with secure aggregation through every
// phase on a made-up clock, with real secure-aggregation clients but no
// sockets: it commits the cohort's mean when everyone answers, and a phase
// that too few survive aborts the attempt, before anything is unmasked.
func TestDecideSecureRound(t *testing.T) {
	cohort := []string{"a", "b", "c", "d", "e"}
	secureSpec := func() state.JobSpec {
		spec := smallSpec()
		spec.ParticipantsPerRound, spec.MinParticipants = 5, 3
		spec.SecureAggregation = state.SecureAggregation{Mode: state.ModeSecAgg}
		return spec
	}
	roundDeadline := time.Duration(secureSpec().RoundDeadline)
	phaseDeadline := secureSpec().SecureAggregation.EffectivePhaseDeadline()
	phases := []pb.TaskKind{pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT, pb.TaskKind_TASK_KIND_SECAGG_UNMASK}

	t.Run("everyone answers every phase", func(t *testing.T) {
		s := newScheduler(t, secureSpec(), cohort...)
		clients := s.secureCohort(cohort)
		if o := opened(s.at(0)); o == nil || len(o.Round.Groups) != 1 {
			t.Fatalf("%v; want a secure round opened", s.effects)
		}
		for i, id := range cohort {
			s.train(clients[id], 0.1*float32(i+1)) // the mean is 0.3
		}
		clock := time.Second
		for _, kind := range phases {
			s.at(clock)
			for _, id := range cohort {
				if got := s.lastTask(id).GetKind(); got != kind {
					t.Fatalf("at %s %s's task is %v; want %v", clock, id, got, kind)
				}
				s.answer(clients[id])
			}
			clock += time.Second
		}
		// The unmasking phase closed: the round is detached for the
		// executor, which unmasks and commits.
		s.at(clock)
		closing := slices.ContainsFunc(s.effects, func(e Effect) bool { _, ok := e.(CloseAttempt); return ok })
		rec := s.job().Rounds[0]
		if !closing || rec.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || len(rec.Contributors) != 5 {
			t.Fatalf("%v: round 1 %v with %v (%s); want committed by all 5", s.effects, rec.Status, rec.Contributors, rec.Reason)
		}
		for i, v := range s.committed[0] {
			if math.Abs(float64(v)-0.3) > 1e-3 {
				t.Fatalf("entry %d of the committed update is %v; want the mean 0.3", i, v)
			}
		}
		t.Logf("committed: %s", rec.Reason)
	})

	aborts := []struct {
		name string
		// answering is who answers phase i (0: train and advertise); down
		// are disconnected after that phase.
		answering [][]string
		down      []string
		closeAt   time.Duration
		reason    string
		// unmasking: the abort comes from the executor's unmasking (the
		// round detached once its unmasking phase closed).
		unmasking bool
	}{
		{"too few advertise by the deadline", [][]string{{"a", "b"}}, nil, roundDeadline,
			"secure aggregation, advertise-keys phase", false},
		{"too few share keys, the rest disconnected", [][]string{cohort, {"a", "b"}}, []string{"c", "d", "e"}, 2 * time.Second,
			"share-keys phase: too few clients survived: 2 clients shared keys", false},
		{"too few masked inputs by the phase deadline", [][]string{cohort, cohort, {"a", "b"}}, nil, 2*time.Second + phaseDeadline,
			"secure aggregation, masked-input phase", false},
		{"too few reveal by the phase deadline", [][]string{cohort, cohort, cohort, {"a", "b"}}, nil, 3*time.Second + phaseDeadline,
			"secure aggregation, unmask phase", true},
	}
	for _, c := range aborts {
		t.Run(c.name, func(t *testing.T) {
			s := newScheduler(t, secureSpec(), cohort...)
			clients := s.secureCohort(cohort)
			s.at(0)
			clock := time.Duration(0)
			for phase, who := range c.answering {
				if phase > 0 {
					s.at(clock) // sends the phase's tasks
				}
				for _, id := range who {
					if phase == 0 {
						s.train(clients[id], 1)
					} else {
						s.answer(clients[id])
					}
				}
				clock += time.Second
			}
			for _, id := range c.down {
				s.world.down[id] = true
			}
			if c.closeAt > clock {
				if s.at(c.closeAt - time.Millisecond); s.run.Round == nil {
					t.Fatalf("closed before %s: %v", c.closeAt, s.effects)
				}
			}
			s.at(c.closeAt)
			rec := s.job().Rounds[0]
			if s.run.Round != nil || rec.Status != pb.RoundStatus_ROUND_STATUS_ABORTED || !strings.Contains(rec.Reason, c.reason) {
				t.Fatalf("at %s: round 1 %v (%q); want aborted (%q)", c.closeAt, rec.Status, rec.Reason, c.reason)
			}
			if got := slices.ContainsFunc(s.effects, func(e Effect) bool { _, ok := e.(CloseAttempt); return ok }); got != c.unmasking {
				t.Fatalf("the abort went through the executor's unmasking: %v; want %v", got, c.unmasking)
			}
			t.Logf("aborted: %s", rec.Reason)
		})
	}
}
