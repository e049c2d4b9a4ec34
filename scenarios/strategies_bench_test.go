package scenarios

import (
	"os"
	"testing"

	"github.com/accord-fl/accord/coordinator/state"
)

// BenchmarkPathologicalRoundsTo97 runs scenarios/pathological.yaml (the
// FedAvg paper's pathological non-IID MNIST: 100 clients with two
// single-label shards each, C = 0.1, E = 1, B = 10, the 2NN) to 97% test
// accuracy with FedAvg and with server momentum (FedAvgM, η = 0.3 ≈
// 10^−0.5 as Reddi et al. tuned it, μ = 0.9), each a whole federation on
// loopback, and reports the rounds each needed; the paper's FedAvg needed
// 664. One iteration takes minutes: run with -benchtime 1x (make bench).
func BenchmarkPathologicalRoundsTo97(b *testing.B) {
	base, err := Load("pathological.yaml")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*state.JobSpec)
	}{
		{"fedavg", func(s *state.JobSpec) {}},
		{"fedavgm", func(s *state.JobSpec) {
			s.Strategy = "fedavgm"
			s.Server = state.ServerOptimizer{LR: 0.3, Momentum: 0.9}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				sc := *base
				c.edit(&sc.Job)
				if err := sc.Validate(); err != nil {
					b.Fatal(err)
				}
				opts := Options{}
				if testing.Verbose() {
					opts.Progress = os.Stderr // a round a line: these runs take minutes
				}
				rep, err := Run(b.Context(), &sc, opts)
				if err != nil {
					b.Fatal(err)
				}
				if rep.TargetReachedAtRound == nil {
					b.Fatalf("%s: 97%% not reached in %d rounds (best %.2f%%): %s", c.name, rep.RoundsCommitted, 100*rep.BestAccuracy, rep.JobReason)
				}
				b.ReportMetric(float64(*rep.TargetReachedAtRound), "rounds-to-97%")
				b.ReportMetric(rep.WallSeconds, "wall-s")
			}
		})
	}
}
