package participant

import (
	"strings"
	"testing"

	"github.com/accord-fl/accord/aggregate/secagg"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestDPTaskMustMatchItsMasking: a coordinator cannot have a site send a
// masked update without the distributed noise, or an unmasked one labelled
// distributed, or noise sized by a bogus multiplier.
func TestDPTaskMustMatchItsMasking(t *testing.T) {
	masked := &pb.SecAggTask{N: 5}
	cases := []struct {
		name string
		task *pb.Task
		want string // "" accepts
	}{
		{"central, plain", &pb.Task{Dp: &pb.DPTask{Mode: "central", Clip: 1, NoiseMultiplier: 1}}, ""},
		{"distributed, masked", &pb.Task{Secagg: masked, Dp: &pb.DPTask{Mode: "distributed", Clip: 1, NoiseMultiplier: 1, MinClients: 3}}, ""},
		{"central, masked", &pb.Task{Secagg: masked, Dp: &pb.DPTask{Mode: "central", Clip: 1, NoiseMultiplier: 1}}, "central noise with secure aggregation"},
		{"distributed, plain", &pb.Task{Dp: &pb.DPTask{Mode: "distributed", Clip: 1, NoiseMultiplier: 1}}, "without secure aggregation"},
		{"unknown mode", &pb.Task{Dp: &pb.DPTask{Mode: "local", Clip: 1, NoiseMultiplier: 1}}, "unknown mode"},
		{"no clip", &pb.Task{Dp: &pb.DPTask{Mode: "central", NoiseMultiplier: 1}}, "clip"},
		{"no noise", &pb.Task{Dp: &pb.DPTask{Mode: "central", Clip: 1}}, "noise multiplier"},
	}
	for _, c := range cases {
		err := checkDPTask(c.task)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want an error naming %q", c.name, err, c.want)
		}
	}
}

// TestNoSharesForASmallSum: under distributed DP a participant does not
// reveal its shares when the survivors are fewer than the sum its noise was
// sized for (a leader dropping clients to get a less noisy sum).
func TestNoSharesForASmallSum(t *testing.T) {
	p := &Participant{secure: NewSecureRounds(8)}
	task := &pb.Task{Kind: pb.TaskKind_TASK_KIND_SECAGG_UNMASK, JobId: "j", Round: 1, Attempt: 1,
		Secagg: &pb.SecAggTask{Survivors: []uint32{0, 1, 2}}}
	sr := &SecureRound{minSurvivors: 4, client: &secagg.Client{}}
	p.secure.Put(task, sr)
	err := p.secure.Step(t.Context(), nil, task)
	if err == nil || !strings.Contains(err.Error(), "not revealing shares") {
		t.Fatalf("unmasking a sum of 3 when 4 were promised: %v; want a refusal", err)
	}
	if p.secure.Items(task) != 0 || len(p.secure.rounds) != 0 || sr.client != nil {
		t.Error("the round's secrets were kept after the refusal")
	}
}
