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
		{"participants could not train it", &pb.Job{Id: "j5", Spec: &pb.JobSpec{}, Status: pb.JobStatus_JOB_STATUS_FAILED,
			Reason: "round 1 aborted 10 times in a row", TaskFailures: []*pb.TaskFailure{
				{Participant: "hospital-1", Reason: "shape mismatch: dataset has 784 features and 10 classes; model logreg:12-2 wants 12 and 2", Round: 1, Attempt: 3, Task: "train"},
				{Participant: "hospital-2", Reason: "asked to evaluate, but this participant holds no validation data", Task: "evaluate"}}},
			[]string{"status JOB_STATUS_FAILED round 1 aborted 10 times in a row", "task failures participants reported",
				"hospital-1, round 1 attempt 3, at -: shape mismatch: dataset has 784 features", "hospital-2, evaluating round 0's model"}, nil},
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

// TestEveryCommandAnswersHelp: every command and sub-command answers -h
// with its usage and exit code 0, without doing anything.
func TestEveryCommandAnswersHelp(t *testing.T) {
	var commands [][]string
	for _, c := range NewMain(nil, nil).subcommands() {
		commands = append(commands, []string{c.name})
	}
	commands = append(commands, [][]string{
		{"job", "submit"}, {"job", "list"}, {"job", "show"}, {"job", "cancel"}, {"pki", "init"}, {"pki", "issue"},
		{"members", "list"}, {"audit", "verify"}, {"round", "list"}, {"model", "pull"}, {"scenario", "run"},
		{"dp", "epsilon"}, {"proposals", "list"}, {"policy", "set"}, {"participants", "list"},
	}...)
	for _, cmd := range commands {
		for _, h := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			err := NewMain(&out, &errb).Run(t.Context(), append(cmd, h))
			if code := exitCode(err); err != nil && code != 0 {
				t.Errorf("accord %s %s: exit %d (%v)", strings.Join(cmd, " "), h, code, err)
			}
			if !strings.Contains(out.String()+errb.String(), "usage") {
				t.Errorf("accord %s %s printed no usage:\n%s%s", strings.Join(cmd, " "), h, out.String(), errb.String())
			}
		}
	}
}
