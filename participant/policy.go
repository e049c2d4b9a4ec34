package participant

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ErrRefused marks an error from Policy.Check: the site's policy refuses
// the task's job. Its text is the reason, as sent to the coordinators.
var ErrRefused = errors.New("refused by the site's policy")

// Secure aggregation modes, weakest first: "none" masks nothing,
// "secagg+" masks between neighbours on a sparse graph, "secagg" between
// every pair of the cohort.
var secureAggregationModes = []string{"none", "secagg+", "secagg"}

// Policy is a site's own rules for the jobs it takes part in (what NVIDIA
// FLARE calls federated authorization), enforced where the data is: a
// participant refuses the tasks of any job its policy does not accept,
// whatever the federation approved. The zero Policy, like a nil *Policy,
// accepts every job.
//
// On disk it is a YAML file (see LoadPolicy):
//
//	organizations: [charite, aphp]     # jobs submitted by these organisations only (empty: any)
//	models: ["mlp:784-*", "logreg:*"]  # accepted model specs, path.Match globs (empty: any)
//	min_secure_aggregation: secagg+    # none < secagg+ < secagg
//	max_rounds: 200                    # refuse jobs with more rounds (0: no limit)
//	min_dp_noise_multiplier: 1.0       # train only for jobs with differential privacy of at least this z
type Policy struct {
	// Organizations are the organisations whose jobs the site accepts
	// (empty: any).
	Organizations []string `yaml:"organizations"`
	// Models are path.Match patterns of the model specs the site accepts,
	// such as "mlp:784-*" (empty: any).
	Models []string `yaml:"models"`
	// MinSecureAggregation is the weakest secure aggregation the site
	// accepts: "" or "none" (any), "secagg+" or "secagg".
	MinSecureAggregation string `yaml:"min_secure_aggregation"`
	// MaxRounds is the most rounds a job may have (0: no limit).
	MaxRounds uint32 `yaml:"max_rounds"`
	// MinDPNoiseMultiplier, when positive, refuses to train for a job
	// without differential privacy of at least this noise multiplier. With
	// distributed DP the site adds that noise itself; with central DP it
	// relies on the leader.
	MinDPNoiseMultiplier float64 `yaml:"min_dp_noise_multiplier"`
}

// LoadPolicy reads and validates a site policy file. Its errors name the
// file and, where one is to blame, the field.
func LoadPolicy(file string) (*Policy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("site policy: %w", err)
	}
	p, err := parsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("site policy %s: %w", file, err)
	}
	return p, nil
}

// policyFile is a policy file's fields before decoding, to name the field
// whose value does not decode.
type policyFile struct {
	Organizations        yaml.Node `yaml:"organizations"`
	Models               yaml.Node `yaml:"models"`
	MinSecureAggregation yaml.Node `yaml:"min_secure_aggregation"`
	MaxRounds            yaml.Node `yaml:"max_rounds"`
	MinDPNoiseMultiplier yaml.Node `yaml:"min_dp_noise_multiplier"`
}

// parsePolicy decodes a policy's YAML, field by field so that a value of
// the wrong type is reported under its field's name, and validates it.
func parsePolicy(b []byte) (*Policy, error) {
	var raw policyFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty; write {} for a policy that accepts every job")
	} else if te := (*yaml.TypeError)(nil); errors.As(err, &te) {
		return nil, fmt.Errorf("%w (a policy's fields are organizations, models, min_secure_aggregation, max_rounds and min_dp_noise_multiplier)", err)
	} else if err != nil {
		return nil, err
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("the file holds more than one YAML document")
	}
	p := new(Policy)
	for _, f := range []struct {
		name string
		node *yaml.Node
		into any
	}{
		{"organizations", &raw.Organizations, &p.Organizations},
		{"models", &raw.Models, &p.Models},
		{"min_secure_aggregation", &raw.MinSecureAggregation, &p.MinSecureAggregation},
		{"max_rounds", &raw.MaxRounds, &p.MaxRounds},
		{"min_dp_noise_multiplier", &raw.MinDPNoiseMultiplier, &p.MinDPNoiseMultiplier},
	} {
		if f.node.Kind == 0 {
			continue // absent
		}
		if err := f.node.Decode(f.into); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Validate reports the first setting that is not valid, naming its field.
func (p *Policy) Validate() error {
	for i, o := range p.Organizations {
		if strings.TrimSpace(o) == "" {
			return fmt.Errorf("organizations[%d]: empty organisation name", i)
		}
	}
	for i, m := range p.Models {
		if strings.TrimSpace(m) == "" {
			return fmt.Errorf("models[%d]: empty pattern", i)
		}
		if _, err := path.Match(m, ""); err != nil {
			return fmt.Errorf("models[%d] %q: %w", i, m, err)
		}
	}
	if p.MinSecureAggregation != "" && !slices.Contains(secureAggregationModes, p.MinSecureAggregation) {
		return fmt.Errorf("min_secure_aggregation %q: want none, secagg+ or secagg", p.MinSecureAggregation)
	}
	if z := p.MinDPNoiseMultiplier; !(z >= 0 && z <= 1000) {
		return fmt.Errorf("min_dp_noise_multiplier %v: want 0 (no requirement) to 1000", z)
	}
	return nil
}

// refusal is Check's error: its text is the reason, and it is ErrRefused.
type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrRefused }

// Check returns nil if the policy accepts the job a task belongs to, and
// otherwise an error wrapping ErrRefused whose text is the reason, for the
// coordinators' record. A nil policy accepts everything.
func (p *Policy) Check(t *pb.Task) error {
	if p == nil {
		return nil
	}
	if org := t.GetJobOrganization(); len(p.Organizations) > 0 && !slices.Contains(p.Organizations, org) {
		return refusal(fmt.Sprintf("organisation %q is not accepted by this site (accepts %s)", org, strings.Join(p.Organizations, ", ")))
	}
	if len(p.Models) > 0 && !slices.ContainsFunc(p.Models, func(glob string) bool {
		ok, _ := path.Match(glob, t.GetModel()) // Validate checked the pattern
		return ok
	}) {
		return refusal(fmt.Sprintf("model %q is not accepted by this site (accepts %s)", t.GetModel(), strings.Join(p.Models, ", ")))
	}
	mode := t.GetSecureAggregation()
	if mode == "" {
		mode = "none"
	}
	rank := slices.Index(secureAggregationModes, mode)
	if rank < 0 {
		return refusal(fmt.Sprintf("secure aggregation %q is unknown to this site", t.GetSecureAggregation()))
	}
	if p.MinSecureAggregation != "" && rank < slices.Index(secureAggregationModes, p.MinSecureAggregation) {
		return refusal(fmt.Sprintf("secure aggregation %q is weaker than this site's minimum, %q", mode, p.MinSecureAggregation))
	}
	// A training task must carry what the mode it claims needs: a
	// coordinator that names a mode and sends no masking parameters would
	// get this site's update unmasked.
	if st := t.GetSecagg(); t.GetKind() == pb.TaskKind_TASK_KIND_TRAIN && mode != "none" {
		switch {
		case st == nil:
			return refusal(fmt.Sprintf("the task claims secure aggregation %q but carries no masking parameters", mode))
		case mode == "secagg" && st.GetDegree()+1 != st.GetN():
			return refusal(fmt.Sprintf("the task claims secure aggregation %q (every pair masks) but its graph has degree %d for %d clients", mode, st.GetDegree(), st.GetN()))
		}
	}
	if z := p.MinDPNoiseMultiplier; z > 0 && t.GetKind() == pb.TaskKind_TASK_KIND_TRAIN {
		switch d := t.GetDp(); {
		case d == nil:
			return refusal(fmt.Sprintf("the job has no differential privacy; this site trains only with a noise multiplier of at least %g", z))
		case !(d.GetNoiseMultiplier() >= z):
			return refusal(fmt.Sprintf("the job's %s differential privacy has noise multiplier %g, below this site's minimum %g", d.GetMode(), d.GetNoiseMultiplier(), z))
		case d.GetMode() == "central" && t.GetSecagg() != nil, d.GetMode() == "distributed" && t.GetSecagg() == nil,
			d.GetMode() != "central" && d.GetMode() != "distributed":
			return refusal(fmt.Sprintf("the task's %q differential privacy does not match its secure aggregation", d.GetMode()))
		}
	}
	if p.MaxRounds > 0 && t.GetJobRounds() > p.MaxRounds {
		return refusal(fmt.Sprintf("the job's %d rounds exceed this site's limit of %d", t.GetJobRounds(), p.MaxRounds))
	}
	return nil
}
