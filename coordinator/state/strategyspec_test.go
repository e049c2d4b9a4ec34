package state

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestJobSpecStrategies: the strategy, server, aggregation, local time
// budget and dp sections are checked together, and every refusal names the
// field a user must change.
func TestJobSpecStrategies(t *testing.T) {
	secure := func(s *JobSpec) { s.SecureAggregation.Mode = ModeSecAggPlus }
	cases := []struct {
		name string
		edit func(*JobSpec)
		want string // "" accepts
	}{
		{"fedavg by default", func(s *JobSpec) { s.Strategy = "" }, ""},
		{"every server optimiser", func(s *JobSpec) {
			s.Strategy = "fedyogi"
			s.Server = ServerOptimizer{LR: 0.01, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}
		}, ""},
		{"fedavgm", func(s *JobSpec) { s.Strategy = "fedavgm"; s.Server.Momentum = 0.9 }, ""},
		{"unknown optimiser", func(s *JobSpec) { s.Strategy = "sgd" }, "server_optimizer"},
		{"negative server lr", func(s *JobSpec) { s.Strategy = "fedadam"; s.Server.LR = -1 }, "server_lr"},
		{"median", func(s *JobSpec) { s.Aggregation.Rule = "median" }, ""},
		{"trimmed mean β too large", func(s *JobSpec) { s.Aggregation = Aggregation{Rule: "trimmed_mean", Beta: 0.5} }, "beta"},
		{"krum within its bound", func(s *JobSpec) { s.Aggregation = Aggregation{Rule: "krum", F: 3} }, ""},
		{"krum past n > 2f+2", func(s *JobSpec) { s.Aggregation = Aggregation{Rule: "krum", F: 4} }, "aggregation.f"},
		{"unknown rule", func(s *JobSpec) { s.Aggregation.Rule = "mode" }, "rule"},
		{"robust rule with secure aggregation names the grouped mode", func(s *JobSpec) { secure(s); s.Aggregation.Rule = "median" }, "aggregation.groups"},
		{"norm bound with secure aggregation", func(s *JobSpec) { secure(s); s.Aggregation.NormBound = 3 }, "grouped mode"},
		{"grouped median", func(s *JobSpec) { secure(s); s.Aggregation = Aggregation{Rule: "median", Groups: 3, GroupBy: "region"} }, ""},
		{"groups without secure aggregation", func(s *JobSpec) { s.Aggregation = Aggregation{Rule: "median", Groups: 3} }, "aggregation.groups"},
		{"groups of fewer than 3", func(s *JobSpec) { secure(s); s.Aggregation = Aggregation{Rule: "median", Groups: 4} }, "at least 3"},
		{"krum over groups", func(s *JobSpec) { secure(s); s.Aggregation = Aggregation{Rule: "krum", Groups: 3} }, "aggregation.rule"},
		{"groups with participants_fraction", func(s *JobSpec) {
			secure(s)
			s.ParticipantsPerRound, s.ParticipantsFraction = 0, 0.5
			s.Aggregation = Aggregation{Rule: "median", Groups: 3}
		}, "participants_per_round"},
		{"median over 2 groups", func(s *JobSpec) { secure(s); s.Aggregation = Aggregation{Rule: "median", Groups: 2} }, "at least 3"},
		{"trimmed mean over groups that trims nothing", func(s *JobSpec) { secure(s); s.Aggregation = Aggregation{Rule: "trimmed_mean", Beta: 0.2, Groups: 3} }, "aggregation.beta"},
		{"threshold above a group's size", func(s *JobSpec) {
			secure(s)
			s.SecureAggregation.Threshold = 5
			s.Aggregation = Aggregation{Rule: "median", Groups: 3}
		}, "groups of 3"},
		{"multi_krum averaging more than n − f", func(s *JobSpec) { s.Aggregation = Aggregation{Rule: "multi_krum", F: 2, M: 9} }, "aggregation.m"},
		{"distributed dp with participants_fraction", func(s *JobSpec) {
			secure(s)
			s.ParticipantsPerRound, s.ParticipantsFraction = 0, 0.5
			s.DP = &DifferentialPrivacy{Mode: DPDistributed, NoiseMultiplier: 1, Clip: 1}
		}, "participants_per_round"},
		{"unknown grouping", func(s *JobSpec) { secure(s); s.Aggregation = Aggregation{Rule: "median", Groups: 3, GroupBy: "size"} }, "group_by"},
		{"local time budget", func(s *JobSpec) { s.LocalTimeBudget = Duration(30 * time.Second) }, ""},
		{"negative local time budget", func(s *JobSpec) { s.LocalTimeBudget = Duration(-time.Second) }, "local_time_budget"},
		{"central dp", func(s *JobSpec) { s.DP = &DifferentialPrivacy{Mode: DPCentral, NoiseMultiplier: 1, Clip: 1} }, ""},
		{"distributed dp", func(s *JobSpec) {
			secure(s)
			s.DP = &DifferentialPrivacy{Mode: DPDistributed, NoiseMultiplier: 1, Clip: 1, MaxEpsilon: 8}
		}, ""},
		{"dp without a mode", func(s *JobSpec) { s.DP = &DifferentialPrivacy{NoiseMultiplier: 1, Clip: 1} }, "dp.mode"},
		{"dp without noise", func(s *JobSpec) { s.DP = &DifferentialPrivacy{Mode: DPCentral, Clip: 1} }, "dp.noise_multiplier"},
		{"dp without a clip", func(s *JobSpec) { s.DP = &DifferentialPrivacy{Mode: DPCentral, NoiseMultiplier: 1} }, "dp.clip"},
		{"dp delta of 1", func(s *JobSpec) { s.DP = &DifferentialPrivacy{Mode: DPCentral, NoiseMultiplier: 1, Clip: 1, Delta: 1} }, "dp.delta"},
		{"central dp with secure aggregation", func(s *JobSpec) {
			secure(s)
			s.DP = &DifferentialPrivacy{Mode: DPCentral, NoiseMultiplier: 1, Clip: 1}
		}, "dp.mode"},
		{"distributed dp without secure aggregation", func(s *JobSpec) { s.DP = &DifferentialPrivacy{Mode: DPDistributed, NoiseMultiplier: 1, Clip: 1} }, "dp.mode"},
		{"dp with a robust rule", func(s *JobSpec) {
			s.Aggregation.Rule = "median"
			s.DP = &DifferentialPrivacy{Mode: DPCentral, NoiseMultiplier: 1, Clip: 1}
		}, "use rule fedavg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := DefaultJobSpec()
			c.edit(&s)
			err := s.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted; want an error naming %q", c.want)
			case c.want != "" && (!errors.Is(err, ErrBadJobSpec) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %q does not name %q", err, c.want)
			}
			if err == nil {
				if back := JobSpecFromProto(s.ToProto()); back.Validate() != nil || !sameStrategy(back, s) {
					t.Fatalf("the spec does not survive the wire: %+v", back)
				}
			}
		})
	}
}

func sameStrategy(a, b JobSpec) bool {
	return a.Strategy == b.Strategy && a.Server == b.Server && a.Aggregation == b.Aggregation &&
		a.LocalTimeBudget == b.LocalTimeBudget && (a.DP == nil) == (b.DP == nil) && (a.DP == nil || *a.DP == *b.DP)
}

// TestFSMChargesPrivacy: a job with dp composes the leader's per-round RDP
// vector on commit and on an abort whose noised result existed; a vector
// that does not fit, an ε that goes down or an untracked order is refused
// and changes nothing.
func TestFSMChargesPrivacy(t *testing.T) {
	d := newFSMDriver(t)
	spec := DefaultJobSpec()
	spec.DP = &DifferentialPrivacy{Mode: DPCentral, NoiseMultiplier: 1.1, Clip: 1}
	if err := d.submit(j1, spec); err != nil {
		t.Fatal(err)
	}
	job := func() *Job {
		j, err := d.f.Job(j1)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	open := func(n, a uint32) {
		t.Helper()
		if err := d.apply(CmdOpenRound, OpenRound{JobID: j1, Round: RoundRecord{Number: n, Attempt: a, Cohort: []string{"p1"}, BaseDigest: "d0"}}); err != nil {
			t.Fatal(err)
		}
	}
	const q = 0.1
	open(1, 1)
	rdp, eps, order := job().RoundPrivacy(q)
	bad := []struct {
		name string
		cmd  CommitRound
	}{
		{"short vector", CommitRound{PrivacyRDP: rdp[1:], Epsilon: eps, Order: order}},
		{"negative RDP", CommitRound{PrivacyRDP: append([]float64{-1}, rdp[1:]...), Epsilon: eps, Order: order}},
		{"untracked order", CommitRound{PrivacyRDP: rdp, Epsilon: eps, Order: 1.2345}},
		{"ε going down", CommitRound{PrivacyRDP: rdp, Epsilon: -1, Order: order}},
	}
	before := d.digest()
	for _, b := range bad {
		c := b.cmd
		c.JobID, c.Number, c.Attempt, c.Digest, c.SamplingRate = j1, 1, 1, "d1", q
		if err := d.apply(CmdCommitRound, c); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v; want ErrBadRequest", b.name, err)
		}
	}
	if d.digest() != before {
		t.Fatal("a refused commit changed the state")
	}
	if err := d.apply(CmdCommitRound, CommitRound{JobID: j1, Number: 1, Attempt: 1, Digest: "d1", SamplingRate: q, PrivacyRDP: rdp, Epsilon: eps, Order: order}); err != nil {
		t.Fatal(err)
	}
	if p := job().Privacy; p == nil || p.Epsilon != eps || p.Accountant.Steps != 1 {
		t.Fatalf("after one round: %+v; want ε %v after 1 step", p, eps)
	}
	// Round 2's first attempt is aborted after its noised model existed:
	// charged. Its second attempt is aborted before: not charged.
	open(2, 1)
	rdp2, eps2, order2 := job().RoundPrivacy(q)
	if err := d.apply(CmdAbortRound, AbortRound{JobID: j1, Number: 2, Attempt: 1, Reason: "quorum lost", PrivacyRDP: rdp2, Epsilon: eps2, Order: order2}); err != nil {
		t.Fatal(err)
	}
	open(2, 2)
	if err := d.apply(CmdAbortRound, AbortRound{JobID: j1, Number: 2, Attempt: 2, Reason: "deadline"}); err != nil {
		t.Fatal(err)
	}
	if p := job().Privacy; p.Epsilon != eps2 || p.Accountant.Steps != 2 || !(eps2 > eps) {
		t.Fatalf("after a charged and an uncharged abort: ε %v after %d steps; want %v (> %v) after 2", p.Epsilon, p.Accountant.Steps, eps2, eps)
	}
}
