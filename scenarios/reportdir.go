package scenarios

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/accord-fl/accord/scenarios/report"
)

// Baseline is the same scenario run without its network model, for the
// cost of geography.
type Baseline struct {
	RoundsCommitted        uint32   `json:"rounds_committed"`
	FinalAccuracy          float64  `json:"final_accuracy"`
	MeanRoundSeconds       float64  `json:"mean_round_seconds"`
	TargetReachedAtRound   *uint32  `json:"target_reached_at_round"`
	TargetReachedAtSeconds *float64 `json:"target_reached_at_seconds"`
	WallSeconds            float64  `json:"wall_seconds"`
}

// RunAndCompare runs a scenario and, if it asks to (compare:
// without_network) and has a network model, runs it again on plain
// loopback and puts that run's figures in the report's WithoutNetwork.
func RunAndCompare(ctx context.Context, sc *Scenario, opts Options) (*Report, error) {
	rep, err := Run(ctx, sc, opts)
	if err != nil || sc.Compare != CompareWithoutNetwork || sc.Network == nil {
		return rep, err
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "scenario %s: again without the network model (every link loopback), to compare\n", sc.Name)
	}
	opts.NoNetwork = true
	base, err := Run(ctx, sc, opts)
	if err != nil {
		return nil, fmt.Errorf("the run without the network model: %w", err)
	}
	rep.WithoutNetwork = &Baseline{RoundsCommitted: base.RoundsCommitted, FinalAccuracy: base.FinalAccuracy, MeanRoundSeconds: base.MeanRoundSeconds,
		TargetReachedAtRound: base.TargetReachedAtRound, TargetReachedAtSeconds: base.TargetReachedAtSeconds, WallSeconds: base.WallSeconds}
	if !base.InvariantsOK {
		rep.InvariantsOK, rep.InvariantsError = false, "the run without the network model: "+base.InvariantsError
	}
	return rep, nil
}

// WriteReport writes report.md and the plots of a run into dir.
func WriteReport(dir string, sc *Scenario, rep *Report) error {
	r := &report.Run{Scenario: rep.Scenario, Description: strings.TrimSpace(sc.Description), Seed: rep.Seed, WallSeconds: rep.WallSeconds,
		TargetAccuracy: rep.TargetAccuracy, LinkBytes: rep.LinkBytes}
	target := "not reached"
	if rep.TargetReachedAtRound != nil {
		target = fmt.Sprintf("round %d (%.1f s)", *rep.TargetReachedAtRound, *rep.TargetReachedAtSeconds)
	}
	r.Summary = []report.KV{
		{Key: "Job", Value: fmt.Sprintf("%s: %s (%s)", rep.JobID, rep.JobStatus, rep.JobReason)},
		{Key: "Coordinators", Value: coordinatorsLine(sc)},
		{Key: "Participants", Value: fmt.Sprintf("%d in %d regions", rep.Participants, len(sc.regions()))},
		{Key: "Rounds committed / aborted", Value: fmt.Sprintf("%d / %d", rep.RoundsCommitted, rep.RoundsAborted)},
		{Key: "Attempts that waited for their deadline", Value: fmt.Sprint(rep.AttemptsAtDeadline)},
		{Key: "Final / best test accuracy", Value: fmt.Sprintf("%.2f%% / %.2f%%", 100*rep.FinalAccuracy, 100*rep.BestAccuracy)},
		{Key: "Target", Value: fmt.Sprintf("%.2f%%, %s", 100*rep.TargetAccuracy, target)},
		{Key: "Mean round", Value: fmt.Sprintf("%.2f s", rep.MeanRoundSeconds)},
		{Key: "Runner", Value: rep.Runner},
		{Key: "Network model", Value: networkLine(sc, rep)},
		{Key: "Invariants", Value: invariantsLine(rep)},
		{Key: "Model digests", Value: digestsLine(rep)},
		{Key: "Kernel", Value: rep.Kernel},
	}
	for _, x := range rep.Rounds {
		r.Rounds = append(r.Rounds, report.Round{Round: x.Round, Accuracy: x.Accuracy, ByRegion: x.AccuracyByRegion, Seconds: x.SecondsSincePrevious,
			SecondsSinceStart: x.SecondsSinceStart, Cohort: x.Cohort, ContributorsByRegion: x.ContributorsByRegion, Epsilon: x.Epsilon})
	}
	for _, a := range rep.Aborted {
		r.Aborted = append(r.Aborted, report.Aborted{Round: a.Round, Attempt: a.Attempt, Reason: a.Reason, SecondsSinceStart: a.SecondsSinceStart,
			Cohort: a.Cohort, Responders: a.Responders, Seconds: a.Seconds})
	}
	for _, a := range rep.Attempts {
		r.Attempts = append(r.Attempts, report.Attempt{Round: a.Round, Attempt: a.Attempt, Committed: a.Status == "committed", Reason: a.Reason,
			Cohort: a.Cohort, Responders: a.Responders, Seconds: a.Seconds, AtDeadline: a.AtDeadline})
	}
	for _, e := range rep.Events {
		r.Events = append(r.Events, report.Event{Round: e.Round, Phase: e.Phase, Kind: e.Kind, Target: e.Target, SecondsSinceStart: e.SecondsSinceStart, Outcome: e.Outcome})
	}
	if b := rep.WithoutNetwork; b != nil {
		r.Comparisons = append(r.Comparisons, report.Table{
			Title:  "The cost of geography: the same scenario with its network model and on plain loopback",
			Header: []string{"", "with the network model", "loopback"},
			Rows: [][]string{
				{"mean round (s)", fmt.Sprintf("%.2f", rep.MeanRoundSeconds), fmt.Sprintf("%.2f", b.MeanRoundSeconds)},
				{"target reached at round", roundOrNever(rep.TargetReachedAtRound), roundOrNever(b.TargetReachedAtRound)},
				{"time to target (s)", secondsOrNever(rep.TargetReachedAtSeconds), secondsOrNever(b.TargetReachedAtSeconds)},
				{"rounds committed", fmt.Sprint(rep.RoundsCommitted), fmt.Sprint(b.RoundsCommitted)},
				{"final accuracy", fmt.Sprintf("%.2f%%", 100*rep.FinalAccuracy), fmt.Sprintf("%.2f%%", 100*b.FinalAccuracy)},
				{"wall time (s)", fmt.Sprintf("%.1f", rep.WallSeconds), fmt.Sprintf("%.1f", b.WallSeconds)},
			},
		})
	}
	if rep.Serve != nil {
		r.Comparisons = append(r.Comparisons, rep.Serve.table(rep.RoundsCommitted))
	}
	var failovers [][]string
	for _, e := range rep.Events {
		if e.FailoverSeconds != nil {
			failovers = append(failovers, []string{fmt.Sprint(e.Round), e.Kind + " " + e.Target, fmt.Sprintf("%.2f", *e.FailoverSeconds)})
		}
	}
	if len(failovers) > 0 {
		r.Comparisons = append(r.Comparisons, report.Table{
			Title:  fmt.Sprintf("Failover: from losing the leader to another coordinator leading (Raft profile %s)", profileName(sc, rep)),
			Header: []string{"round", "event", "seconds"}, Rows: failovers,
		})
	}
	return report.Write(dir, r)
}

func coordinatorsLine(sc *Scenario) string {
	var parts []string
	for _, c := range sc.Coordinators {
		s := c.Name + " (" + c.Organization
		if c.Region != "" {
			s += ", " + c.Region
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, ", ")
}

// profileName is the coordinators' Raft timing profile as a report names
// it: in-process runs default to lan with tripled timeouts
// (inProcessTimings).
func profileName(sc *Scenario, rep *Report) string {
	switch {
	case sc.RaftProfile != "":
		return sc.RaftProfile
	case rep.Runner == "processes":
		return "lan"
	}
	return fmt.Sprintf("lan, timeouts ×%d in-process", inProcessScale)
}

func invariantsLine(rep *Report) string {
	if rep.InvariantsOK {
		return "ok: " + strings.Join(rep.InvariantsChecked, "; ")
	}
	return "VIOLATED: " + rep.InvariantsError
}

func networkLine(sc *Scenario, rep *Report) string {
	s := fmt.Sprintf("%v, shaped by %s (Raft profile %s)", rep.NetworkModel, rep.Network, profileName(sc, rep))
	if rep.NetworkNote != "" {
		s += "; " + rep.NetworkNote
	}
	return s
}

// digestsLine says whether every coordinator holds the same model digests,
// and the last one.
func digestsLine(rep *Report) string {
	var first map[uint32]string
	same := true
	for _, name := range slices.Sorted(maps.Keys(rep.ModelDigests)) {
		d := rep.ModelDigests[name]
		if first == nil {
			first = d
		} else if !maps.Equal(first, d) {
			same = false
		}
	}
	last := ""
	if n := len(rep.Rounds); n > 0 {
		last = fmt.Sprintf("; round %d: %.16s…", rep.Rounds[n-1].Round, rep.Rounds[n-1].ModelDigest)
	}
	if same {
		return fmt.Sprintf("the same on all %d running coordinators%s", len(rep.ModelDigests), last)
	}
	return "DIFFER between coordinators" + last
}

func roundOrNever(r *uint32) string {
	if r == nil {
		return "never"
	}
	return fmt.Sprint(*r)
}

func secondsOrNever(s *float64) string {
	if s == nil {
		return "never"
	}
	return fmt.Sprintf("%.1f", *s)
}
