package scenarios

import (
	"bytes"
	"os"
	"testing"

	"github.com/accord-fl/accord/coordinator/state"
)

// TestByzantineParticipants runs scenarios/byzantine.yaml (30 participants,
// 10 a round, 20% sending sign-flipped ×10 updates every round) with each
// aggregation rule for the same number of rounds: FedAvg collapses below
// 50%; the coordinate-wise median, the 0.3-trimmed mean, Multi-Krum (f = 3)
// and the median over three secure-aggregation groups formed by region (the
// attackers all sit in one) reach 95%. It trains five federations on MNIST
// (~10 minutes on 2 cores), so it runs with ACCORD_LONG=1 (make scenarios).
func TestByzantineParticipants(t *testing.T) {
	if os.Getenv("ACCORD_LONG") == "" {
		t.Skip("long (five MNIST federations): make scenarios runs it with ACCORD_LONG=1")
	}
	needMNIST(t)
	base, err := Load("byzantine.yaml")
	if err != nil {
		t.Fatal(err)
	}
	grouped := func(s *state.JobSpec) {
		s.SecureAggregation = state.SecureAggregation{Mode: state.ModeSecAgg, Clip: 1}
		s.Aggregation = state.Aggregation{Rule: "median", Groups: 3, GroupBy: state.GroupByRegion}
	}
	cases := []struct {
		name     string
		edit     func(*state.JobSpec)
		collapse bool // accuracy must stay below 50%; otherwise reach 95%
	}{
		{"fedavg", func(s *state.JobSpec) { s.Aggregation = state.Aggregation{Rule: "fedavg"} }, true},
		{"median", func(s *state.JobSpec) { s.Aggregation.Rule = "median" }, false},
		{"trimmed_mean", func(s *state.JobSpec) { s.Aggregation = state.Aggregation{Rule: "trimmed_mean", Beta: 0.3} }, false},
		{"multi_krum", func(s *state.JobSpec) { s.Aggregation = state.Aggregation{Rule: "multi_krum", F: 3} }, false},
		{"grouped secure median", grouped, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := *base
			c.edit(&sc.Job)
			if err := sc.Validate(); err != nil {
				t.Fatal(err)
			}
			var progress bytes.Buffer
			rep, err := Run(t.Context(), &sc, Options{Progress: &progress})
			if err != nil {
				t.Fatalf("%v\n%s", err, progress.String())
			}
			reached := 0
			for _, r := range rep.Rounds {
				if reached == 0 && r.Accuracy >= 0.95 {
					reached = int(r.Round)
				}
			}
			t.Logf("%s: %d rounds committed (%s); best %.2f%%, final %.2f%%, 95%% first at round %d",
				c.name, rep.RoundsCommitted, rep.JobReason, 100*rep.BestAccuracy, 100*rep.FinalAccuracy, reached)
			switch {
			case c.collapse && rep.FinalAccuracy >= 0.5:
				t.Errorf("FedAvg under attack ended at %.2f%%; want it below 50%%\n%s", 100*rep.FinalAccuracy, progress.String())
			case !c.collapse && (reached == 0 || rep.RoundsCommitted != sc.Job.Rounds):
				t.Errorf("%s under attack: 95%% not reached in %d rounds (final %.2f%%)\n%s", c.name, rep.RoundsCommitted, 100*rep.FinalAccuracy, progress.String())
			}
		})
	}
}
