package state

import (
	"cmp"
	"fmt"
	"math"
	"time"

	"github.com/accord-fl/accord/aggregate/secagg"
	"github.com/accord-fl/accord/model"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// JobSpec is a job file (YAML) and what the FSM stores for a job.
type JobSpec struct {
	Name           string  `yaml:"name" json:"name"`
	Model          string  `yaml:"model" json:"model"`
	Dataset        string  `yaml:"dataset" json:"dataset"`
	Rounds         uint32  `yaml:"rounds" json:"rounds"`
	TargetAccuracy float64 `yaml:"target_accuracy" json:"target_accuracy"`
	// ParticipantsPerRound (or ParticipantsFraction of those connected)
	// is the number of updates a round wants: the leader selects more
	// (ExpectedDropout) and closes the round once this many arrived.
	ParticipantsPerRound uint32            `yaml:"participants_per_round" json:"participants_per_round"`
	ParticipantsFraction float64           `yaml:"participants_fraction" json:"participants_fraction"`
	MinParticipants      uint32            `yaml:"min_participants" json:"min_participants"`
	LocalEpochs          uint32            `yaml:"local_epochs" json:"local_epochs"`
	BatchSize            uint32            `yaml:"batch_size" json:"batch_size"`
	LearningRate         float64           `yaml:"learning_rate" json:"learning_rate"`
	ProxMu               float64           `yaml:"prox_mu" json:"prox_mu"`
	Strategy             string            `yaml:"strategy" json:"strategy"`
	SecureAggregation    SecureAggregation `yaml:"secure_aggregation" json:"secure_aggregation"`
	RoundDeadline        Duration          `yaml:"round_deadline" json:"round_deadline"`
	Seed                 uint64            `yaml:"seed" json:"seed"`
	EvaluateFraction     float64           `yaml:"evaluate_fraction" json:"evaluate_fraction"`
	// MaxExamples is the most examples one participant's update weighs as
	// (0: DefaultMaxExamples). A larger claim counts as MaxExamples, in
	// plain and secure rounds alike, so no participant can outweigh the
	// others by lying about its size.
	MaxExamples uint64 `yaml:"max_examples" json:"max_examples,omitempty"`
	// MaxUpdateNorm refuses a plain update whose L2 norm is above it (0:
	// DefaultMaxUpdateNorm), so one update cannot blow the model up.
	// Secure rounds bound each entry with secure_aggregation.clip instead.
	MaxUpdateNorm float64 `yaml:"max_update_norm" json:"max_update_norm,omitempty"`
	// MaxAttempts is how many attempts in a row one round may abort before
	// the job fails with the last reason (0: DefaultMaxAttempts).
	MaxAttempts uint32 `yaml:"max_attempts" json:"max_attempts,omitempty"`
	// Retain says which committed models are kept (nil: DefaultRetain).
	Retain *Retain `yaml:"retain" json:"retain,omitempty"`
	// Server holds the hyper-parameters of the server optimiser Strategy
	// names ("fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi").
	Server ServerOptimizer `yaml:"server" json:"server,omitempty"`
	// Aggregation says how a round's updates are combined.
	Aggregation Aggregation `yaml:"aggregation" json:"aggregation,omitempty"`
	// LocalTimeBudget lets a participant that runs out of time before
	// finishing local_epochs send the epochs it completed, weighted by the
	// work done (FedProx partial work; 0: no budget).
	LocalTimeBudget Duration `yaml:"local_time_budget" json:"local_time_budget,omitempty"`
	// DP is user-level differential privacy (nil: none).
	DP *DifferentialPrivacy `yaml:"dp" json:"dp,omitempty"`
	// SimulatedClock gives rounds simulated times, for rehearsals of
	// participants' working hours across time zones (nil: real time).
	SimulatedClock *SimulatedClock `yaml:"simulated_clock" json:"simulated_clock,omitempty"`
	// ExpectedDropout is the share of a cohort expected not to answer: the
	// leader selects ⌈wanted / (1 − rate)⌉ participants, at most
	// MaxOverSelection × wanted. 0 takes secure_aggregation.dropout_rate
	// when it is set, and otherwise the rate observed in the job's recent
	// attempts (Job.observedDropout).
	ExpectedDropout float64 `yaml:"expected_dropout" json:"expected_dropout,omitempty"`
	// MaxOverSelection bounds the cohort at this multiple of the updates
	// wanted (0: DefaultMaxOverSelection; 1: no over-selection).
	MaxOverSelection float64 `yaml:"max_over_selection" json:"max_over_selection,omitempty"`
	// StragglerFactor closes a round, or a secure-aggregation phase, once
	// half of its members answered and it has run this many times as long
	// as its median member took (see stragglersCut; 0:
	// DefaultStragglerFactor; negative: never, the deadline alone bounds
	// the round).
	StragglerFactor float64 `yaml:"straggler_factor" json:"straggler_factor,omitempty"`
}

// DefaultMaxOverSelection is a job's max_over_selection when it sets none:
// a cohort of at most twice the updates wanted.
const DefaultMaxOverSelection = 2

// DefaultStragglerFactor is a job's straggler_factor when it sets none. A
// healthy cohort whose members train one after another on shared machines
// has its last member near twice the median; three leaves room for that.
const DefaultStragglerFactor = 3

// maxOverSelection is the job's bound on the cohort, as a multiple of the
// updates wanted, defaulted.
func (s JobSpec) maxOverSelection() float64 {
	return cmp.Or(s.MaxOverSelection, DefaultMaxOverSelection)
}

// EffectiveStragglerFactor is the job's straggler factor, defaulted; 0 means the
// rule is off.
func (s JobSpec) EffectiveStragglerFactor() float64 {
	switch {
	case s.StragglerFactor < 0:
		return 0
	case s.StragglerFactor == 0:
		return DefaultStragglerFactor
	}
	return s.StragglerFactor
}

// DefaultMaxUpdateNorm is a job's max_update_norm when it sets none: far
// above the norm of an honest update of the models Accord trains (a few
// units to a few tens), far below one that ruins a model.
const DefaultMaxUpdateNorm = 1000

// DefaultMaxAttempts is a job's max_attempts when it sets none.
const DefaultMaxAttempts = 10

// EffectiveMaxUpdateNorm is the job's bound on an update's norm, defaulted.
func (s JobSpec) EffectiveMaxUpdateNorm() float64 {
	return cmp.Or(s.MaxUpdateNorm, DefaultMaxUpdateNorm)
}

// EffectiveMaxAttempts is the job's bound on a round's aborted attempts in a row.
func (s JobSpec) EffectiveMaxAttempts() uint32 {
	return cmp.Or(s.MaxAttempts, DefaultMaxAttempts)
}

// MaxSecureCohort bounds a secure round's cohort: choosing its graph and
// the protocol's cost grow with it (secagg.ChooseGraph takes ~14 ms at 1,000).
const MaxSecureCohort = 1000

// DefaultMaxExamples is a job's max_examples when the job file sets none:
// a large hospital's or bank's dataset.
const DefaultMaxExamples = 100_000

// maxExamplesLimit bounds max_examples itself.
const maxExamplesLimit = 1 << 32

// EffectiveMaxExamples is the job's cap on one participant's weight, defaulted.
func (s JobSpec) EffectiveMaxExamples() uint64 {
	return cmp.Or(s.MaxExamples, DefaultMaxExamples)
}

// Weight is what a participant claiming examples counts for in this job.
func (s JobSpec) Weight(examples uint64) uint64 { return min(examples, s.EffectiveMaxExamples()) }

// SecureAggregation is the job file's secure_aggregation section. With a
// mode set, participants mask their updates and the coordinators learn only
// the sum of each round's survivors.
type SecureAggregation struct {
	// Mode is "secagg" (every pair of the cohort shares a mask: Bonawitz et
	// al.), "secagg+" (neighbours on a random Harary graph: Bell et al.), or
	// "" / "none".
	Mode string `yaml:"mode" json:"mode"`
	// Threshold is how many clients must survive every phase. 0 derives it:
	// a majority of the cohort for secagg; from the dropout and corruption
	// rates for secagg+.
	Threshold uint32 `yaml:"threshold" json:"threshold"`
	// DropoutRate is the fraction of a cohort expected to drop out
	// (secagg+; 0 means 0.1).
	DropoutRate float64 `yaml:"dropout_rate" json:"dropout_rate"`
	// CorruptRate is the fraction of clients assumed to collude with the
	// coordinators (secagg+; 0 means none).
	CorruptRate float64 `yaml:"corrupt_rate" json:"corrupt_rate"`
	// Clip bounds every entry of a weighted update to [−clip, clip] before
	// quantisation (0 means 1).
	Clip float64 `yaml:"clip" json:"clip"`
	// PhaseDeadline bounds each phase after training (0 means 10s).
	PhaseDeadline Duration `yaml:"phase_deadline" json:"phase_deadline"`
}

// Secure aggregation modes.
const (
	ModeSecAgg     = "secagg"
	ModeSecAggPlus = "secagg+"
)

// Enabled reports whether updates are masked.
func (sa SecureAggregation) Enabled() bool { return sa.Mode != "" && sa.Mode != "none" }

// EffectiveClip is the clipping range, defaulted.
func (sa SecureAggregation) EffectiveClip() float64 {
	return cmp.Or(sa.Clip, 1)
}

// EffectivePhaseDeadline is each post-training phase's time limit, defaulted.
func (sa SecureAggregation) EffectivePhaseDeadline() time.Duration {
	return cmp.Or(time.Duration(sa.PhaseDeadline), 10*time.Second)
}

// Graph returns the degree and threshold for a cohort of n clients.
func (sa SecureAggregation) Graph(n int) (k, t int, err error) {
	if n < 3 {
		return 0, 0, fmt.Errorf("secure aggregation needs a cohort of at least 3; this one has %d", n)
	}
	k, t = n-1, n/2+1
	if sa.Mode == ModeSecAggPlus {
		dropout := sa.DropoutRate
		if dropout == 0 {
			dropout = 0.1
		}
		if gk, gt, err := secagg.ChooseGraph(n, dropout, sa.CorruptRate); err == nil {
			k, t = gk, gt
		} else {
			// Small cohorts cannot meet the failure bounds: use the complete
			// graph and a threshold that tolerates the dropout rate.
			t = max(2, int(math.Floor((1-dropout)*float64(n))))
		}
	}
	if sa.Threshold > 0 {
		t = int(sa.Threshold)
	}
	if t > k+1 {
		return 0, 0, fmt.Errorf("threshold %d exceeds the %d shareholders each client has in a cohort of %d", t, k+1, n)
	}
	return k, t, nil
}

// Duration is a time.Duration written as "30s" in YAML and JSON.
type Duration time.Duration

// UnmarshalText parses "30s", "2m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// DefaultJobSpec is the FedAvg paper's 2NN setting on MNIST: 10 participants
// a round, E=1, B=10, learning rate 0.1, 97% target.
func DefaultJobSpec() JobSpec {
	return JobSpec{
		Name: "mnist-2nn", Model: "mlp:784-200-200-10", Dataset: "mnist", Rounds: 100, TargetAccuracy: 0.97,
		ParticipantsPerRound: 10, MinParticipants: 1, LocalEpochs: 1, BatchSize: 10, LearningRate: 0.1,
		Strategy: "fedavg", RoundDeadline: Duration(time.Minute), Seed: 1, EvaluateFraction: 1,
	}
}

// Validate reports the first invalid field, naming it as the job file does.
func (s JobSpec) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s %v: %s", ErrBadJobSpec, field, v, want)
	}
	if s.Name == "" || len(s.Name) > 128 {
		return bad("name", fmt.Sprintf("%q", s.Name), "want 1–128 characters")
	}
	if _, err := model.ParseSpec(s.Model); err != nil {
		return fmt.Errorf("%w: model: %w", ErrBadJobSpec, err)
	}
	switch {
	case s.Dataset == "":
		return bad("dataset", `""`, "name the dataset participants train on")
	case s.Rounds < 1 || s.Rounds > 1_000_000:
		return bad("rounds", s.Rounds, "want 1–1000000")
	case !finite(s.TargetAccuracy) || s.TargetAccuracy < 0 || s.TargetAccuracy > 1:
		return bad("target_accuracy", s.TargetAccuracy, "want a fraction in [0, 1]")
	case s.ParticipantsPerRound == 0 && !(s.ParticipantsFraction > 0 && s.ParticipantsFraction <= 1):
		return bad("participants_per_round", s.ParticipantsPerRound, "set it, or participants_fraction in (0, 1]")
	case s.MinParticipants < 1:
		return bad("min_participants", s.MinParticipants, "want at least 1")
	case s.ParticipantsPerRound > 0 && s.MinParticipants > s.ParticipantsPerRound:
		return bad("min_participants", s.MinParticipants, fmt.Sprintf("cannot exceed participants_per_round %d", s.ParticipantsPerRound))
	case s.LocalEpochs < 1 || s.LocalEpochs > 1000:
		return bad("local_epochs", s.LocalEpochs, "want 1–1000")
	case s.BatchSize < 1 || s.BatchSize > 1<<16:
		return bad("batch_size", s.BatchSize, "want 1–65536")
	case !finite(s.LearningRate) || s.LearningRate <= 0:
		return bad("learning_rate", s.LearningRate, "want a positive number")
	case !finite(s.ProxMu) || s.ProxMu < 0:
		return bad("prox_mu", s.ProxMu, "want 0 or more")
	}
	if err := s.SecureAggregation.validate(s.ParticipantsPerRound); err != nil {
		return err
	}
	switch {
	case time.Duration(s.RoundDeadline) < 100*time.Millisecond || time.Duration(s.RoundDeadline) > 24*time.Hour:
		return bad("round_deadline", time.Duration(s.RoundDeadline), "want 100ms–24h")
	case !finite(s.EvaluateFraction) || s.EvaluateFraction < 0 || s.EvaluateFraction > 1:
		return bad("evaluate_fraction", s.EvaluateFraction, "want a fraction in [0, 1]")
	case s.MaxExamples > maxExamplesLimit:
		return bad("max_examples", s.MaxExamples, fmt.Sprintf("want 0 (default %d) to %d", DefaultMaxExamples, uint64(maxExamplesLimit)))
	case !finite(s.MaxUpdateNorm) || s.MaxUpdateNorm < 0:
		return bad("max_update_norm", s.MaxUpdateNorm, fmt.Sprintf("want 0 (default %d) or a positive number", DefaultMaxUpdateNorm))
	case s.MaxAttempts > 1000:
		return bad("max_attempts", s.MaxAttempts, fmt.Sprintf("want 0 (default %d) to 1000", DefaultMaxAttempts))
	case !(s.ExpectedDropout >= 0 && s.ExpectedDropout < 1):
		return bad("expected_dropout", s.ExpectedDropout, "want a fraction in [0, 1)")
	case !finite(s.MaxOverSelection) || s.MaxOverSelection != 0 && (s.MaxOverSelection < 1 || s.MaxOverSelection > 10):
		return bad("max_over_selection", s.MaxOverSelection, fmt.Sprintf("want 0 (default %d) or 1–10", DefaultMaxOverSelection))
	case !finite(s.StragglerFactor) || s.StragglerFactor > 0 && s.StragglerFactor < 1 || s.StragglerFactor > 1000:
		return bad("straggler_factor", s.StragglerFactor, fmt.Sprintf("want 0 (default %d), 1–1000, or negative (off)", DefaultStragglerFactor))
	}
	if err := s.retain().validate(); err != nil {
		return err
	}
	if err := s.SimulatedClock.validate(); err != nil {
		return err
	}
	return s.validateStrategy()
}

// validate checks the secure_aggregation section against the cohort size.
func (sa SecureAggregation) validate(perRound uint32) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: secure_aggregation.%s %v: %s", ErrBadJobSpec, field, v, want)
	}
	switch sa.Mode {
	case "", "none":
		return nil
	case ModeSecAgg, ModeSecAggPlus:
	default:
		return bad("mode", fmt.Sprintf("%q", sa.Mode), `want "secagg", "secagg+" or "none"`)
	}
	switch {
	case !(sa.Clip >= 0) || math.IsInf(sa.Clip, 0):
		return bad("clip", sa.Clip, "want a positive number")
	case !(sa.DropoutRate >= 0 && sa.DropoutRate < 1):
		return bad("dropout_rate", sa.DropoutRate, "want a fraction in [0, 1)")
	case !(sa.CorruptRate >= 0 && sa.CorruptRate < 1):
		return bad("corrupt_rate", sa.CorruptRate, "want a fraction in [0, 1)")
	case sa.Threshold == 1:
		return bad("threshold", sa.Threshold, "want 0 (derived) or at least 2")
	case sa.PhaseDeadline != 0 && (time.Duration(sa.PhaseDeadline) < 100*time.Millisecond || time.Duration(sa.PhaseDeadline) > time.Hour):
		return bad("phase_deadline", time.Duration(sa.PhaseDeadline), "want 100ms–1h")
	case perRound > 0 && perRound < 3:
		return fmt.Errorf("%w: participants_per_round %d: secure aggregation needs at least 3", ErrBadJobSpec, perRound)
	case perRound > MaxSecureCohort:
		return fmt.Errorf("%w: participants_per_round %d: secure aggregation takes cohorts of at most %d", ErrBadJobSpec, perRound, MaxSecureCohort)
	case perRound > 0 && sa.Threshold > perRound:
		return bad("threshold", sa.Threshold, fmt.Sprintf("cannot exceed participants_per_round %d", perRound))
	}
	if perRound > 0 {
		if _, _, err := sa.Graph(int(perRound)); err != nil {
			return fmt.Errorf("%w: secure_aggregation: %v", ErrBadJobSpec, err)
		}
	}
	return nil
}

// TrainConfig is the local training a participant runs for this job.
func (s JobSpec) TrainConfig(seed uint64) model.TrainConfig {
	return model.TrainConfig{Epochs: int(s.LocalEpochs), BatchSize: int(s.BatchSize), LearningRate: s.LearningRate, ProxMu: s.ProxMu, Seed: seed}
}

// ToProto converts the spec for the wire.
func (s JobSpec) ToProto() *pb.JobSpec {
	return &pb.JobSpec{
		Name: s.Name, Model: s.Model, Dataset: s.Dataset, Rounds: s.Rounds, TargetAccuracy: s.TargetAccuracy,
		ParticipantsPerRound: s.ParticipantsPerRound, ParticipantsFraction: s.ParticipantsFraction,
		MinParticipants: s.MinParticipants, LocalEpochs: s.LocalEpochs, BatchSize: s.BatchSize,
		LearningRate: s.LearningRate, ProxMu: s.ProxMu, Strategy: s.Strategy,
		SecureAggregation: &pb.SecureAggregation{Mode: s.SecureAggregation.Mode, Threshold: s.SecureAggregation.Threshold,
			DropoutRate: s.SecureAggregation.DropoutRate, Clip: s.SecureAggregation.Clip, CorruptRate: s.SecureAggregation.CorruptRate,
			PhaseDeadlineMs: uint64(time.Duration(s.SecureAggregation.PhaseDeadline) / time.Millisecond)},
		RoundDeadlineMs: uint64(time.Duration(s.RoundDeadline) / time.Millisecond), Seed: s.Seed, EvaluateFraction: s.EvaluateFraction,
		MaxExamples: s.MaxExamples, MaxUpdateNorm: s.MaxUpdateNorm, MaxAttempts: s.MaxAttempts, Retain: s.Retain.toProto(),
		Server: s.Server.toProto(), Aggregation: s.Aggregation.toProto(),
		LocalTimeBudgetMs: uint64(time.Duration(s.LocalTimeBudget) / time.Millisecond), Dp: s.DP.toProto(),
		SimulatedClock: s.SimulatedClock.toProto(), ExpectedDropout: s.ExpectedDropout, MaxOverSelection: s.MaxOverSelection,
		StragglerFactor: s.StragglerFactor,
	}
}

// JobSpecFromProto converts a wire spec; it does not validate.
func JobSpecFromProto(p *pb.JobSpec) JobSpec {
	if p == nil {
		return JobSpec{}
	}
	s := JobSpec{
		Name: p.Name, Model: p.Model, Dataset: p.Dataset, Rounds: p.Rounds, TargetAccuracy: p.TargetAccuracy,
		ParticipantsPerRound: p.ParticipantsPerRound, ParticipantsFraction: p.ParticipantsFraction,
		MinParticipants: p.MinParticipants, LocalEpochs: p.LocalEpochs, BatchSize: p.BatchSize,
		LearningRate: p.LearningRate, ProxMu: p.ProxMu, Strategy: p.Strategy,
		RoundDeadline: Duration(time.Duration(p.RoundDeadlineMs) * time.Millisecond), Seed: p.Seed, EvaluateFraction: p.EvaluateFraction,
		MaxExamples: p.MaxExamples, MaxUpdateNorm: p.MaxUpdateNorm, MaxAttempts: p.MaxAttempts, Retain: retainFromProto(p.Retain),
		Server: serverFromProto(p.Server), Aggregation: aggregationFromProto(p.Aggregation),
		LocalTimeBudget: Duration(time.Duration(min(p.LocalTimeBudgetMs, math.MaxInt64/uint64(time.Millisecond))) * time.Millisecond),
		DP:              dpFromProto(p.Dp), SimulatedClock: simulatedClockFromProto(p.SimulatedClock),
		ExpectedDropout: p.ExpectedDropout, MaxOverSelection: p.MaxOverSelection, StragglerFactor: p.StragglerFactor,
	}
	if sa := p.SecureAggregation; sa != nil {
		s.SecureAggregation = SecureAggregation{Mode: sa.Mode, Threshold: sa.Threshold, DropoutRate: sa.DropoutRate, Clip: sa.Clip,
			CorruptRate: sa.CorruptRate, PhaseDeadline: Duration(time.Duration(sa.PhaseDeadlineMs) * time.Millisecond)}
	}
	return s
}
