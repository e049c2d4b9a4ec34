package scenarios

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/accord-fl/accord/coordinator/state"
	"go.yaml.in/yaml/v3"
)

// DemoYAML is the scenario `accord demo` and `make demo` run.
//
//go:embed demo.yaml
var DemoYAML []byte

// Scenario is a scenario file.
type Scenario struct {
	Name         string            `yaml:"name"`
	Description  string            `yaml:"description"`
	Coordinators []CoordinatorSpec `yaml:"coordinators"`
	Participants ParticipantsSpec  `yaml:"participants"`
	Job          state.JobSpec     `yaml:"job"`
	Faults       []Fault           `yaml:"faults"`
	Timeout      state.Duration    `yaml:"timeout"`
	// Regions are the countries taking part, with their time zones.
	Regions []RegionSpec `yaml:"regions"`
	// Network models the links between regions (nil: loopback).
	Network *NetworkSpec `yaml:"network"`
	// RaftProfile is the coordinators' timing profile: lan (default) or
	// wan (coordinator.SetProfile).
	RaftProfile string `yaml:"raft_profile"`
	// Events is the timeline: what happens to the federation, and when.
	Events []Event `yaml:"events"`
	// Compare, "without_network", makes RunAndCompare run the scenario a
	// second time on plain loopback, for the cost of geography.
	Compare string `yaml:"compare"`
	// Serve, if set, starts an accord serve following the job and a client
	// calling it while the job runs (serve.go).
	Serve *ServeSpec `yaml:"serve"`
}

// CompareWithoutNetwork is Scenario.Compare's one value.
const CompareWithoutNetwork = "without_network"

// CoordinatorSpec names one coordinator and the organisation running it.
type CoordinatorSpec struct {
	Name         string `yaml:"name"`
	Organization string `yaml:"organization"`
	// Region is where it runs (the network model places it there).
	Region string `yaml:"region"`
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
	// Labels, if set, is the country's own label mix (MNIST): its
	// institutions hold examples of these labels only.
	Labels []int32 `yaml:"labels"`
	// Examples, if set, is [min, max]: each institution of the group holds
	// a size drawn log-uniformly between them (one value: all that size),
	// so sizes differ by institution as they do between a clinic and a
	// university hospital.
	Examples []int `yaml:"examples"`
}

// names are the group's institutions: PREFIX-1 … PREFIX-COUNT.
func (g GroupSpec) names() []string {
	out := make([]string, g.Count)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", g.Prefix, i+1)
	}
	return out
}

// skewed reports whether the group shapes its own data.
func (g GroupSpec) skewed() bool { return len(g.Labels) > 0 || len(g.Examples) > 0 }

// DataSpec is how the dataset is split among participants.
type DataSpec struct {
	// Dataset is "mnist" or "synthetic" (FedProx's Synthetic(α,β): one
	// device per participant, 60 features, 10 classes; the job's model is
	// then logreg:60-10 or an mlp:60-…-10).
	Dataset string `yaml:"dataset"`
	// Synthetic is Synthetic(α,β)'s α (how much the devices' models
	// differ) and β (how much their inputs differ).
	Synthetic *SyntheticSpec `yaml:"synthetic"`
	// Partition is "iid", "pathological" or "dirichlet" (MNIST).
	Partition string `yaml:"partition"`
	// ExamplesPerParticipant caps each participant's training examples (iid).
	ExamplesPerParticipant int `yaml:"examples_per_participant"`
	// Alpha is the Dirichlet concentration.
	Alpha float64 `yaml:"alpha"`
	// Seed fixes the split.
	Seed uint64 `yaml:"seed"`
}

// SyntheticSpec is the Synthetic(α,β) generator's α and β.
type SyntheticSpec struct {
	Alpha float64 `yaml:"alpha"`
	Beta  float64 `yaml:"beta"`
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

// Parse decodes and checks a scenario; unknown fields are errors, and
// errors name the field and its line.
func Parse(b []byte) (*Scenario, error) {
	sc := &Scenario{Job: state.DefaultJobSpec()}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(sc); err != nil {
		return nil, fmt.Errorf("parsing scenario: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("parsing scenario: %w", err)
	}
	// A job that gives participants_fraction alone means the fraction, not
	// the default count.
	if _, given := findField(&root, "job.participants_per_round"); sc.Job.ParticipantsFraction > 0 && !given {
		sc.Job.ParticipantsPerRound = 0
	}
	if err := sc.applyServeDefaults(&root); err != nil {
		return nil, err
	}
	err := sc.Validate()
	var fe *FieldError
	if errors.As(err, &fe) {
		fe.Line = lineOf(&root, fe.Field)
	}
	return sc, err
}

// FieldError is a problem with one field of a scenario.
type FieldError struct {
	// Field is its path: "participants.groups[2].examples".
	Field string
	// Line is its line in the file (0: unknown).
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("scenario line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("scenario: %s: %s", e.Field, e.Msg)
}

func fieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// lineOf finds the line of a field path in a YAML document: the deepest
// part of the path present (a defaulted field's parent, say).
func lineOf(doc *yaml.Node, path string) int {
	line, _ := findField(doc, path)
	return line
}

// findField returns the line of the deepest part of path present in a YAML
// document, and whether the whole path is.
func findField(doc *yaml.Node, path string) (int, bool) {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			if n.Kind != yaml.MappingNode {
				return line, false
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == name {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line, false
			}
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			k, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || k < 0 || k >= len(n.Content) {
				return line, false
			}
			n = n.Content[k]
			line = n.Line
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return line, true
}

// ParticipantCount is the total number of participants.
func (s *Scenario) ParticipantCount() int {
	n := 0
	for _, g := range s.Participants.Groups {
		n += g.Count
	}
	return n
}

// Validate reports the first problem, as a *FieldError naming the field.
func (s *Scenario) Validate() error {
	switch {
	case s.Name == "":
		return fieldErrorf("name", "is empty")
	case len(s.Coordinators) == 0:
		return fieldErrorf("coordinators", "list at least one")
	case len(s.Coordinators) > 7:
		return fieldErrorf("coordinators", "at most 7")
	case s.ParticipantCount() < 1:
		return fieldErrorf("participants.groups", "no participants")
	}
	names := map[string]bool{}
	for i, c := range s.Coordinators {
		if c.Name == "" || names[c.Name] {
			return fieldErrorf(fmt.Sprintf("coordinators[%d].name", i), "want a name no other coordinator has")
		}
		names[c.Name] = true
	}
	d := s.Participants.Data
	switch {
	case d.Dataset != "mnist" && d.Dataset != "synthetic":
		return fieldErrorf("participants.data.dataset", "%q: want mnist or synthetic", d.Dataset)
	case d.Dataset == "synthetic" && (d.Synthetic == nil || !(d.Synthetic.Alpha >= 0 && d.Synthetic.Beta >= 0) || d.Synthetic.Alpha > 100 || d.Synthetic.Beta > 100):
		return fieldErrorf("participants.data.synthetic", "the synthetic dataset wants {alpha, beta}, each in [0, 100]")
	case d.Dataset != "synthetic" && d.Synthetic != nil:
		return fieldErrorf("participants.data.synthetic", "only with dataset synthetic")
	}
	for i, g := range s.Participants.Groups {
		field := fmt.Sprintf("participants.groups[%d]", i)
		switch {
		case g.Count < 0 || g.Count > 10_000 || g.Prefix == "":
			return fieldErrorf(field, "want a prefix and a count in 0–10000")
		case g.skewed() && d.Dataset != "mnist":
			return fieldErrorf(field, "labels and examples shape MNIST shards; the synthetic dataset has its own skew")
		case g.skewed() && d.Partition != "iid":
			return fieldErrorf(field, "labels and examples need participants.data.partition iid (they are the partition)")
		case len(g.Examples) > 2 || len(g.Examples) > 0 && (g.Examples[0] < 1 || g.Examples[len(g.Examples)-1] < g.Examples[0] || g.Examples[len(g.Examples)-1] > 60_000):
			return fieldErrorf(field+".examples", "%v: want [n] or [min, max] with 1 ≤ min ≤ max ≤ 60000", g.Examples)
		}
		for _, l := range g.Labels {
			if l < 0 || l > 9 {
				return fieldErrorf(field+".labels", "%d is not an MNIST label (0–9)", l)
			}
		}
	}
	switch {
	case d.Dataset == "synthetic" && d.Partition != "" && d.Partition != "iid":
		return fieldErrorf("participants.data.partition", "%q: the synthetic dataset is one device per participant (leave partition out)", d.Partition)
	case d.Dataset == "mnist" && d.Partition != "iid" && d.Partition != "pathological" && d.Partition != "dirichlet":
		return fieldErrorf("participants.data.partition", "%q: want iid, pathological or dirichlet", d.Partition)
	}
	for i, f := range s.Faults {
		field := fmt.Sprintf("faults[%d]", i)
		if f.Kind == FaultSignFlip {
			if f.Fraction <= 0 || f.Fraction >= 1 || f.Scale < 0 || math.IsNaN(f.Scale) || math.IsInf(f.Scale, 0) || f.Round != 0 {
				return fieldErrorf(field, "%s wants a fraction in (0, 1), a scale ≥ 0 (0: 10) and no round (it lasts the whole job)", f.Kind)
			}
			if f.Region != "" && !slices.ContainsFunc(s.Participants.Groups, func(g GroupSpec) bool { return g.Region == f.Region }) {
				return fieldErrorf(field+".region", "%q has no participants", f.Region)
			}
			continue
		}
		if f.Kind != FaultDropAfterTraining && f.Kind != FaultKillAfterShareKeys || f.Fraction <= 0 || f.Fraction > 1 || f.Round < 1 {
			return fieldErrorf(field, "want kind %s, %s or %s, a round ≥ 1 and a fraction in (0, 1]", FaultDropAfterTraining, FaultKillAfterShareKeys, FaultSignFlip)
		}
		if f.Kind == FaultKillAfterShareKeys && (!s.Job.SecureAggregation.Enabled() || s.Job.ParticipantsPerRound == 0) {
			return fieldErrorf(field, "%s needs a job with secure_aggregation and participants_per_round", f.Kind)
		}
	}
	if s.Job.Dataset != s.Participants.Data.Dataset {
		return fieldErrorf("job.dataset", "%q differs from participants.data.dataset %q", s.Job.Dataset, s.Participants.Data.Dataset)
	}
	if err := s.Job.Validate(); err != nil {
		return fieldErrorf("job", "%v", err)
	}
	if s.Compare != "" && (s.Compare != CompareWithoutNetwork || s.Network == nil) {
		return fieldErrorf("compare", "%q: want %s, with a network section to compare against", s.Compare, CompareWithoutNetwork)
	}
	if err := s.validateNetwork(); err != nil {
		return err
	}
	if err := s.validateServe(); err != nil {
		return err
	}
	return s.validateEvents()
}
