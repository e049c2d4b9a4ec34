package main

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestPrintJob: job show says whether a job has a target and where it was
// reached, names the strategy and aggregation, and prints ε for a job with
// differential privacy.
func TestPrintJob(t *testing.T) {
	cases := []struct {
		name string
		job  *pb.Job
		want []string
		not  []string
	}{
		{"no target", &pb.Job{Id: "j1", Spec: &pb.JobSpec{}},
			[]string{"no target accuracy", "strategy fedavg, aggregation fedavg"}, []string{"reached at round 0", "privacy"}},
		{"target reached", &pb.Job{Id: "j2", Spec: &pb.JobSpec{TargetAccuracy: 0.97}, TargetReachedAtRound: 53},
			[]string{"target accuracy 0.97, reached at round 53"}, nil},
		{"target not reached", &pb.Job{Id: "j3", Spec: &pb.JobSpec{TargetAccuracy: 0.97}},
			[]string{"target accuracy 0.97, not reached yet"}, nil},
		{"robust and private", &pb.Job{Id: "j4", Spec: &pb.JobSpec{Strategy: "fedadam",
			Aggregation: &pb.Aggregation{Rule: "median", Groups: 3, GroupBy: "region"},
			Dp:          &pb.DifferentialPrivacy{Mode: "distributed", NoiseMultiplier: 1, Clip: 1, MaxEpsilon: 8}},
			Privacy: &pb.Privacy{Epsilon: 4.85, Delta: 1e-5, Order: 5.4, Steps: 30}},
			[]string{"strategy fedadam, aggregation median over 3 secure-aggregation groups (by region)",
				"privacy (distributed DP, z = 1, clip 1): ε = 4.85 at δ = 1e-05 after 30 rounds (Rényi order 5.4), budget 8"}, nil},
	}
	for _, c := range cases {
		var out bytes.Buffer
		printJob(&out, c.job)
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: %q missing from\n%s", c.name, w, out.String())
			}
		}
		for _, w := range c.not {
			if strings.Contains(out.String(), w) {
				t.Errorf("%s: %q in\n%s", c.name, w, out.String())
			}
		}
	}
}
