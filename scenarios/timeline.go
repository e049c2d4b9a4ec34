package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Event kinds of the timeline.
const (
	// EventKillCoordinator crashes a coordinator (Target: its name, or
	// "leader"): it stops without a goodbye, as a SIGKILL would.
	EventKillCoordinator = "kill_coordinator"
	// EventRestartCoordinator starts a killed coordinator (Target: its
	// name, or "killed": the one killed last) again on its data folder and
	// addresses.
	EventRestartCoordinator = "restart_coordinator"
	// EventPartition cuts a region (Region, or "leader": the leader's) off
	// from every other, for Duration or until Rounds more rounds commit.
	EventPartition = "partition"
	// EventDropout: Fraction of the round's cohort (from Region's, if set)
	// train but vanish before uploading.
	EventDropout = "dropout"
	// EventHostile: from Round on, Fraction of the participants (from
	// Region's, if set) send −Scale times what they trained.
	EventHostile = "hostile"
	// EventStraggler: from Round on, every local epoch of Region's
	// participants takes at least Delay.
	EventStraggler = "straggler"
)

// Phases of a round an event is tied to.
const (
	// PhaseOpen: the first cohort member starts training the round.
	PhaseOpen = "open"
	// PhaseUpload: the round's first update is about to be sent (it waits
	// for the event).
	PhaseUpload = "upload"
	// PhaseCommit: the runner has seen the round commit.
	PhaseCommit = "commit"
)

// Event is one entry of a scenario's timeline.
type Event struct {
	// Round and Phase say when: events fire in the round's first attempt.
	Round uint32 `yaml:"round"`
	Phase string `yaml:"phase"`
	Kind  string `yaml:"kind"`
	// Target is a coordinator's name, or "leader".
	Target string `yaml:"target"`
	// Region is the region concerned (partition: or "leader").
	Region string `yaml:"region"`
	// Duration (wall time) or Rounds (rounds committed by the others)
	// bound a partition.
	Duration state.Duration `yaml:"duration"`
	Rounds   uint32         `yaml:"rounds"`
	// Fraction of participants concerned (dropout, hostile).
	Fraction float64 `yaml:"fraction"`
	// Scale is a hostile participant's factor (0: 10).
	Scale float64 `yaml:"scale"`
	// Delay is a straggler's least time per local epoch.
	Delay state.Duration `yaml:"delay"`
}

// String is a short label: "partition de", "kill_coordinator leader".
func (e Event) String() string {
	return strings.TrimSpace(e.Kind + " " + cmp.Or(e.Target, e.Region))
}

// validateEvents checks the timeline.
func (s *Scenario) validateEvents() error {
	regions := s.regions()
	killed := map[string]bool{}
	for i, e := range s.Events {
		field := fmt.Sprintf("events[%d]", i)
		if e.Round < 1 {
			return fieldErrorf(field+".round", "want a round ≥ 1")
		}
		switch e.Phase {
		case "", PhaseOpen, PhaseUpload, PhaseCommit:
		default:
			return fieldErrorf(field+".phase", "%q: want open, upload or commit", e.Phase)
		}
		coordinatorNamed := func(name string) bool {
			return slices.ContainsFunc(s.Coordinators, func(c CoordinatorSpec) bool { return c.Name == name })
		}
		regionOK := func(allowLeader, required bool) error {
			switch {
			case e.Region == "" && required:
				return fieldErrorf(field+".region", "%s needs a region", e.Kind)
			case e.Region == "leader" && allowLeader, e.Region == "", slices.Contains(regions, e.Region):
				return nil
			}
			return fieldErrorf(field+".region", "%q is not a region of the scenario", e.Region)
		}
		var err error
		switch e.Kind {
		case EventKillCoordinator:
			switch {
			case len(s.Coordinators) < 2:
				err = fieldErrorf(field, "killing the only coordinator ends the federation; list more coordinators")
			case e.Target != "leader" && !coordinatorNamed(e.Target):
				err = fieldErrorf(field+".target", "%q: want a coordinator's name or leader", e.Target)
			}
			killed[e.Target] = true
		case EventRestartCoordinator:
			if !(coordinatorNamed(e.Target) || e.Target == "killed") || len(killed) == 0 || coordinatorNamed(e.Target) && !killed[e.Target] && !killed["leader"] {
				err = fieldErrorf(field+".target", "%q: want killed, or the name of a coordinator an earlier event kills", e.Target)
			}
		case EventPartition:
			switch {
			case (e.Duration > 0) == (e.Rounds > 0):
				err = fieldErrorf(field, "a partition lasts a duration or a number of rounds: set one")
			case e.Duration < 0 || time.Duration(e.Duration) > time.Hour:
				err = fieldErrorf(field+".duration", "want up to 1h")
			default:
				err = regionOK(true, true)
			}
		case EventDropout:
			if !(e.Fraction > 0 && e.Fraction <= 1) {
				err = fieldErrorf(field+".fraction", "want a fraction in (0, 1]")
			} else {
				err = regionOK(false, false)
			}
		case EventHostile:
			if !(e.Fraction > 0 && e.Fraction < 1) || !(e.Scale >= 0) || math.IsInf(e.Scale, 0) {
				err = fieldErrorf(field, "hostile wants a fraction in (0, 1) and a scale ≥ 0 (0: 10)")
			} else {
				err = regionOK(false, false)
			}
		case EventStraggler:
			if e.Delay <= 0 || time.Duration(e.Delay) > time.Minute {
				err = fieldErrorf(field+".delay", "want a delay per local epoch in (0, 1m]")
			} else {
				err = regionOK(false, true)
			}
		default:
			err = fieldErrorf(field+".kind", "%q: want %s", e.Kind, strings.Join([]string{EventKillCoordinator, EventRestartCoordinator, EventPartition, EventDropout, EventHostile, EventStraggler}, ", "))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// EventReport is what an event did.
type EventReport struct {
	Round             uint32  `json:"round"`
	Phase             string  `json:"phase"`
	Kind              string  `json:"kind"`
	Target            string  `json:"target,omitempty"`
	SecondsSinceStart float64 `json:"seconds_since_start"`
	// Outcome says what happened, in words.
	Outcome string `json:"outcome"`
	// FailoverSeconds, for a killed or cut-off leader, is the time until
	// another coordinator led (−1: none did).
	FailoverSeconds *float64 `json:"failover_seconds,omitempty"`
	// CommittedDuring and CutOffCommitted, for a partition: rounds the
	// others committed while it lasted, and rounds the cut-off side did.
	CommittedDuring *int `json:"committed_during,omitempty"`
	CutOffCommitted *int `json:"cut_off_committed,omitempty"`
}

// cluster is what the timeline acts on: the running coordinators.
type cluster interface {
	// leader returns the current leader's name ("" if none is known).
	leader() string
	regionOf(name string) string
	kill(name string) error
	restart(ctx context.Context, name string) error
	cut(region string)
	heal(region string)
	// committed returns the rounds the named coordinator's state holds
	// committed for the job.
	committed(name string) int
	// names lists the coordinators, live or not.
	names() []string
	live(name string) bool
}

// timeline fires a scenario's events. Participant hooks call open and
// upload; the runner calls commit for each committed round.
type timeline struct {
	sc    *Scenario
	c     cluster
	start time.Time
	log   func(format string, args ...any)

	stop chan struct{} // closed by finish: timed partitions heal at once
	// acting serialises the events' actions (a kill, a restart, a cut),
	// which can take seconds; mu guards the state below and is never held
	// across an action, so participants' calls (faultAt) do not wait for one.
	acting      sync.Mutex
	mu          sync.Mutex
	fired       []bool
	reports     []*EventReport
	heals       []pendingHeal
	wg          sync.WaitGroup
	killed      []string           // coordinators killed and not restarted, in order
	hostile     map[string]float64 // participant → scale, from the event's round
	hostileFrom map[string]uint32
	slowFrom    map[string]uint32 // region → first straggling round
	slowDelay   map[string]time.Duration
}

// pendingHeal ends a partition after some rounds.
type pendingHeal struct {
	region   string
	atRound  uint32
	report   *EventReport
	before   int // the cut-off side's committed rounds at the cut
	victims  []string
	othersAt int
}

func newTimeline(sc *Scenario, c cluster, start time.Time, log func(string, ...any)) *timeline {
	t := &timeline{sc: sc, c: c, start: start, log: log, fired: make([]bool, len(sc.Events)), stop: make(chan struct{}),
		hostile: map[string]float64{}, hostileFrom: map[string]uint32{}, slowFrom: map[string]uint32{}, slowDelay: map[string]time.Duration{}}
	for _, e := range sc.Events {
		switch e.Kind {
		case EventHostile:
			for name, scale := range chooseHostile(sc, e.Fraction, e.Scale, e.Region) {
				t.hostile[name], t.hostileFrom[name] = scale, e.Round
			}
		case EventStraggler:
			t.slowFrom[e.Region], t.slowDelay[e.Region] = e.Round, time.Duration(e.Delay)
		}
	}
	return t
}

// faultAt is the participant's FaultAt hook: it also marks the round open.
func (t *timeline) faultAt(name, region string) func(task *pb.Task) (float64, time.Duration) {
	return func(task *pb.Task) (float64, time.Duration) {
		t.fire(task, PhaseOpen)
		var flip float64
		var delay time.Duration
		t.mu.Lock()
		if from, ok := t.hostileFrom[name]; ok && task.Round >= from {
			flip = t.hostile[name]
		}
		if from, ok := t.slowFrom[region]; ok && task.Round >= from {
			delay = t.slowDelay[region]
		}
		t.mu.Unlock()
		return flip, delay
	}
}

// upload is the participant's BeforeUpload hook: events of the upload
// phase fire first; then a dropout may stop the update.
func (t *timeline) upload(name, region string, task *pb.Task) error {
	t.fire(task, PhaseUpload)
	for _, e := range t.sc.Events {
		if e.Kind != EventDropout || e.Round != task.Round || task.Attempt != 1 || e.Region != "" && e.Region != region {
			continue
		}
		h := rand.New(rand.NewPCG(t.sc.Job.Seed^uint64(task.Round), hashName(name)))
		if h.Float64() < e.Fraction {
			return fmt.Errorf("scenario event: %s vanishes from round %d after training", name, task.Round)
		}
	}
	return nil
}

// fire runs the events of task's round and phase not yet fired, once, in
// the round's first attempt.
func (t *timeline) fire(task *pb.Task, phase string) {
	if task.Attempt != 1 || task.Kind != pb.TaskKind_TASK_KIND_TRAIN {
		return
	}
	t.fireRound(task.Round, phase)
}

func (t *timeline) fireRound(round uint32, phase string) {
	t.acting.Lock()
	defer t.acting.Unlock()
	type firing struct {
		e   Event
		rep *EventReport
	}
	var due []firing
	t.mu.Lock()
	for i, e := range t.sc.Events {
		if t.fired[i] || e.Round != round || cmp.Or(e.Phase, PhaseOpen) != phase {
			continue
		}
		t.fired[i] = true
		rep := &EventReport{Round: e.Round, Phase: cmp.Or(e.Phase, PhaseOpen), Kind: e.Kind, Target: cmp.Or(e.Target, e.Region),
			SecondsSinceStart: time.Since(t.start).Seconds()}
		t.reports = append(t.reports, rep)
		due = append(due, firing{e, rep})
	}
	t.mu.Unlock()
	for _, f := range due {
		out := t.apply(f.e, f.rep)
		t.mu.Lock()
		// A failover watch may have added to the outcome already.
		f.rep.Outcome = out + f.rep.Outcome
		line := fmt.Sprintf("round %3d: event %s (%s): %s", f.e.Round, strings.TrimSpace(f.e.Kind+" "+f.rep.Target), f.rep.Phase, f.rep.Outcome)
		t.mu.Unlock()
		t.log("%s", line)
	}
}

// apply does one event and says what it did. The caller holds t.acting,
// not t.mu: apply takes t.mu only around the timeline's state.
func (t *timeline) apply(e Event, rep *EventReport) string {
	switch e.Kind {
	case EventKillCoordinator:
		name := e.Target
		wasLeader := false
		if name == "leader" {
			if name = t.c.leader(); name == "" {
				return "no leader known: nobody killed"
			}
		}
		wasLeader = name == t.c.leader()
		rep.Target = name
		if err := t.c.kill(name); err != nil {
			return fmt.Sprintf("killing %s failed: %v", name, err)
		}
		t.mu.Lock()
		t.killed = append(t.killed, name)
		t.mu.Unlock()
		if wasLeader {
			t.watchFailover(rep, name)
		}
		return fmt.Sprintf("%s killed (leader: %v)", name, wasLeader)
	case EventRestartCoordinator:
		name := e.Target
		if name == "killed" {
			t.mu.Lock()
			if len(t.killed) == 0 {
				t.mu.Unlock()
				return "no coordinator is down: nothing to restart"
			}
			name = t.killed[len(t.killed)-1]
			t.mu.Unlock()
		}
		rep.Target = name
		if t.c.live(name) {
			return name + " is running: nothing to restart"
		}
		if err := t.c.restart(context.Background(), name); err != nil {
			return fmt.Sprintf("restarting %s failed: %v", name, err)
		}
		t.mu.Lock()
		t.killed = slices.DeleteFunc(t.killed, func(n string) bool { return n == name })
		t.mu.Unlock()
		return name + " restarted on its data folder"
	case EventPartition:
		region := e.Region
		if region == "leader" {
			l := t.c.leader()
			if l == "" {
				return "no leader known: nothing cut"
			}
			region = t.c.regionOf(l)
		}
		rep.Target = region
		var victims []string
		before := 0
		leaderCut := false
		for _, n := range t.c.names() {
			if t.c.regionOf(n) == region && t.c.live(n) {
				victims = append(victims, n)
				before = max(before, t.c.committed(n))
				leaderCut = leaderCut || n == t.c.leader()
			}
		}
		t.c.cut(region)
		h := pendingHeal{region: region, report: rep, before: before, victims: victims, othersAt: t.othersCommitted(victims)}
		if leaderCut {
			t.watchFailover(rep, victims...)
		}
		if e.Rounds > 0 {
			h.atRound = e.Round + e.Rounds
			t.mu.Lock()
			t.heals = append(t.heals, h)
			t.mu.Unlock()
			return fmt.Sprintf("%s cut off (coordinators %s) until round %d commits", region, strings.Join(victims, ", "), h.atRound)
		}
		t.wg.Go(func() {
			select {
			case <-time.After(time.Duration(e.Duration)):
			case <-t.stop:
			}
			t.mu.Lock()
			defer t.mu.Unlock()
			t.healNow(h)
		})
		return fmt.Sprintf("%s cut off (coordinators %s) for %s", region, strings.Join(victims, ", "), time.Duration(e.Duration))
	case EventDropout:
		return fmt.Sprintf("%.0f%% of the cohort%s vanish after training", 100*e.Fraction, inRegion(e.Region))
	case EventHostile:
		var names []string
		t.mu.Lock()
		for n, from := range t.hostileFrom {
			if from == e.Round {
				names = append(names, n)
			}
		}
		t.mu.Unlock()
		slices.Sort(names)
		return fmt.Sprintf("hostile from now on: %s", strings.Join(names, ", "))
	case EventStraggler:
		return fmt.Sprintf("every local epoch in %s takes at least %s from now on", e.Region, time.Duration(e.Delay))
	}
	return "unknown event"
}

func inRegion(r string) string {
	if r == "" {
		return ""
	}
	return " in " + r
}

// othersCommitted is the most rounds a coordinator outside victims holds.
func (t *timeline) othersCommitted(victims []string) int {
	n := 0
	for _, c := range t.c.names() {
		if !slices.Contains(victims, c) && t.c.live(c) {
			n = max(n, t.c.committed(c))
		}
	}
	return n
}

// healNow ends a partition and records what it saw (t.mu held).
func (t *timeline) healNow(h pendingHeal) {
	cutOff := 0
	for _, v := range h.victims {
		cutOff = max(cutOff, t.c.committed(v)-h.before)
	}
	during := t.othersCommitted(h.victims) - h.othersAt
	t.c.heal(h.region)
	h.report.CommittedDuring, h.report.CutOffCommitted = &during, &cutOff
	h.report.Outcome += fmt.Sprintf("; healed after %.1fs: the others committed %d rounds, the cut-off side %d",
		time.Since(t.start).Seconds()-h.report.SecondsSinceStart, during, cutOff)
	t.log("partition of %s healed: the others committed %d rounds meanwhile, the cut-off side %d", h.region, during, cutOff)
}

// watchFailover records how long until a coordinator not in gone leads.
func (t *timeline) watchFailover(rep *EventReport, gone ...string) {
	began := time.Now()
	t.wg.Go(func() {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-t.stop:
				return
			default:
			}
			if l := t.c.leader(); l != "" && !slices.Contains(gone, l) {
				s := time.Since(began).Seconds()
				t.mu.Lock()
				rep.FailoverSeconds = &s
				rep.Outcome += fmt.Sprintf("; %s leads after %.2fs", l, s)
				t.mu.Unlock()
				t.log("new leader %s after %.2fs", l, s)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		none := -1.0
		t.mu.Lock()
		rep.FailoverSeconds = &none
		rep.Outcome += "; no other coordinator led within 2 minutes"
		t.mu.Unlock()
	})
}

// commit tells the timeline that round committed: it fires the round's
// commit events and ends partitions that were to last until then.
func (t *timeline) commit(round uint32) {
	t.fireRound(round, PhaseCommit)
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := t.heals[:0]
	for _, h := range t.heals {
		if round >= h.atRound {
			t.healNow(h)
		} else {
			kept = append(kept, h)
		}
	}
	t.heals = kept
}

// finish heals what is still cut, waits for the timeline's goroutines and
// returns the events' reports.
func (t *timeline) finish() []EventReport {
	t.acting.Lock() // an action under way finishes first
	defer t.acting.Unlock()
	close(t.stop)
	t.mu.Lock()
	for _, h := range t.heals {
		t.healNow(h)
	}
	t.heals = nil
	t.mu.Unlock()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]EventReport, len(t.reports))
	for i, r := range t.reports {
		out[i] = *r
	}
	for i, e := range t.sc.Events {
		if !t.fired[i] {
			out = append(out, EventReport{Round: e.Round, Phase: cmp.Or(e.Phase, PhaseOpen), Kind: e.Kind, Target: cmp.Or(e.Target, e.Region),
				Outcome: "did not fire: the job ended before its round and phase"})
		}
	}
	return out
}
