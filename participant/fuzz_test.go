package participant

import (
	"testing"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// FuzzParsePolicy: a site policy file. What parses validates, and checks
// a task without panicking. `make fuzz` runs it.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"organizations: [charite, aphp]\nmodels: [\"mlp:784-*\", \"logreg:*\"]\nmin_secure_aggregation: secagg+\nmax_rounds: 200\n",
		"models: [\"[\"]\n", "models: [\"\\\\\"]\n", "max_rounds: -1\n", "organizations: x\n", "{}\n---\n{}\n", "", "{}",
	} {
		f.Add([]byte(s), "mlp:784-200-10", "secagg+")
	}
	f.Fuzz(func(t *testing.T, b []byte, model, mode string) {
		p, err := parsePolicy(b)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed a policy that does not validate: %v", err)
		}
		_ = p.Check(&pb.Task{Model: model, SecureAggregation: mode, Kind: pb.TaskKind_TASK_KIND_TRAIN, JobRounds: 10,
			Secagg: &pb.SecAggTask{N: 3, Degree: 2}})
	})
}
