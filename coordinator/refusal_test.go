package coordinator_test

import (
	"crypto/tls"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// rawParticipant is a participant driven by the test itself over real gRPC.
type rawParticipant struct {
	name   string
	cert   tls.Certificate
	client pb.ParticipantServiceClient
	tasks  pb.ParticipantService_TasksClient
}

func connectRaw(t *testing.T, tc *coordtest.Cluster, name string) *rawParticipant {
	t.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "org-" + name})
	if err != nil {
		t.Fatal(err)
	}
	client := pb.NewParticipantServiceClient(tc.Dial(0, credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))))
	if _, err := client.Register(t.Context(), &pb.RegisterRequest{Examples: 100, Datasets: []string{"blobs"}}); err != nil {
		t.Fatal(err)
	}
	tasks, err := client.Tasks(t.Context(), &pb.TasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return &rawParticipant{name: name, cert: cert, client: client, tasks: tasks}
}

// firstRound waits until the job's first round is open and splits raws into
// its cohort and the others; task is what the first of the cohort received.
func firstRound(t *testing.T, tc *coordtest.Cluster, jobID string, raws []*rawParticipant) (cohort, others []*rawParticipant, task *pb.Task) {
	t.Helper()
	var job *state.Job
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		job, _ = tc.Leader(time.Second).FSM().Job(jobID)
		if job != nil && len(job.Rounds) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no round opened: %+v", job)
		}
	}
	for _, r := range raws {
		if slices.Contains(job.Rounds[0].Cohort, r.name) {
			cohort = append(cohort, r)
		} else {
			others = append(others, r)
		}
	}
	if len(cohort) == 0 {
		t.Fatalf("none of the test's participants is in the cohort %v", job.Rounds[0].Cohort)
	}
	task, err := cohort[0].tasks.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return cohort, others, task
}

// TestRefusals checks that each update that does not belong is refused with
// a clear gRPC status, and that the round still commits with the good ones.
func TestRefusals(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	raws := []*rawParticipant{connectRaw(t, tc, "alice"), connectRaw(t, tc, "bob"), connectRaw(t, tc, "carol")}
	admin := tc.Admin(0, "ops")
	spec := state.JobSpecFromProto(blobsJob(1))
	spec.ParticipantsPerRound, spec.MinParticipants, spec.EvaluateFraction = 2, 2, 0
	spec.RoundDeadline = state.Duration(time.Minute)
	waitConnected(t, admin, 3) // all three streams registered: the cohort is 2 of 3
	resp, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: spec.ToProto()})
	if err != nil {
		t.Fatal(err)
	}

	cohort, others, task := firstRound(t, tc, resp.JobId, raws)
	outsider := others[0]
	params := 8*3 + 3
	header := func() *pb.UpdateHeader {
		return &pb.UpdateHeader{JobId: resp.JobId, Round: 1, Attempt: 1, BaseModelDigest: task.BaseModelDigest, NumParams: uint64(params), Examples: 100}
	}
	good := make([]float32, params)
	for i := range good {
		good[i] = 0.01
	}
	nan := slices.Clone(good)
	nan[5] = float32(math.NaN())

	cases := []struct {
		name  string
		from  *rawParticipant
		hdr   func(*pb.UpdateHeader)
		delta []float32
		want  codes.Code
	}{
		{"participant outside the cohort", outsider, nil, good, codes.PermissionDenied},
		{"update for another round", cohort[0], func(h *pb.UpdateHeader) { h.Round = 2 }, good, codes.FailedPrecondition},
		{"update from another base model", cohort[0], func(h *pb.UpdateHeader) { h.BaseModelDigest = "sha256:00" }, good, codes.FailedPrecondition},
		{"update for an unknown job", cohort[0], func(h *pb.UpdateHeader) { h.JobId = "job-nope" }, good, codes.NotFound},
		{"header with the wrong length", cohort[0], func(h *pb.UpdateHeader) { h.NumParams = 5 }, good, codes.InvalidArgument},
		{"fewer values than the model has", cohort[0], nil, good[:10], codes.InvalidArgument},
		{"more values than the model has", cohort[0], nil, append(slices.Clone(good), 1), codes.InvalidArgument},
		{"update containing NaN", cohort[0], nil, nan, codes.InvalidArgument},
		{"first good update", cohort[0], nil, good, codes.OK},
		{"second update from the same participant", cohort[0], nil, good, codes.AlreadyExists},
	}
	for _, c := range cases {
		h := header()
		if c.hdr != nil {
			c.hdr(h)
		}
		err := participant.Upload(t.Context(), c.from.client, h, c.delta)
		if got := status.Code(err); got != c.want {
			t.Errorf("%s: got %v (%v); want %v", c.name, got, err, c.want)
		} else if err != nil && len(status.Convert(err).Message()) < 10 {
			t.Errorf("%s: status message %q explains nothing", c.name, status.Convert(err).Message())
		}
	}

	// Connections the federation does not trust never get that far.
	addr := tc.Addrs()[0]
	other, _ := pki.NewCA("elsewhere")
	foreign, _ := other.Issue(pki.Identity{Role: pki.RoleParticipant, Name: "mallory", Organization: "x"})
	creds := map[string]credentials.TransportCredentials{
		"no client certificate":          credentials.NewTLS(&tls.Config{RootCAs: tc.CA.Pool(), MinVersion: tls.VersionTLS13}),
		"certificate from another CA":    credentials.NewTLS(pki.ClientTLS(foreign, tc.CA.Pool())),
		"server not trusted by a client": credentials.NewTLS(pki.ClientTLS(foreign, other.Pool())),
	}
	for name, cr := range creds {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(cr))
		if err != nil {
			t.Fatal(err)
		}
		_, err = pb.NewParticipantServiceClient(conn).Register(t.Context(), &pb.RegisterRequest{})
		conn.Close()
		if code := status.Code(err); code != codes.Unavailable && code != codes.Unauthenticated {
			t.Errorf("%s: got %v (%v); want the connection refused", name, code, err)
		}
	}
	// A participant may not act as an administrator.
	asAdmin := pb.NewAdminServiceClient(tc.Dial(0, tc.Credentials(pki.RoleParticipant, "eve")))
	if _, err := asAdmin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: blobsJob(1)}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("participant submitting a job: got %v; want PermissionDenied", err)
	}
	// A bad job spec is refused and names the field.
	bad := blobsJob(1)
	bad.LearningRate = -1
	if _, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "learning_rate") {
		t.Errorf("negative learning rate: got %v; want InvalidArgument", err)
	}

	// The job is unharmed: the second cohort member's update commits the round.
	if err := participant.Upload(t.Context(), cohort[1].client, header(), good); err != nil {
		t.Fatalf("second cohort member: %v", err)
	}
	tc.WaitCommitted(resp.JobId, 1, 5*time.Second)
	job, _ := tc.Leader(time.Second).FSM().Job(resp.JobId)
	got := job.Rounds[len(job.Rounds)-1].Contributors
	want := []string{cohort[0].name, cohort[1].name}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("round 1 contributors %v; want %v", got, want)
	}
	tc.CheckInvariants()
}
