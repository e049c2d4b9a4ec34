package scenarios

import (
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant/data"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// faultsFromFlags reads participant fault flags as accord participant
// does: the sign flip and epoch delay of a round, and whether an attempt's
// update is dropped.
type faultsFromFlags struct {
	flip                float64
	flipFrom, delayFrom uint32
	delay               time.Duration
	drop, dropFirst     []uint32
}

func readFaultFlags(t *testing.T, args []string) faultsFromFlags {
	t.Helper()
	var f faultsFromFlags
	rounds := func(s string) []uint32 {
		var out []uint32
		for _, r := range strings.Split(s, ",") {
			n, err := strconv.Atoi(r)
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			out = append(out, uint32(n))
		}
		return out
	}
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		var err error
		switch args[i] {
		case "--fault-flip-scale":
			f.flip, err = strconv.ParseFloat(v, 64)
		case "--fault-flip-from-round":
			f.flipFrom = rounds(v)[0]
		case "--fault-epoch-delay":
			f.delay, err = time.ParseDuration(v)
		case "--fault-epoch-delay-from-round":
			f.delayFrom = rounds(v)[0]
		case "--fault-drop-after-training":
			f.drop = rounds(v)
		case "--fault-drop-first-attempt":
			f.dropFirst = rounds(v)
		default:
			t.Fatalf("unexpected flag %s", args[i])
		}
		if err != nil {
			t.Fatalf("%s %s: %v", args[i], v, err)
		}
	}
	return f
}

// TestProcessFaultFlags: the fault flags of each participant process make
// it do, round by round and attempt by attempt, what the in-process
// runner's hooks make it do: the same dropouts, sign flips and epoch
// delays.
func TestProcessFaultFlags(t *testing.T) {
	y := "name: faults\n" + threeRegions + `
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 8
  participants_fraction: 1
events:
  - {round: 2, kind: dropout, fraction: 0.5}
  - {round: 3, kind: dropout, region: us, fraction: 0.7}
  - {round: 3, kind: hostile, fraction: 0.3, scale: 5}
  - {round: 2, kind: straggler, region: jp, delay: 2s}
faults:
  - {kind: drop_after_training, round: 4, fraction: 0.4}
  - {kind: sign_flip, fraction: 0.2, scale: 3}
`
	sc, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkProcesses(sc); err != nil {
		t.Fatal(err)
	}
	tl := newTimeline(sc, nil, time.Now(), func(string, ...any) {})
	drops := newDropper(sc.Faults, sc.Job.Seed, int(sc.Job.ParticipantsPerRound))
	attackers := byzantine(sc)
	pf := newProcessFaults(sc)
	dropped, flipped := 0, 0
	for _, g := range sc.Participants.Groups {
		for _, name := range g.names() {
			f := readFaultFlags(t, pf.flags(name, g.Region))
			events := tl.faultAt(name, g.Region)
			for round := uint32(1); round <= 8; round++ {
				for attempt := uint32(1); attempt <= 2; attempt++ {
					// An evaluation task does not fire the timeline's events.
					task := &pb.Task{Round: round, Attempt: attempt, Kind: pb.TaskKind_TASK_KIND_EVALUATE}
					wantFlip, wantDelay := events(task)
					if a := attackers[name]; a != 0 {
						wantFlip = a
					}
					wantDrop := tl.upload(name, g.Region, task) != nil || drops.check(name, task) != nil
					var flip float64
					var delay time.Duration
					if f.flip > 0 && round >= f.flipFrom {
						flip = f.flip
					}
					if f.delay > 0 && round >= f.delayFrom {
						delay = f.delay
					}
					drop := slices.Contains(f.drop, round) || attempt == 1 && slices.Contains(f.dropFirst, round)
					if flip != wantFlip || delay != wantDelay || drop != wantDrop {
						t.Errorf("%s round %d attempt %d: flags give flip %v, delay %s, drop %v; in process: %v, %s, %v",
							name, round, attempt, flip, delay, drop, wantFlip, wantDelay, wantDrop)
					}
					if drop {
						dropped++
					}
					if flip != 0 {
						flipped++
					}
				}
			}
		}
	}
	if dropped == 0 || flipped == 0 {
		t.Errorf("%d dropped and %d flipped updates: the scenario should have both", dropped, flipped)
	}
}

// TestProcessesRefusals: what the processes runner cannot reproduce is
// refused with the field named; kill_after_share_keys is kept when every
// participant is in every cohort, and kills as many as in process.
func TestProcessesRefusals(t *testing.T) {
	base := "name: kill\n" + threeRegions + `
job:
  model: logreg:784-10
  dataset: mnist
  participants_per_round: %d
  secure_aggregation: {mode: secagg+}
faults:
  - {kind: kill_after_share_keys, round: 3, fraction: 0.3}
`
	sc, err := Parse([]byte(strings.Replace(base, "%d", "6", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkProcesses(sc); err == nil || !strings.Contains(err.Error(), "faults[0]") {
		t.Errorf("kill_after_share_keys with a cohort of 6 of 9: %v; want an error naming faults[0]", err)
	}
	sc, err = Parse([]byte(strings.Replace(base, "%d", "9", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkProcesses(sc); err != nil {
		t.Fatalf("kill_after_share_keys with every participant in the cohort: %v", err)
	}
	pf := newProcessFaults(sc)
	if got, want := len(pf.killed), int(math.Round(0.3*9)); got != want {
		t.Errorf("%d participants killed after sharing keys; want %d, as in process", got, want)
	}
}

// TestDatasetCSVRoundTrip: a dataset written for accord participant reads
// back with the same examples, in the same order, bit for bit.
func TestDatasetCSVRoundTrip(t *testing.T) {
	ds := &model.Dataset{Features: 4, Classes: 10,
		X: []float32{0, 1, 0.003921569, 1.0 / 3, -2.5e-7, 3.4e38, 1e-45, 0.1, 0, 0, 0, 0.99607843},
		Y: []int32{9, 0, 3}}
	path := filepath.Join(t.TempDir(), "mnist.csv")
	if err := writeDatasetCSV(path, ds); err != nil {
		t.Fatal(err)
	}
	table, err := data.LoadCSV(path, csvLabelColumn)
	if err != nil {
		t.Fatal(err)
	}
	got := table.Data
	for i, y := range got.Y {
		// The loader numbers the classes present, in sorted order.
		got.Y[i] = int32(must(strconv.Atoi(table.Classes[y])))
	}
	if got.Features != ds.Features || !slices.Equal(got.Y, ds.Y) || !slices.EqualFunc(got.X, ds.X, func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b)
	}) {
		t.Fatalf("read back %d features, labels %v, features %v; want %d, %v, %v", got.Features, got.Y, got.X, ds.Features, ds.Y, ds.X)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
