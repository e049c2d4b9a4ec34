package scenarios

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/accord-fl/accord/coordinator"
)

// DemoYAML is the scenario `accord demo` and `make demo` run.
//
//go:embed demo.yaml
var DemoYAML []byte

// Scenario is a scenario file.
type Scenario struct {
	Name         string               `yaml:"name"`
	Description  string               `yaml:"description"`
	Coordinators []CoordinatorSpec    `yaml:"coordinators"`
	Participants ParticipantsSpec     `yaml:"participants"`
	Job          coordinator.JobSpec  `yaml:"job"`
	Faults       []Fault              `yaml:"faults"`
	Timeout      coordinator.Duration `yaml:"timeout"`
}

// CoordinatorSpec names one coordinator and the organisation running it.
type CoordinatorSpec struct {
	Name         string `yaml:"name"`
	Organization string `yaml:"organization"`
}

// ParticipantsSpec says who takes part and how the data is split.
type ParticipantsSpec struct {
	// Groups are sets of participants in one region (country), each
	// institution named Prefix-N with its own organisation.
	Groups []GroupSpec `yaml:"groups"`
	Data   DataSpec    `yaml:"data"`
}

// GroupSpec is Count participants in Region.
type GroupSpec struct {
	Region string `yaml:"region"`
	Prefix string `yaml:"prefix"`
	Count  int    `yaml:"count"`
}

// DataSpec is how the dataset is split among participants.
type DataSpec struct {
	// Dataset is "mnist" or "synthetic".
	Dataset string `yaml:"dataset"`
	// Partition is "iid", "pathological" or "dirichlet" (MNIST).
	Partition string `yaml:"partition"`
	// ExamplesPerParticipant caps each participant's training examples (iid).
	ExamplesPerParticipant int `yaml:"examples_per_participant"`
	// Alpha is the Dirichlet concentration.
	Alpha float64 `yaml:"alpha"`
	// Seed fixes the split.
	Seed uint64 `yaml:"seed"`
}

// Fault kinds.
const (
	// FaultDropAfterTraining: a fraction of the round's cohort (chosen by
	// hash) trains but never uploads.
	FaultDropAfterTraining = "drop_after_training"
	// FaultKillAfterShareKeys: fraction × participants_per_round of the
	// round's cohort are killed (their daemons stop for good) right after
	// sending their encrypted key shares.
	FaultKillAfterShareKeys = "kill_after_share_keys"
	// FaultSignFlip: round(fraction × participants) participants (chosen by
	// hash, from region's if it is set) are Byzantine for the whole job:
	// every update they send is −scale times the one they trained.
	FaultSignFlip = "sign_flip"
)

// Fault is something done to the federation during the run.
type Fault struct {
	// Kind is FaultDropAfterTraining or FaultKillAfterShareKeys.
	Kind string `yaml:"kind"`
	// Round is the round it happens in.
	Round uint32 `yaml:"round"`
	// Fraction of the cohort affected (of all participants for sign_flip).
	Fraction float64 `yaml:"fraction"`
	// Scale is sign_flip's factor (0: 10).
	Scale float64 `yaml:"scale"`
	// Region, for sign_flip, places the attackers in that region.
	Region string `yaml:"region"`
}

// Load reads and checks a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// Parse decodes and checks a scenario; unknown fields are errors.
func Parse(b []byte) (*Scenario, error) {
	sc := &Scenario{Job: coordinator.DefaultJobSpec()}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(sc); err != nil {
		return nil, fmt.Errorf("parsing scenario: %w", err)
	}
	return sc, sc.Validate()
}

// ParticipantCount is the total number of participants.
func (s *Scenario) ParticipantCount() int {
	n := 0
	for _, g := range s.Participants.Groups {
		n += g.Count
	}
	return n
}

// Validate reports the first problem, naming the field.
func (s *Scenario) Validate() error {
	switch {
	case s.Name == "":
		return errors.New("scenario: name is empty")
	case len(s.Coordinators) == 0:
		return errors.New("scenario: coordinators: list at least one")
	case len(s.Coordinators) > 7:
		return errors.New("scenario: coordinators: at most 7")
	case s.ParticipantCount() < 1:
		return errors.New("scenario: participants.groups: no participants")
	case s.Participants.Data.Dataset != "mnist":
		return fmt.Errorf("scenario: participants.data.dataset %q: only mnist is supported", s.Participants.Data.Dataset)
	}
	for i, g := range s.Participants.Groups {
		if g.Count < 0 || g.Count > 10_000 || g.Prefix == "" {
			return fmt.Errorf("scenario: participants.groups[%d]: want a prefix and a count in 0–10000", i)
		}
	}
	switch s.Participants.Data.Partition {
	case "iid", "pathological", "dirichlet":
	default:
		return fmt.Errorf("scenario: participants.data.partition %q: want iid, pathological or dirichlet", s.Participants.Data.Partition)
	}
	for i, f := range s.Faults {
		if f.Kind == FaultSignFlip {
			if f.Fraction <= 0 || f.Fraction >= 1 || f.Scale < 0 || math.IsNaN(f.Scale) || math.IsInf(f.Scale, 0) || f.Round != 0 {
				return fmt.Errorf("scenario: faults[%d]: %s wants a fraction in (0, 1), a scale ≥ 0 (0: 10) and no round (it lasts the whole job)", i, f.Kind)
			}
			if f.Region != "" && !slices.ContainsFunc(s.Participants.Groups, func(g GroupSpec) bool { return g.Region == f.Region }) {
				return fmt.Errorf("scenario: faults[%d]: region %q has no participants", i, f.Region)
			}
			continue
		}
		if f.Kind != FaultDropAfterTraining && f.Kind != FaultKillAfterShareKeys || f.Fraction <= 0 || f.Fraction > 1 || f.Round < 1 {
			return fmt.Errorf("scenario: faults[%d]: want kind %s, %s or %s, a round ≥ 1 and a fraction in (0, 1]", i, FaultDropAfterTraining, FaultKillAfterShareKeys, FaultSignFlip)
		}
		if f.Kind == FaultKillAfterShareKeys && (!s.Job.SecureAggregation.Enabled() || s.Job.ParticipantsPerRound == 0) {
			return fmt.Errorf("scenario: faults[%d]: %s needs a job with secure_aggregation and participants_per_round", i, f.Kind)
		}
	}
	if s.Job.Dataset != s.Participants.Data.Dataset {
		return fmt.Errorf("scenario: job.dataset %q differs from participants.data.dataset %q", s.Job.Dataset, s.Participants.Data.Dataset)
	}
	if err := s.Job.Validate(); err != nil {
		return fmt.Errorf("scenario: job: %w", err)
	}
	return nil
}
