package processes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/scenarios"
)

// testLog is a progress writer that logs each line to the test (until the
// test ends).
type testLog struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
	buf  bytes.Buffer
}

func newTestLog(t *testing.T) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for !l.done {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // a partial line waits for its end
			break
		}
		l.t.Log(strings.TrimSuffix(line, "\n"))
	}
	return len(p), nil
}

// threeCountries is a federation of three coordinators and nine
// participants in three regions, with a network model of small latencies.
const threeCountries = `
regions: [{name: de}, {name: us}, {name: jp}]
coordinators:
  - {name: coord-de, organization: charite, region: de}
  - {name: coord-us, organization: mayo, region: us}
  - {name: coord-jp, organization: utokyo, region: jp}
participants:
  groups:
    - {region: de, prefix: klinikum, count: 3}
    - {region: us, prefix: hospital, count: 3}
    - {region: jp, prefix: byoin, count: 3}
  data: {dataset: mnist, partition: iid, examples_per_participant: 300, seed: 5}
`

func parseScenario(t *testing.T, y string) *scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// checkAllContributed fails unless every round of a five-round job
// committed at its first attempt with all nine participants.
func checkAllContributed(t *testing.T, runner string, rep *scenarios.Report) {
	t.Helper()
	if rep.JobStatus != "JOB_STATUS_SUCCEEDED" || rep.RoundsCommitted != 5 || len(rep.Rounds) != 5 || !rep.InvariantsOK {
		t.Fatalf("%s: job %s after %d rounds (%d reported), invariants ok %v %s; want SUCCEEDED after 5, invariants ok",
			runner, rep.JobStatus, rep.RoundsCommitted, len(rep.Rounds), rep.InvariantsOK, rep.InvariantsError)
	}
	for _, r := range rep.Rounds {
		if r.Contributors != 9 || r.Cohort != 9 {
			t.Errorf("%s: round %d: %d of a cohort of %d contributed; want all 9", runner, r.Round, r.Contributors, r.Cohort)
		}
	}
}

// TestProcessesRunnerMatchesInProcess runs one scenario with both runners:
// in process, and as real accord coordinator and participant processes
// (network namespaces where they work, else proxies; then, if the first
// run did not already fall back, proxies again). Both commit every round
// with every participant, and their final accuracies agree within half a
// point: the processes hold exactly the examples the in-process
// participants hold, in the same order.
func TestProcessesRunnerMatchesInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	needMNIST(t)
	bin := coordtest.BuildAccord(t)
	y := "name: two-runners\n" + threeCountries + `
network:
  links:
    - {between: [de, us], latency: 5ms, jitter: 1ms, bandwidth: 200Mbit}
    - {between: [de, jp], latency: 10ms, bandwidth: 100Mbit}
    - {between: [us, jp], latency: 8ms, bandwidth: 100Mbit}
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 5
  target_accuracy: 0
  participants_fraction: 1
  min_participants: 9
  round_deadline: 60s
  aggregation: {exact: true}
timeout: 3m
`
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	inProcess, err := scenarios.Run(ctx, parseScenario(t, y), scenarios.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkAllContributed(t, "in process", inProcess)
	t.Logf("in process: final accuracy %.2f%% (%.1fs)", 100*inProcess.FinalAccuracy, time.Since(start).Seconds())

	modes := []scenarios.ProcessNetwork{scenarios.ProcessNetworkAuto}
	for i := 0; i < len(modes); i++ {
		start := time.Now()
		rep, err := scenarios.RunProcesses(ctx, parseScenario(t, y), scenarios.ProcessOptions{
			Binary: bin, WorkDir: t.TempDir(), Network: modes[i], Progress: newTestLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		runner := fmt.Sprintf("processes (network %s)", rep.Network)
		checkAllContributed(t, runner, rep)
		diff := 100 * math.Abs(rep.FinalAccuracy-inProcess.FinalAccuracy)
		t.Logf("%s: final accuracy %.2f%%, in process %.2f%%: %.2f points apart (%.1fs)",
			runner, 100*rep.FinalAccuracy, 100*inProcess.FinalAccuracy, diff, time.Since(start).Seconds())
		if diff > 0.5 {
			t.Errorf("%s: final accuracy %.2f%%; want within 0.5 points of the in-process %.2f%%", runner, 100*rep.FinalAccuracy, 100*inProcess.FinalAccuracy)
		}
		// Exact aggregation, the same data and seeds: the same bits.
		if !maps.Equal(rep.ModelDigests["coord-de"], inProcess.ModelDigests["coord-de"]) {
			t.Errorf("%s: the models differ from the in-process run's:\n%v\n%v", runner, rep.ModelDigests["coord-de"], inProcess.ModelDigests["coord-de"])
		}
		switch scenarios.ProcessNetwork(rep.Network) {
		case scenarios.ProcessNetworkNamespaces:
			modes = append(modes, scenarios.ProcessNetworkProxies) // the fallback, too
		case scenarios.ProcessNetworkProxies:
			if len(rep.LinkBytes) == 0 {
				t.Errorf("%s: no bytes counted on the proxied links", runner)
			}
			if modes[i] == scenarios.ProcessNetworkAuto {
				t.Logf("fell back to proxies: %s", rep.NetworkNote)
			}
		default:
			t.Fatalf("network %q; want namespaces or proxies for a scenario with a network model", rep.Network)
		}
	}
}

// TestProcessesRunnerTimelineInNamespaces runs a timeline on processes in
// network namespaces (root only): a coordinator is SIGKILLed and
// restarted, and the Raft leader's region is cut off for two rounds. The
// job completes, every coordinator holds the same history, the others
// commit during the cut and the cut-off side does not, and every region
// link carried traffic. No namespace is left behind.
func TestProcessesRunnerTimelineInNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	needMNIST(t)
	bin := coordtest.BuildAccord(t)
	// Links limit the rate only, so tc's tbf shapes them where netem is
	// missing. Every local epoch takes a second (stragglers everywhere), so
	// that the runner, which sees a round open only when it polls, fires
	// the round's open events inside it.
	y := "name: timeline\n" + threeCountries + `
network:
  links:
    - {between: [de, us], bandwidth: 200Mbit}
    - {between: [de, jp], bandwidth: 100Mbit}
    - {between: [us, jp], bandwidth: 100Mbit}
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 8
  target_accuracy: 0
  participants_fraction: 1
  min_participants: 2
  round_deadline: 10s
  max_attempts: 20
  aggregation: {exact: true}
events:
  - {round: 1, kind: straggler, region: de, delay: 1s}
  - {round: 1, kind: straggler, region: us, delay: 1s}
  - {round: 1, kind: straggler, region: jp, delay: 1s}
  - {round: 2, phase: commit, kind: kill_coordinator, target: coord-us}
  - {round: 3, phase: commit, kind: restart_coordinator, target: coord-us}
  - {round: 5, phase: open, kind: partition, region: leader, rounds: 2}
timeout: 3m
`
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	rep, err := scenarios.RunProcesses(ctx, parseScenario(t, y), scenarios.ProcessOptions{
		Binary: bin, WorkDir: t.TempDir(), Network: scenarios.ProcessNetworkNamespaces, Progress: newTestLog(t)})
	if errors.Is(err, scenarios.ErrNoNamespaces) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.JobStatus != "JOB_STATUS_SUCCEEDED" || rep.RoundsCommitted != 8 || !rep.InvariantsOK {
		t.Fatalf("job %s after %d rounds; invariants ok %v %s", rep.JobStatus, rep.RoundsCommitted, rep.InvariantsOK, rep.InvariantsError)
	}
	outcomes := map[string]scenarios.EventReport{}
	for _, e := range rep.Events {
		outcomes[e.Kind] = e
	}
	if o := outcomes[scenarios.EventKillCoordinator].Outcome; !strings.Contains(o, "coord-us killed") {
		t.Errorf("kill: %q; want coord-us killed", o)
	}
	if o := outcomes[scenarios.EventRestartCoordinator].Outcome; !strings.Contains(o, "restarted") {
		t.Errorf("restart: %q; want coord-us restarted", o)
	}
	switch cut := outcomes[scenarios.EventPartition]; {
	case cut.CommittedDuring == nil || cut.CutOffCommitted == nil:
		t.Errorf("the partition did not report what happened: %+v", cut)
	case *cut.CommittedDuring < 1:
		t.Errorf("the other regions committed no round during the cut: %s", cut.Outcome)
	case *cut.CutOffCommitted != 0:
		t.Errorf("the cut-off region committed %d rounds: %s", *cut.CutOffCommitted, cut.Outcome)
	default:
		t.Logf("partition: %s", cut.Outcome)
	}
	if len(rep.ModelDigests) != 3 {
		t.Errorf("digests of %d coordinators; want 3", len(rep.ModelDigests))
	}
	for _, pair := range []string{"de→us", "us→de", "de→jp", "jp→de", "us→jp", "jp→us"} {
		if rep.LinkBytes[pair] == 0 {
			t.Errorf("link %s carried nothing: %v", pair, rep.LinkBytes)
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if mine := fmt.Sprintf("accord-%d-", os.Getpid()); strings.Contains(string(out), mine) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
}
