package participant

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func TestPolicyCheck(t *testing.T) {
	strict := &Policy{
		Organizations:        []string{"orgA", "orgB"},
		Models:               []string{"mlp:784-*", "logreg:*"},
		MinSecureAggregation: "secagg+",
		MaxRounds:            200,
	}
	ok := &pb.Task{JobOrganization: "orgA", Model: "mlp:784-200-10", SecureAggregation: "secagg+", JobRounds: 200}
	with := func(edit func(*pb.Task)) *pb.Task {
		t := &pb.Task{JobOrganization: ok.JobOrganization, Model: ok.Model, SecureAggregation: ok.SecureAggregation, JobRounds: ok.JobRounds}
		edit(t)
		return t
	}
	tests := []struct {
		name   string
		policy *Policy
		task   *pb.Task
		reason string // "" to accept
	}{
		{"nil policy accepts anything", nil, &pb.Task{JobOrganization: "x", Model: "cnn", SecureAggregation: "bogus", JobRounds: 1 << 30}, ""},
		{"empty policy accepts anything", &Policy{}, &pb.Task{JobOrganization: "x", Model: "cnn", JobRounds: 1 << 30}, ""},
		{"everything within the policy", strict, ok, ""},
		{"other organisation", strict, with(func(t *pb.Task) { t.JobOrganization = "orgC" }),
			`organisation "orgC" is not accepted by this site (accepts orgA, orgB)`},
		{"no organisation", strict, with(func(t *pb.Task) { t.JobOrganization = "" }),
			`organisation "" is not accepted by this site (accepts orgA, orgB)`},
		{"second model pattern", strict, with(func(t *pb.Task) { t.Model = "logreg:784-10" }), ""},
		{"other model", strict, with(func(t *pb.Task) { t.Model = "mlp:100-10" }),
			`model "mlp:100-10" is not accepted by this site (accepts mlp:784-*, logreg:*)`},
		{"stronger secure aggregation", strict, with(func(t *pb.Task) { t.SecureAggregation = "secagg" }), ""},
		{"no secure aggregation", strict, with(func(t *pb.Task) { t.SecureAggregation = "" }),
			`secure aggregation "none" is weaker than this site's minimum, "secagg+"`},
		{"secure aggregation none", strict, with(func(t *pb.Task) { t.SecureAggregation = "none" }),
			`secure aggregation "none" is weaker than this site's minimum, "secagg+"`},
		{"unknown secure aggregation", strict, with(func(t *pb.Task) { t.SecureAggregation = "rot13" }),
			`secure aggregation "rot13" is unknown to this site`},
		{"secagg required, secagg+ offered", &Policy{MinSecureAggregation: "secagg"}, ok,
			`secure aggregation "secagg+" is weaker than this site's minimum, "secagg"`},
		{"too many rounds", strict, with(func(t *pb.Task) { t.JobRounds = 201 }),
			`the job's 201 rounds exceed this site's limit of 200`},
		{"enough DP noise", &Policy{MinDPNoiseMultiplier: 1}, &pb.Task{Kind: pb.TaskKind_TASK_KIND_TRAIN, Secagg: &pb.SecAggTask{}, Dp: &pb.DPTask{Mode: "distributed", NoiseMultiplier: 1.1}}, ""},
		{"central DP claimed for a masked update", &Policy{MinDPNoiseMultiplier: 1}, &pb.Task{Kind: pb.TaskKind_TASK_KIND_TRAIN, Secagg: &pb.SecAggTask{}, Dp: &pb.DPTask{Mode: "central", NoiseMultiplier: 5}},
			`the task's "central" differential privacy does not match its secure aggregation`},
		{"too little DP noise", &Policy{MinDPNoiseMultiplier: 1}, &pb.Task{Kind: pb.TaskKind_TASK_KIND_TRAIN, Dp: &pb.DPTask{Mode: "central", NoiseMultiplier: 0.5}},
			"the job's central differential privacy has noise multiplier 0.5, below this site's minimum 1"},
		{"no DP", &Policy{MinDPNoiseMultiplier: 1}, &pb.Task{Kind: pb.TaskKind_TASK_KIND_TRAIN},
			"the job has no differential privacy; this site trains only with a noise multiplier of at least 1"},
		{"evaluation needs no DP", &Policy{MinDPNoiseMultiplier: 1}, &pb.Task{Kind: pb.TaskKind_TASK_KIND_EVALUATE}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.task)
			switch {
			case tt.reason == "" && err != nil:
				t.Errorf("got %v; want accepted", err)
			case tt.reason != "" && (err == nil || err.Error() != tt.reason):
				t.Errorf("got %v; want %q", err, tt.reason)
			case err != nil && !errors.Is(err, ErrRefused):
				t.Errorf("%v is not ErrRefused", err)
			}
		})
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml string
		want       *Policy
		errHas     []string // the error names the file and these
	}{
		{name: "full", yaml: "organizations: [charite, aphp]\nmodels: [\"mlp:784-*\", \"logreg:*\"]\nmin_secure_aggregation: secagg+\nmax_rounds: 200\n",
			want: &Policy{Organizations: []string{"charite", "aphp"}, Models: []string{"mlp:784-*", "logreg:*"}, MinSecureAggregation: "secagg+", MaxRounds: 200}},
		{name: "accept everything", yaml: "{}\n", want: &Policy{}},
		{name: "empty file", yaml: "", errHas: []string{"empty"}},
		{name: "unknown field", yaml: "organisations: [charite]\n", errHas: []string{"organisations"}},
		{name: "unknown mode", yaml: "min_secure_aggregation: secagg++\n", errHas: []string{"min_secure_aggregation", "secagg++"}},
		{name: "bad glob", yaml: "models: [\"mlp:[784-*\"]\n", errHas: []string{"models[0]", "syntax error in pattern"}},
		{name: "empty pattern", yaml: "models: [\"\"]\n", errHas: []string{"models[0]"}},
		{name: "empty organisation", yaml: "organizations: [a, \"\"]\n", errHas: []string{"organizations[1]"}},
		{name: "negative rounds", yaml: "max_rounds: -1\n", errHas: []string{"max_rounds"}},
		{name: "rounds not a number", yaml: "max_rounds: many\n", errHas: []string{"max_rounds"}},
		{name: "organizations not a list", yaml: "organizations: {a: b}\n", errHas: []string{"organizations"}},
		{name: "two documents", yaml: "max_rounds: 1\n---\nmax_rounds: 2\n", errHas: []string{"more than one"}},
		{name: "negative noise", yaml: "min_dp_noise_multiplier: -1\n", errHas: []string{"min_dp_noise_multiplier"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "policy"+string(rune('a'+i))+".yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := LoadPolicy(file)
			if tt.errHas == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !equalPolicy(p, tt.want) {
					t.Errorf("got %+v; want %+v", p, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v; want an error", p)
			}
			for _, s := range append([]string{file}, tt.errHas...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	if _, err := LoadPolicy(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: got %v; want an error naming it", err)
	}
}

func equalPolicy(a, b *Policy) bool {
	return strings.Join(a.Organizations, ",") == strings.Join(b.Organizations, ",") &&
		strings.Join(a.Models, ",") == strings.Join(b.Models, ",") &&
		a.MinSecureAggregation == b.MinSecureAggregation && a.MaxRounds == b.MaxRounds && a.MinDPNoiseMultiplier == b.MinDPNoiseMultiplier
}
