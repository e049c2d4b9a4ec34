package coordinator

import (
	"fmt"
	"math"
	"time"

	"github.com/accord-fl/accord/model"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// JobSpec is a job file (YAML) and what the FSM stores for a job.
type JobSpec struct {
	Name                 string            `yaml:"name" json:"name"`
	Model                string            `yaml:"model" json:"model"`
	Dataset              string            `yaml:"dataset" json:"dataset"`
	Rounds               uint32            `yaml:"rounds" json:"rounds"`
	TargetAccuracy       float64           `yaml:"target_accuracy" json:"target_accuracy"`
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
}

// SecureAggregation is the job file's secure_aggregation section. Masking is
// not implemented yet: a job that asks for it is refused.
type SecureAggregation struct {
	Mode        string  `yaml:"mode" json:"mode"`
	Threshold   uint32  `yaml:"threshold" json:"threshold"`
	DropoutRate float64 `yaml:"dropout_rate" json:"dropout_rate"`
	Clip        float64 `yaml:"clip" json:"clip"`
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
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
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
	case s.Strategy != "fedavg":
		return bad("strategy", fmt.Sprintf("%q", s.Strategy), `want "fedavg"`)
	case s.SecureAggregation.Mode != "" && s.SecureAggregation.Mode != "none":
		return bad("secure_aggregation.mode", fmt.Sprintf("%q", s.SecureAggregation.Mode), "secure aggregation is not implemented yet; leave it unset")
	case time.Duration(s.RoundDeadline) < 100*time.Millisecond || time.Duration(s.RoundDeadline) > 24*time.Hour:
		return bad("round_deadline", time.Duration(s.RoundDeadline), "want 100ms–24h")
	case !finite(s.EvaluateFraction) || s.EvaluateFraction < 0 || s.EvaluateFraction > 1:
		return bad("evaluate_fraction", s.EvaluateFraction, "want a fraction in [0, 1]")
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
			DropoutRate: s.SecureAggregation.DropoutRate, Clip: s.SecureAggregation.Clip},
		RoundDeadlineMs: uint64(time.Duration(s.RoundDeadline) / time.Millisecond), Seed: s.Seed, EvaluateFraction: s.EvaluateFraction,
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
	}
	if sa := p.SecureAggregation; sa != nil {
		s.SecureAggregation = SecureAggregation{Mode: sa.Mode, Threshold: sa.Threshold, DropoutRate: sa.DropoutRate, Clip: sa.Clip}
	}
	return s
}
