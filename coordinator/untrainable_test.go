package coordinator_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// registerHolding registers a participant holding dataset with the given
// shape, without opening a task stream.
func registerHolding(t *testing.T, tc *coordtest.Cluster, name, dataset string, features, classes uint32) {
	t.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "org-" + name})
	if err != nil {
		t.Fatal(err)
	}
	client := pb.NewParticipantServiceClient(tc.Dial(0, credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))))
	_, err = client.Register(t.Context(), &pb.RegisterRequest{Examples: 600, Datasets: []string{dataset},
		Holdings: []*pb.DatasetShape{{Name: dataset, Features: features, Classes: classes}}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSubmitRefusesAJobNoParticipantCanTrain: once participants have
// registered what they hold, a job whose dataset nobody holds, or whose
// model fits nobody's data, is refused at submission with a message naming
// the model's sizes and what the participants hold. A job accepted while
// nobody was registered fails, with the same explanation, once the
// registered participants show that nobody holds its dataset.
func TestSubmitRefusesAJobNoParticipantCanTrain(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	admin := tc.Admin(0, "ops")
	job := func(modelSpec, dataset string) *pb.JobSpec {
		spec := state.DefaultJobSpec()
		spec.Model, spec.Dataset = modelSpec, dataset
		return spec.ToProto()
	}
	early := submit(t, admin, job("logreg:784-10", "cifar10")) // nobody registered: accepted, and waits
	for _, name := range []string{"site-1", "site-2", "site-3"} {
		registerHolding(t, tc, name, "mnist", 784, 10)
	}
	cases := []struct {
		name  string
		spec  *pb.JobSpec
		code  codes.Code
		wants []string
	}{
		{"dataset nobody holds", job("logreg:784-10", "cifar10"), codes.InvalidArgument,
			[]string{"dataset cifar10: no registered participant holds it", "they hold mnist with 784 features and 10 classes: site-1, site-2, site-3"}},
		{"model input fits nobody's data", job("logreg:12-2", "mnist"), codes.InvalidArgument,
			[]string{"model logreg:12-2 takes 12 features and 2 classes", "no registered participant holds mnist data of that shape", "784 features and 10 classes"}},
		{"model output fits nobody's data", job("mlp:784-20-3", "mnist"), codes.InvalidArgument, []string{"takes 784 features and 3 classes"}},
		{"a model that fits", job("mlp:784-20-10", "mnist"), codes.OK, nil},
	}
	for _, c := range cases {
		_, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: c.spec})
		if got := status.Code(err); got != c.code {
			t.Errorf("%s: got %v (%v); want %v", c.name, got, err, c.code)
			continue
		}
		for _, w := range c.wants {
			if !strings.Contains(status.Convert(err).Message(), w) {
				t.Errorf("%s: %q does not say %q", c.name, status.Convert(err).Message(), w)
			}
		}
	}
	ps, err := admin.ListParticipants(t.Context(), &pb.ListParticipantsRequest{})
	if err != nil || len(ps.Participants) != 3 || len(ps.Participants[0].Datasets) != 1 || ps.Participants[0].Datasets[0].Features != 784 {
		t.Errorf("participants %v (%v); want three holding mnist with 784 features", ps.GetParticipants(), err)
	}
	j := tc.WaitJob(early, 10*time.Second)
	if j.Status != pb.JobStatus_JOB_STATUS_FAILED || !strings.Contains(j.Reason, "dataset cifar10: no registered participant holds it") {
		t.Errorf("the job accepted before anyone registered ended %v: %q; want FAILED naming cifar10", j.Status, j.Reason)
	}
	tc.CheckInvariants()
}

// TestReportTaskFailure: cohort members that cannot train say why; the
// round stops waiting for them and aborts at once with their reasons, and
// after max_attempts the job fails with them. Reports are bounded: only a
// cohort member of the open attempt may report, once, and its reason is
// cut and cleaned before anyone sees it.
func TestReportTaskFailure(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	raws := []*rawParticipant{connectRaw(t, tc, "alice"), connectRaw(t, tc, "bob"), connectRaw(t, tc, "carol")}
	admin := tc.Admin(0, "ops")
	spec := state.JobSpecFromProto(blobsJob(3))
	spec.ParticipantsPerRound, spec.MinParticipants, spec.EvaluateFraction, spec.MaxAttempts = 2, 2, 0, 2
	spec.RoundDeadline = state.Duration(time.Minute) // the test ends long before: aborts come from the reports
	waitConnected(t, admin, 3)
	id := submit(t, admin, spec.ToProto())
	cohort, others, task := firstRound(t, tc, id, raws)
	report := func(from *rawParticipant, round, attempt uint32, reason string) error {
		_, err := from.client.ReportTaskFailure(t.Context(), &pb.ReportTaskFailureRequest{JobId: id, Round: round, Attempt: attempt,
			Kind: pb.TaskKind_TASK_KIND_TRAIN, Reason: reason})
		return err
	}
	hostile := "shape mismatch: dataset has 8 features\n\x1b[2J" + strings.Repeat("and more ", 100)
	cases := []struct {
		name   string
		from   *rawParticipant
		round  uint32
		reason string
		want   codes.Code
	}{
		{"a participant outside the cohort", others[0], 1, "nope", codes.PermissionDenied},
		{"a report for another round", cohort[0], 2, "nope", codes.FailedPrecondition},
		{"a long reason with control characters", cohort[0], 1, hostile, codes.OK},
		{"the same report again", cohort[0], 1, "again", codes.OK},
	}
	for _, c := range cases {
		if got := status.Code(report(c.from, c.round, task.Attempt, c.reason)); got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, got, c.want)
		}
	}
	// Nothing is trained yet: the latest model is refused, not the
	// initial one served in its place (a server stream's error comes with
	// its first message).
	stream, err := admin.PullModel(t.Context(), &pb.PullModelRequest{JobId: id, Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "round 0") {
		t.Errorf("pulling the latest model of a job with no committed round: %v; want FailedPrecondition pointing at round 0", err)
	}

	// The second member's report closes the attempt at once.
	if err := report(cohort[1], 1, task.Attempt, "local training: out of memory"); err != nil {
		t.Fatal(err)
	}
	var job *state.Job
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		job, _ = tc.Leader(time.Second).FSM().Job(id)
		if job.Rounds[0].Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempt 1 still %v after both cohort members reported", job.Rounds[0].Status)
		}
	}
	abort := job.Rounds[0].Reason
	for _, w := range []string{"no update arrived", "participants refused", cohort[0].name + ": shape mismatch: dataset has 8 features [2Jand more", cohort[1].name + ": local training: out of memory"} {
		if !strings.Contains(abort, w) {
			t.Errorf("abort reason %q does not say %q", abort, w)
		}
	}
	if len(job.Failures) != 2 {
		t.Fatalf("failures %+v; want one for each cohort member", job.Failures)
	}
	for _, f := range job.Failures {
		if len(f.Reason) > 200 || strings.ContainsAny(f.Reason, "\n\x1b") || f.Round != 1 || f.Attempt != task.Attempt || f.Task != "train" {
			t.Errorf("failure %+v; want round 1's, at most 200 bytes, without control characters", f)
		}
	}

	// Attempt 2: its cohort reports too, and the job fails (max_attempts 2)
	// with the participants' reasons.
	rec := waitOpenRound(t, tc, id)
	for _, r := range raws {
		for _, member := range rec.Cohort {
			if member == r.name {
				if err := report(r, 1, rec.Attempt, "shape mismatch: dataset has 8 features"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	job = tc.WaitJob(id, 10*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_FAILED || !strings.Contains(job.Reason, "round 1 aborted 2 times in a row (max_attempts 2)") ||
		!strings.Contains(job.Reason, "shape mismatch: dataset has 8 features") {
		t.Errorf("job ended %v: %q; want FAILED with the participants' reason", job.Status, job.Reason)
	}
	shown, err := admin.GetJob(t.Context(), &pb.GetJobRequest{JobId: id})
	if err != nil || len(shown.TaskFailures) < 2 {
		t.Errorf("job show's task failures: %v (%v)", shown.GetTaskFailures(), err)
	}
	tc.CheckInvariants()
}

// TestJobFailsWithTheParticipantsReasons: a job accepted before its
// participants registered, whose model does not fit their data, does not
// run for ever: the participants say why they cannot train it, each attempt
// aborts as soon as they have, and after max_attempts the job fails with
// their reason, with secure aggregation or without. The participants
// connect to any of three coordinators (followers forward the reports).
func TestJobFailsWithTheParticipantsReasons(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	admin := tc.Admin(0, "ops")
	plain := state.JobSpecFromProto(blobsJob(5))
	plain.Name, plain.Model, plain.MaxAttempts = "plain", "logreg:5-3", 3
	plain.RoundDeadline = state.Duration(time.Minute)
	secure := state.JobSpecFromProto(secureBlobsJob(5, 3, "secagg+"))
	secure.Name, secure.Model, secure.MaxAttempts = "secure", "logreg:5-3", 3
	ids := map[string]string{"plain": submit(t, admin, plain.ToProto()), "secure": submit(t, admin, secure.ToProto())}
	start := time.Now()
	startFleet(t, tc, 4, fleetHooks{}) // blobs: 8 features, 3 classes
	for name, id := range ids {
		job := tc.WaitJob(id, 50*time.Second)
		if job.Status != pb.JobStatus_JOB_STATUS_FAILED {
			t.Errorf("%s: job %v (%s) after %v; want FAILED", name, job.Status, job.Reason, time.Since(start))
			continue
		}
		for _, w := range []string{"round 1 aborted 3 times in a row", "participants refused",
			"shape mismatch: dataset has 8 features and 3 classes; model logreg:5-3 wants 5 and 3"} {
			if !strings.Contains(job.Reason, w) {
				t.Errorf("%s: reason %q does not say %q", name, job.Reason, w)
			}
		}
		t.Logf("%s: %s", name, job.Reason)
		if len(job.Failures) == 0 {
			t.Errorf("%s: no task failure recorded", name)
		}
	}
	// Three attempts of two jobs, each with a one-minute deadline: only
	// the participants' reports can have closed them this soon.
	if took := time.Since(start); took > 45*time.Second {
		t.Errorf("the jobs took %v to fail; want the attempts closed by the reports, not their deadlines", took)
	}
	tc.WaitConverged(10 * time.Second)
	tc.CheckInvariants()
}
