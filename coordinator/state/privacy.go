package state

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/model"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// DifferentialPrivacy is the job file's dp section: user-level differential
// privacy as in DP-FedAvg (McMahan et al. 2018). Every update is clipped to
// L2 norm Clip and weighs the same; Gaussian noise of standard deviation
// NoiseMultiplier × Clip is added to each round's sum, by the leader
// (central) or by the participants before secure aggregation masks their
// updates (distributed). A Rényi-DP accountant in the job's replicated
// state reports ε at Delta after every round and stops the job before a
// round would take ε above MaxEpsilon.
type DifferentialPrivacy struct {
	// Mode is "central" or "distributed".
	Mode string `yaml:"mode" json:"mode"`
	// NoiseMultiplier is z.
	NoiseMultiplier float64 `yaml:"noise_multiplier" json:"noise_multiplier"`
	// Clip is the L2 norm S every update is clipped to.
	Clip float64 `yaml:"clip" json:"clip"`
	// Delta is the δ ε is reported at (0: DefaultDelta).
	Delta float64 `yaml:"delta" json:"delta,omitempty"`
	// MaxEpsilon stops the job before a round would spend more (0: never).
	MaxEpsilon float64 `yaml:"max_epsilon" json:"max_epsilon,omitempty"`
}

// DP modes.
const (
	DPCentral     = "central"
	DPDistributed = "distributed"
)

// DefaultDelta is a dp section's delta when it sets none.
const DefaultDelta = 1e-5

// EffectiveDelta is the δ ε is reported at, defaulted.
func (d *DifferentialPrivacy) EffectiveDelta() float64 {
	return cmp.Or(d.Delta, DefaultDelta)
}

// validate checks the dp section against the rest of the job.
func (d *DifferentialPrivacy) validate(s JobSpec) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: dp.%s %v: %s", ErrBadJobSpec, field, v, want)
	}
	switch {
	case d.Mode != DPCentral && d.Mode != DPDistributed:
		return bad("mode", fmt.Sprintf("%q", d.Mode), `want "central" or "distributed"`)
	case !finite(d.NoiseMultiplier) || d.NoiseMultiplier <= 0 || d.NoiseMultiplier > 1000:
		return bad("noise_multiplier", d.NoiseMultiplier, "want a number in (0, 1000]")
	case !finite(d.Clip) || d.Clip <= 0:
		return bad("clip", d.Clip, "want a positive L2 norm")
	case !finite(d.Delta) || d.Delta < 0 || d.Delta >= 1:
		return bad("delta", d.Delta, fmt.Sprintf("want 0 (default %g) or a probability below 1", float64(DefaultDelta)))
	case !finite(d.MaxEpsilon) || d.MaxEpsilon < 0:
		return bad("max_epsilon", d.MaxEpsilon, "want 0 (no limit) or a positive number")
	case s.Aggregation.robust() || s.Aggregation.Grouped():
		return fmt.Errorf("%w: dp with aggregation.rule %q, norm_bound or groups: the accountant covers the clipped sum only; use rule fedavg", ErrBadJobSpec, s.Aggregation.Rule)
	case d.Mode == DPCentral && s.SecureAggregation.Enabled():
		return bad("mode", `"central"`, "with secure aggregation the leader cannot clip each update; use dp.mode distributed")
	case d.Mode == DPDistributed && !s.SecureAggregation.Enabled():
		return bad("mode", `"distributed"`, "distributed noise is added under secure aggregation; set secure_aggregation.mode, or use dp.mode central")
	}
	if d.Mode == DPDistributed && s.ParticipantsPerRound == 0 {
		return bad("mode", `"distributed"`, "distributed noise is planned for a known cohort size: set participants_per_round, not participants_fraction")
	}
	if d.Mode == DPDistributed {
		n := int(s.ParticipantsPerRound)
		_, t, err := s.SecureAggregation.Graph(n)
		if err != nil {
			return fmt.Errorf("%w: secure_aggregation: %v", ErrBadJobSpec, err)
		}
		spec, err := model.ParseSpec(s.Model)
		if err != nil {
			return fmt.Errorf("%w: model: %w", ErrBadJobSpec, err)
		}
		if _, err := dp.PlanDistributed(spec.NumParams(), n, max(t, s.MinUpdates(n), 2), d.Clip, d.NoiseMultiplier); err != nil {
			return fmt.Errorf("%w: dp: %w", ErrBadJobSpec, err)
		}
	}
	return nil
}

func (d *DifferentialPrivacy) toProto() *pb.DifferentialPrivacy {
	if d == nil {
		return nil
	}
	return &pb.DifferentialPrivacy{Mode: d.Mode, NoiseMultiplier: d.NoiseMultiplier, Clip: d.Clip, Delta: d.Delta, MaxEpsilon: d.MaxEpsilon}
}

func dpFromProto(p *pb.DifferentialPrivacy) *DifferentialPrivacy {
	if p == nil {
		return nil
	}
	return &DifferentialPrivacy{Mode: p.Mode, NoiseMultiplier: p.NoiseMultiplier, Clip: p.Clip, Delta: p.Delta, MaxEpsilon: p.MaxEpsilon}
}

// Privacy is what a job with dp has spent: the accountant's state, part of
// the replicated job state so that every coordinator reports the same ε
// and a new leader goes on from it.
type Privacy struct {
	Accountant *dp.Accountant `json:"accountant"`
	Epsilon    float64        `json:"epsilon"`
	Order      float64        `json:"order"`
}

// RoundPrivacy is what one more round at sampling rate q spends: the
// per-order RDP to compose and the job's ε and order after it. The leader
// computes it and writes it into the commit command; every FSM composes
// the vector with additions only (dp.Accountant.ComposeRDP), because the
// logarithms and exponentials behind it may differ in their last bits
// between CPUs, and replicated state must not.
func (j *Job) RoundPrivacy(q float64) (rdp []float64, eps, order float64) {
	d := j.Spec.DP
	acct := dp.NewAccountant()
	if j.Privacy != nil {
		acct = j.Privacy.Accountant.Clone()
	}
	rdp = dp.SampledGaussianRDP(q, d.NoiseMultiplier, acct.Orders)
	for i, r := range rdp {
		if !(r < math.MaxFloat64) {
			rdp[i] = math.MaxFloat64 // JSON has no infinity
		}
	}
	if err := acct.ComposeRDP(rdp, 1); err != nil {
		return nil, math.MaxFloat64, 0
	}
	eps, order = acct.Epsilon(d.EffectiveDelta())
	return rdp, min(eps, math.MaxFloat64), order
}

// charge spends one round attempt's privacy (FSM) and records the job's ε
// after it on the attempt; a refused vector is ErrBadRequest.
func (j *Job) charge(r *RoundRecord, rdp []float64, eps, order float64) error {
	if err := j.spend(rdp, eps, order); err != nil {
		return fmt.Errorf("%w: privacy of round %d: %w", ErrBadRequest, r.Number, err)
	}
	r.Epsilon = eps
	return nil
}

// spend composes one round into the job's privacy (FSM): the leader's
// per-order RDP vector, and the ε and order it computed from the sum. It
// changes nothing if the vector does not fit the accountant, or if ε is not
// finite, goes down, or names an order the accountant does not track.
func (j *Job) spend(rdp []float64, eps, order float64) error {
	acct := dp.NewAccountant()
	prev := 0.0
	if j.Privacy != nil {
		acct, prev = j.Privacy.Accountant.Clone(), j.Privacy.Epsilon
	}
	switch {
	case !(eps >= prev) || eps > math.MaxFloat64:
		return fmt.Errorf("ε %v after %v", eps, prev)
	case !slices.Contains(acct.Orders, order) && !(order == 0 && eps == 0):
		return fmt.Errorf("order %v is not tracked", order)
	}
	if err := acct.ComposeRDP(rdp, 1); err != nil {
		return err
	}
	j.Privacy = &Privacy{Accountant: acct, Epsilon: eps, Order: order}
	return nil
}

// Epsilon is the job's ε so far (0 before its first round).
func (j *Job) Epsilon() float64 {
	if j.Privacy == nil {
		return 0
	}
	return j.Privacy.Epsilon
}

// EpsilonAfterRound is the job's ε if one more round at sampling rate q
// committed.
func (j *Job) EpsilonAfterRound(q float64) float64 {
	_, eps, _ := j.RoundPrivacy(q)
	return eps
}

// privacyProto is the job's privacy for the wire (nil without dp).
func (j *Job) privacyProto() *pb.Privacy {
	if j.Spec.DP == nil {
		return nil
	}
	p := &pb.Privacy{Delta: j.Spec.DP.EffectiveDelta()}
	if j.Privacy != nil {
		p.Epsilon, p.Order, p.Steps = j.Privacy.Epsilon, j.Privacy.Order, j.Privacy.Accountant.Steps
	}
	return p
}
