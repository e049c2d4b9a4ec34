package participant

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ReportEvaluation accepts every evaluation report.
func (f *fakeCoordinator) ReportEvaluation(context.Context, *pb.ReportEvaluationRequest) (*pb.ReportEvaluationResponse, error) {
	return &pb.ReportEvaluationResponse{}, nil
}

// logLines decodes a JSON log, one record a line.
func logLines(t *testing.T, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(text) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestParticipantLogsEachTask: at info level, a participant says when it
// registered, and for each task that it was received, then trained (epochs,
// examples, loss, time), uploaded (bytes, time) or evaluated (accuracy,
// time); a refusal and a failure are warnings with the reason.
func TestParticipantLogsEachTask(t *testing.T) {
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
	task := func(kind pb.TaskKind, job, org, modelSpec string) *pb.Task {
		return &pb.Task{Kind: kind, JobId: job, Round: 3, Attempt: 2, Model: modelSpec, Dataset: "toy", BaseModelDigest: protocol.Digest(blob),
			LocalEpochs: 2, BatchSize: 2, LearningRate: 0.1, JobOrganization: org, JobRounds: 10}
	}
	fake := &fakeCoordinator{model: blob, tasks: []*pb.Task{
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-a", "orgA", "logreg:2-2"),
		task(pb.TaskKind_TASK_KIND_EVALUATE, "job-a", "orgA", "logreg:2-2"),
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-c", "orgC", "logreg:2-2"),
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-wide", "orgA", "logreg:12-2"),
	}}
	logs := new(logBuffer)
	runParticipant(t, serve(t, fake, coord, ca.Pool()), site, ca.Pool(), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		c.Validation = &model.Dataset{X: []float32{0, 1, 1, 0}, Y: []int32{0, 1}, Features: 2, Classes: 2}
		c.Policy = &Policy{Organizations: []string{"orgA"}}
	})
	// Tasks run in order: the last one's failure comes after the others.
	waitFor(t, "the last task's failure in the log", func() bool { return strings.Contains(logs.String(), `"msg":"task failed"`) })

	// find returns the first record with msg (and job, if not "").
	recs := logLines(t, logs.String())
	find := func(msg, job string) map[string]any {
		for _, r := range recs {
			if r["msg"] == msg && (job == "" || r["job"] == job) {
				return r
			}
		}
		t.Errorf("no %q log line for job %q in:\n%s", msg, job, logs.String())
		return nil
	}
	has := func(r map[string]any, level string, attrs ...string) {
		t.Helper()
		if r == nil {
			return
		}
		if r["level"] != level {
			t.Errorf("%q at level %v; want %s", r["msg"], r["level"], level)
		}
		for _, a := range attrs {
			if _, ok := r[a]; !ok {
				t.Errorf("%q has no %s: %v", r["msg"], a, r)
			}
		}
	}
	has(find("registered", ""), "INFO", "coordinator", "participant", "examples")
	received := find("task received", "job-a")
	has(received, "INFO", "job", "round", "attempt", "kind")
	if received != nil && (received["round"] != 3.0 || received["attempt"] != 2.0 || received["kind"] != "train") {
		t.Errorf("task received %v; want round 3, attempt 2, kind train", received)
	}
	trained := find("trained", "job-a")
	has(trained, "INFO", "epochs", "of", "examples", "loss", "seconds")
	if trained != nil && (trained["epochs"] != 2.0 || trained["examples"] != 4.0) {
		t.Errorf("trained %v; want 2 epochs of 4 examples", trained)
	}
	uploaded := find("uploaded", "job-a")
	has(uploaded, "INFO", "bytes", "seconds")
	if uploaded != nil && uploaded["bytes"] != float64(len(blob)) {
		t.Errorf("uploaded %v bytes; want %d", uploaded["bytes"], len(blob))
	}
	evaluated := find("evaluated", "job-a")
	has(evaluated, "INFO", "accuracy", "examples", "seconds")
	if evaluated != nil && evaluated["kind"] != "evaluate" {
		t.Errorf("evaluated %v; want kind evaluate", evaluated)
	}
	refused := find("site policy refuses job", "job-c")
	has(refused, "WARN", "reason")
	failed := find("task failed", "job-wide")
	has(failed, "WARN", "err", "seconds")
	if failed != nil && !strings.Contains(failed["err"].(string), "shape mismatch") {
		t.Errorf("task failed with %v; want the shape mismatch", failed["err"])
	}
	for _, r := range recs {
		if r["job"] == "job-c" && r["msg"] == "trained" {
			t.Errorf("the refused job trained: %v", r)
		}
	}
}
