package state

import (
	"fmt"
	"math"
	"time"

	"github.com/accord-fl/accord/aggregate"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ServerOptimizer is the job file's server section: the hyper-parameters of
// the server optimiser its strategy names. A zero field takes the
// optimiser's documented default (aggregate.OptimizerConfig).
type ServerOptimizer struct {
	LR       float64 `yaml:"lr" json:"lr,omitempty"`
	Momentum float64 `yaml:"momentum" json:"momentum,omitempty"`
	Beta1    float64 `yaml:"beta1" json:"beta1,omitempty"`
	Beta2    float64 `yaml:"beta2" json:"beta2,omitempty"`
	Tau      float64 `yaml:"tau" json:"tau,omitempty"`
}

// Aggregation is the job file's aggregation section: how a round's
// updates are combined before the server optimiser applies them.
type Aggregation struct {
	// Rule is "fedavg" (default), "median", "trimmed_mean", "krum" or
	// "multi_krum" (aggregate.RuleConfig).
	Rule string `yaml:"rule" json:"rule,omitempty"`
	// Beta is trimmed_mean's fraction trimmed at each end.
	Beta float64 `yaml:"beta" json:"beta,omitempty"`
	// F is how many Byzantine updates krum and multi_krum tolerate.
	F uint32 `yaml:"f" json:"f,omitempty"`
	// M is how many updates multi_krum averages (0: n − f).
	M uint32 `yaml:"m" json:"m,omitempty"`
	// NormBound drops updates whose L2 norm is above NormBound times the
	// round's median norm (0: off).
	NormBound float64 `yaml:"norm_bound" json:"norm_bound,omitempty"`
	// Groups, with secure aggregation, splits each cohort into this many
	// groups: secure aggregation runs within each, and Rule combines the
	// group means, so a robust rule works without the coordinators seeing
	// one participant's update.
	Groups uint32 `yaml:"groups" json:"groups,omitempty"`
	// GroupBy is "random" (default) or "region": participants of one
	// region share a group (regions are dealt out over the groups).
	GroupBy string `yaml:"group_by" json:"group_by,omitempty"`
	// Exact sums the updates in fixed point, so that a round's model does
	// not depend on the order its updates arrived in (reproducible runs;
	// aggregate.RuleConfig.Exact). Slower: scalar arithmetic.
	Exact bool `yaml:"exact" json:"exact,omitempty"`
}

// Group assignments.
const (
	GroupByRandom = "random"
	GroupByRegion = "region"
)

// Grouped reports whether rounds run secure aggregation in groups.
func (a Aggregation) Grouped() bool { return a.Groups > 0 }

// robust reports whether the rule needs more than the weighted sum.
func (a Aggregation) robust() bool {
	return a.Rule != "" && a.Rule != aggregate.RuleFedAvg || a.NormBound > 0
}

// RuleConfig is the aggregate package's view of the section.
func (a Aggregation) RuleConfig() aggregate.RuleConfig {
	return aggregate.RuleConfig{Name: a.Rule, Beta: a.Beta, F: int(a.F), M: int(a.M), NormBound: a.NormBound, Exact: a.Exact}
}

// Optimizer is the job's server optimiser: its strategy and server
// section, defaults filled in.
func (s JobSpec) Optimizer() aggregate.OptimizerConfig {
	return aggregate.OptimizerConfig{Name: s.Strategy, LR: s.Server.LR, Momentum: s.Server.Momentum,
		Beta1: s.Server.Beta1, Beta2: s.Server.Beta2, Tau: s.Server.Tau}.WithDefaults()
}

// validateStrategy checks strategy, server, aggregation, local_time_budget
// and dp together, since they constrain each other.
func (s JobSpec) validateStrategy() error {
	if err := s.Optimizer().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadJobSpec, err)
	}
	a := s.Aggregation
	if err := a.RuleConfig().Validate(); err != nil {
		return fmt.Errorf("%w: aggregation: %w", ErrBadJobSpec, err)
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s %v: %s", ErrBadJobSpec, field, v, want)
	}
	secure := s.SecureAggregation.Enabled()
	n := int(s.ParticipantsPerRound)
	switch {
	case a.GroupBy != "" && a.GroupBy != GroupByRandom && a.GroupBy != GroupByRegion:
		return bad("aggregation.group_by", fmt.Sprintf("%q", a.GroupBy), `want "random" or "region"`)
	case a.Grouped() && !secure:
		return bad("aggregation.groups", a.Groups, "groups split secure aggregation; set secure_aggregation.mode, or drop groups to apply the rule to individual updates")
	case a.Grouped() && a.Groups < 2:
		return bad("aggregation.groups", a.Groups, "want 0 (no groups) or at least 2")
	case a.Grouped() && (a.Rule == aggregate.RuleKrum || a.Rule == aggregate.RuleMultiKrum):
		return bad("aggregation.rule", fmt.Sprintf("%q", a.Rule), "over groups, use median, trimmed_mean or fedavg")
	case a.Grouped() && n == 0:
		return bad("aggregation.groups", a.Groups, "grouped mode needs participants_per_round (not participants_fraction), so that every group's size is known")
	case a.Grouped() && n/int(a.Groups) < 3:
		return bad("aggregation.groups", a.Groups, fmt.Sprintf("each group needs at least 3 participants; participants_per_round %d gives %d", n, n/int(a.Groups)))
	case a.Grouped() && a.Rule != "" && a.Rule != aggregate.RuleFedAvg && a.Groups < 3:
		return bad("aggregation.groups", a.Groups, fmt.Sprintf("a %s over 2 groups is their mean; use at least 3", a.Rule))
	case a.Grouped() && a.Rule == aggregate.RuleTrimmedMean && int(a.Beta*float64(a.Groups)) < 1:
		return bad("aggregation.beta", a.Beta, fmt.Sprintf("over %d groups it trims nothing; want beta × groups ≥ 1", a.Groups))
	case secure && !a.Grouped() && a.robust():
		return bad("aggregation.rule", fmt.Sprintf("%q", a.Rule), "a robust rule needs each update, which secure aggregation hides from the coordinators: set aggregation.groups to run secure aggregation in groups and apply the rule to the group sums (grouped mode)")
	case (a.Rule == aggregate.RuleKrum || a.Rule == aggregate.RuleMultiKrum) && !a.Grouped() && n > 0 && n <= 2*int(a.F)+2:
		return bad("aggregation.f", a.F, fmt.Sprintf("krum needs participants_per_round > 2f+2; it is %d", n))
	case a.Rule == aggregate.RuleMultiKrum && n > 0 && int(a.M) > n-int(a.F):
		return bad("aggregation.m", a.M, fmt.Sprintf("multi_krum averages at most participants_per_round − f = %d updates", n-int(a.F)))
	case time.Duration(s.LocalTimeBudget) < 0 || time.Duration(s.LocalTimeBudget) > 24*time.Hour:
		return bad("local_time_budget", time.Duration(s.LocalTimeBudget), "want 0 (none) to 24h")
	}
	if a.Grouped() {
		// Every group runs its own secure aggregation: its size, not the
		// cohort's, must suit the graph and threshold.
		if _, _, err := s.SecureAggregation.Graph(n / int(a.Groups)); err != nil {
			return fmt.Errorf("%w: secure_aggregation in groups of %d: %v", ErrBadJobSpec, n/int(a.Groups), err)
		}
	}
	if s.DP != nil {
		return s.DP.validate(s)
	}
	return nil
}

// MinUpdates is the fewest updates a round of n may commit with: the job's
// min_participants, and for Krum more than 2f+2.
func (s JobSpec) MinUpdates(n int) int {
	m := int(s.MinParticipants)
	if r := s.Aggregation.Rule; (r == aggregate.RuleKrum || r == aggregate.RuleMultiKrum) && !s.Aggregation.Grouped() {
		m = max(m, 2*int(s.Aggregation.F)+3)
	}
	return min(m, n)
}

// toProto converts the server section for the wire.
func (o ServerOptimizer) toProto() *pb.ServerOptimizer {
	return &pb.ServerOptimizer{Lr: o.LR, Momentum: o.Momentum, Beta1: o.Beta1, Beta2: o.Beta2, Tau: o.Tau}
}

func serverFromProto(p *pb.ServerOptimizer) ServerOptimizer {
	return ServerOptimizer{LR: p.GetLr(), Momentum: p.GetMomentum(), Beta1: p.GetBeta1(), Beta2: p.GetBeta2(), Tau: p.GetTau()}
}

func (a Aggregation) toProto() *pb.Aggregation {
	return &pb.Aggregation{Rule: a.Rule, Beta: a.Beta, F: a.F, M: a.M, NormBound: a.NormBound, Groups: a.Groups, GroupBy: a.GroupBy, Exact: a.Exact}
}

func aggregationFromProto(p *pb.Aggregation) Aggregation {
	return Aggregation{Rule: p.GetRule(), Beta: p.GetBeta(), F: p.GetF(), M: p.GetM(), NormBound: p.GetNormBound(),
		Groups: p.GetGroups(), GroupBy: p.GetGroupBy(), Exact: p.GetExact()}
}

// finite reports whether v is neither NaN nor infinite.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
