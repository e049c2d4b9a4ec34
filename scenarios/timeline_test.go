package scenarios

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// threeRegions is the head of a scenario with three coordinators in three
// regions and a modelled network between them.
const threeRegions = `
regions:
  - {name: de, timezone: Europe/Berlin}
  - {name: us, timezone: America/New_York}
  - {name: jp, timezone: Asia/Tokyo}
coordinators:
  - {name: coord-de, organization: charite, region: de}
  - {name: coord-us, organization: mayo, region: us}
  - {name: coord-jp, organization: utokyo, region: jp}
network:
  inside: {latency: 1ms}
  links:
    - {between: [de, us], latency: 10ms, jitter: 2ms, bandwidth: 200Mbit}
    - {between: [de, jp], latency: 20ms, jitter: 3ms, bandwidth: 100Mbit}
    - {between: [us, jp], latency: 15ms, jitter: 2ms, bandwidth: 100Mbit}
participants:
  groups:
    - {region: de, prefix: klinikum, count: 3}
    - {region: us, prefix: hospital, count: 3}
    - {region: jp, prefix: byoin, count: 3}
  data: {dataset: mnist, partition: iid, examples_per_participant: 200, seed: 5}
`

func TestParseNamesTheFieldAndLine(t *testing.T) {
	cases := []struct {
		name, tail, want string
	}{
		{"bad time zone", "regions:\n  - {name: de, timezone: Mars/Olympus}\n", "line 3: regions[0].timezone"},
		{"link to nowhere", "network:\n  links:\n    - {between: [de, xx], latency: 1ms}\n", "line 4: network.links[0].between"},
		{"bad bandwidth", "network:\n  default: {latency: 1ms, bandwidth: fast}\n", "line 3: network.default: bandwidth \"fast\""},
		{"partition without end", "events:\n  - {round: 2, kind: partition, region: de}\n", "line 3: events[0]: a partition lasts"},
		{"restart of a live coordinator", "events:\n  - {round: 2, kind: restart_coordinator, target: c}\n", "line 3: events[0].target"},
		{"unknown event", "events:\n  - {round: 2, kind: meteor}\n", "line 3: events[0].kind: \"meteor\""},
		{"bad phase", "events:\n  - {round: 2, kind: dropout, fraction: 0.3, phase: lunch}\n", "line 3: events[0].phase"},
		{"bad profile", "raft_profile: moon\n", "line 2: raft_profile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "name: x\n" + c.tail + `coordinators: [{name: c, region: de}]
participants: {groups: [{region: de, prefix: a, count: 1}], data: {dataset: mnist, partition: iid}}
`
			_, err := Parse([]byte(y))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want it to contain %q", err, c.want)
			}
		})
	}
}

// TestSameSeedSameModels runs one scenario twice: with exact aggregation,
// jittery links (updates arrive in a different order each time) commit the
// same models.
func TestSameSeedSameModels(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains on MNIST")
	}
	needMNIST(t)
	y := "name: determinism\n" + threeRegions + `
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 4
  target_accuracy: 0
  participants_fraction: 1
  min_participants: 9
  round_deadline: 30s
  aggregation: {exact: true}
timeout: 5m
`
	sc, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var digests []map[uint32]string
	for run := range 2 {
		rep, err := Run(t.Context(), sc, Options{})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if !rep.InvariantsOK || rep.RoundsCommitted != 4 || rep.RoundsAborted != 0 {
			t.Fatalf("run %d: %d rounds committed, %d aborted, invariants %v %s", run, rep.RoundsCommitted, rep.RoundsAborted, rep.InvariantsOK, rep.InvariantsError)
		}
		for _, r := range rep.Rounds {
			if r.Contributors != 9 {
				t.Fatalf("run %d round %d: %d contributors; want all 9", run, r.Round, r.Contributors)
			}
		}
		digests = append(digests, rep.ModelDigests["coord-de"])
	}
	if !maps.Equal(digests[0], digests[1]) {
		t.Fatalf("the same seed committed different models:\n%v\n%v", digests[0], digests[1])
	}
}

// TestPartitionedLeaderRegion cuts the region holding the Raft leader off
// for 30 seconds: the others elect a leader and keep committing, the
// cut-off coordinator commits nothing, and after the cut heals every
// coordinator holds the same history.
func TestPartitionedLeaderRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30-second partition")
	}
	needMNIST(t)
	y := "name: partition\n" + threeRegions + `
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 45
  target_accuracy: 0
  evaluate_fraction: 0
  participants_fraction: 1
  min_participants: 3
  round_deadline: 10s
events:
  # Every local epoch takes a second, so that 45 rounds outlast the cut.
  - {round: 1, kind: straggler, region: de, delay: 1s}
  - {round: 1, kind: straggler, region: us, delay: 1s}
  - {round: 1, kind: straggler, region: jp, delay: 1s}
  - {round: 3, phase: open, kind: partition, region: leader, duration: 30s}
timeout: 5m
`
	sc, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	rep, err := Run(t.Context(), sc, Options{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(progress.String())
	if !rep.InvariantsOK || rep.RoundsCommitted != 45 {
		t.Fatalf("%d rounds committed; invariants ok %v %s", rep.RoundsCommitted, rep.InvariantsOK, rep.InvariantsError)
	}
	var cut *EventReport
	for i, e := range rep.Events {
		if e.Kind == EventPartition {
			cut = &rep.Events[i]
		}
	}
	switch {
	case cut == nil || cut.CommittedDuring == nil || cut.CutOffCommitted == nil || cut.FailoverSeconds == nil:
		t.Fatalf("the partition did not report what happened: %+v", rep.Events)
	case *cut.FailoverSeconds < 0:
		t.Errorf("no other coordinator led while %s was cut off: %s", cut.Target, cut.Outcome)
	case *cut.CommittedDuring < 1:
		t.Errorf("the other regions committed no round during the cut: %s", cut.Outcome)
	case *cut.CutOffCommitted != 0:
		t.Errorf("the cut-off region committed %d rounds: %s", *cut.CutOffCommitted, cut.Outcome)
	}
	if len(rep.ModelDigests) != 3 {
		t.Fatalf("digests of %d coordinators; want 3", len(rep.ModelDigests))
	}
	var first map[uint32]string
	for name, d := range rep.ModelDigests {
		if len(d) != 45 {
			t.Errorf("%s holds %d committed rounds; want 45", name, len(d))
		}
		if first == nil {
			first = d
		} else if !maps.Equal(first, d) {
			t.Errorf("%s's history differs: %s", name, fmt.Sprint(d))
		}
	}
}

// TestWorkingHoursFollowTheClock: two regions working opposite halves of
// the day take turns as the simulated clock moves six hours a round.
func TestWorkingHoursFollowTheClock(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains on MNIST")
	}
	needMNIST(t)
	y := `
name: hours
regions:
  - {name: early, timezone: UTC, working_hours: [0, 12]}
  - {name: late, timezone: Asia/Tokyo, working_hours: [21, 9]}   # 12:00–24:00 UTC
coordinators: [{name: c, organization: o, region: early}]
participants:
  groups:
    - {region: early, prefix: e, count: 3}
    - {region: late, prefix: l, count: 3}
  data: {dataset: mnist, partition: iid, examples_per_participant: 100, seed: 1}
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 5
  target_accuracy: 0
  participants_fraction: 1
  min_participants: 2
  evaluate_fraction: 0
  simulated_clock: {start: "2026-11-30T00:00:00Z", per_round: 6h}
timeout: 3m
`
	sc, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		at     string
		region string
	}{{"2026-11-30T00:00:00Z", "early"}, {"2026-11-30T06:00:00Z", "early"}, {"2026-11-30T12:00:00Z", "late"}, {"2026-11-30T18:00:00Z", "late"}, {"2026-12-01T00:00:00Z", "early"}}
	if len(rep.Rounds) != len(want) {
		t.Fatalf("%d rounds; want %d", len(rep.Rounds), len(want))
	}
	for i, r := range rep.Rounds {
		if r.SimulatedTime != want[i].at || r.ContributorsByRegion[want[i].region] != 3 || len(r.ContributorsByRegion) != 1 {
			t.Errorf("round %d at %s: contributors %v; want the 3 of %s at %s", r.Round, r.SimulatedTime, r.ContributorsByRegion, want[i].region, want[i].at)
		}
	}
}

// TestRestartedCoordinatorCatchesUp kills the first coordinator started
// (it joined nobody's gossip) in the middle of a round and restarts it
// later: it catches up on Raft and fetches every model it missed, so the
// invariants (which check that each committed model is stored) hold.
func TestRestartedCoordinatorCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains on MNIST")
	}
	needMNIST(t)
	y := "name: restart\n" + threeRegions + `
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 7
  target_accuracy: 0
  evaluate_fraction: 0
  participants_fraction: 1
  min_participants: 3
  round_deadline: 10s
  retain: {all: true}
events:
  - {round: 2, phase: upload, kind: kill_coordinator, target: coord-de}
  - {round: 5, phase: open, kind: restart_coordinator, target: killed}
timeout: 3m
`
	sc, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.InvariantsOK || rep.RoundsCommitted != 7 || len(rep.ModelDigests) != 3 {
		t.Fatalf("%d rounds, digests of %d coordinators, invariants ok %v: %s", rep.RoundsCommitted, len(rep.ModelDigests), rep.InvariantsOK, rep.InvariantsError)
	}
	if !maps.Equal(rep.ModelDigests["coord-de"], rep.ModelDigests["coord-us"]) {
		t.Errorf("the restarted coordinator's history differs: %v", rep.ModelDigests)
	}
}
