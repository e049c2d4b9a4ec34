package participant

import (
	"strings"
	"testing"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestParticipantReportsTasksItCannotDo: a participant declares the shape
// of its data when it registers; a task whose model does not fit that data,
// or that names a dataset it does not hold, is reported to the coordinators
// with the reason, without downloading the model; a task that fits trains.
func TestParticipantReportsTasksItCannotDo(t *testing.T) {
	ca, err := pki.NewCA("fed")
	if err != nil {
		t.Fatal(err)
	}
	coord, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "coord-1", Organization: "orgA"})
	if err != nil {
		t.Fatal(err)
	}
	site, err := ca.Issue(pki.Identity{Role: pki.RoleParticipant, Name: "site-1", Organization: "orgA"})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := model.ParseSpec("logreg:2-2")
	if err != nil {
		t.Fatal(err)
	}
	blob := protocol.EncodeFloat32(model.New(spec, 1).Params)
	task := func(kind pb.TaskKind, job, modelSpec, dataset string) *pb.Task {
		return &pb.Task{Kind: kind, JobId: job, Round: 1, Attempt: 2, Model: modelSpec, Dataset: dataset, BaseModelDigest: protocol.Digest(blob),
			LocalEpochs: 1, BatchSize: 2, LearningRate: 0.1}
	}
	fake := &fakeCoordinator{model: blob, tasks: []*pb.Task{
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-wide", "logreg:12-2", "toy"),
		task(pb.TaskKind_TASK_KIND_EVALUATE, "job-classes", "mlp:2-4-5", "toy"),
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-cifar", "logreg:2-2", "cifar10"),
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-fits", "logreg:2-2", "toy"),
	}}
	runParticipant(t, serve(t, fake, coord, ca.Pool()), site, ca.Pool(), nil)
	waitFor(t, "three failure reports and one update", func() bool {
		_, _, _, updates := fake.snapshot()
		return len(fake.reported()) >= 3 && len(updates) >= 1
	})
	registers, _, downloads, updates := fake.snapshot()
	h := registers[0].GetHoldings()
	if len(h) != 1 || h[0].GetName() != "toy" || h[0].GetFeatures() != 2 || h[0].GetClasses() != 2 {
		t.Errorf("registered holdings %v; want toy with 2 features and 2 classes", h)
	}
	want := map[string]string{
		"job-wide":    "shape mismatch: dataset has 2 features and 2 classes; model logreg:12-2 wants 12 and 2",
		"job-classes": "shape mismatch: dataset has 2 features and 2 classes; model mlp:2-4-5 wants 2 and 5",
		"job-cifar":   "this site holds dataset toy, not cifar10",
	}
	for _, r := range fake.reported() {
		w, ok := want[r.GetJobId()]
		if !ok || !strings.Contains(r.GetReason(), w) || r.GetRound() != 1 || r.GetAttempt() != 2 {
			t.Errorf("reported %v; want round 1 attempt 2 of one of %v", r, want)
		}
		delete(want, r.GetJobId())
	}
	if len(want) > 0 {
		t.Errorf("no report for %v", want)
	}
	if downloads != 1 {
		t.Errorf("%d model downloads; want 1 (the fitting job's only)", downloads)
	}
	if len(updates) != 1 || updates[0].GetJobId() != "job-fits" {
		t.Errorf("updates %v; want job-fits's only", updates)
	}
}
