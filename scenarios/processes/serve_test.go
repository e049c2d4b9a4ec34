package processes

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/scenarios"
)

// TestProcessesServe runs a scenario with a serve section on real
// processes: an accord serve process follows the job on the three
// coordinator processes while the runner calls it over REST and gRPC, on
// plain loopback and, as root, from inside the first coordinator's
// network namespace. No request may fail, every answer must name a
// committed round and its digest, and the last committed round must
// answer in the end.
func TestProcessesServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	needMNIST(t)
	bin := coordtest.BuildAccord(t)
	y := "name: serve\n" + threeCountries + `
job:
  model: logreg:784-10
  dataset: mnist
  rounds: 6
  target_accuracy: 0
  participants_fraction: 1
  min_participants: 9
  round_deadline: 30s
serve: {poll: 100ms, clients: 2, rate: 100}
timeout: 3m
`
	modes := []scenarios.ProcessNetwork{scenarios.ProcessNetworkAuto}
	if os.Geteuid() == 0 {
		modes = append(modes, scenarios.ProcessNetworkNamespaces)
	}
	for _, mode := range modes {
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
		rep, err := scenarios.RunProcesses(ctx, parseScenario(t, y), scenarios.ProcessOptions{
			Binary: bin, WorkDir: t.TempDir(), Network: mode, Progress: newTestLog(t)})
		cancel()
		if err != nil {
			t.Fatalf("network %q: %v", mode, err)
		}
		s := rep.Serve
		if rep.RoundsCommitted != 6 || !rep.InvariantsOK || s == nil {
			t.Fatalf("network %s: %d rounds committed, invariants ok %v (%s), serve report %v; want 6, ok, a report",
				rep.Network, rep.RoundsCommitted, rep.InvariantsOK, rep.InvariantsError, s)
		}
		t.Logf("network %s: serve %s: %d requests (%v), %d failed, rounds %d–%d, accuracy %.2f%%",
			rep.Network, s.Where, s.Sent, s.AnsweredBy, s.Failed, s.Rounds[0].Round, s.LastRound, 100*s.Accuracy)
		if s.Sent == 0 || s.Failed != 0 || s.NotCommitted != 0 || s.AnsweredBy["rest"] == 0 || s.AnsweredBy["grpc"] == 0 {
			t.Errorf("network %s: %d sent, %d failed (%v), %d answers not committed, answered by %v; want some, none failed, all committed, both protocols",
				rep.Network, s.Sent, s.Failed, s.Errors, s.NotCommitted, s.AnsweredBy)
		}
		if s.LastRound != rep.RoundsCommitted {
			t.Errorf("network %s: the last round answering was %d; want %d", rep.Network, s.LastRound, rep.RoundsCommitted)
		}
	}
}
