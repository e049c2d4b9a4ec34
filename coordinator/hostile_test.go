package coordinator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// dialFrom opens a TCP connection to addr from a chosen loopback address,
// so a test can play a host other than the coordinators' 127.0.0.1.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// closedWithin reports whether the server closes c within d (reading gets
// EOF or a reset), ignoring whatever it sends first.
func closedWithin(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("still open after %v", d)
		}
		return nil // EOF, reset: closed by the server
	}
}

// flood opens n connections to addr from src and checks that all those
// past the limit a host may hold were closed at once.
func flood(src, addr string, n, limit int) ([]net.Conn, error) {
	var conns []net.Conn
	for range n {
		c, err := dialFrom(src, addr)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
	}
	closed := 0
	for _, c := range conns {
		if closedWithin(c, 20*time.Millisecond) == nil {
			closed++
		}
	}
	if closed < n-limit {
		return conns, fmt.Errorf("%d of %d closed at once; want all past the %d a host may hold", closed, n, limit)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// rawOn is a participant of dataset driven by the test over real gRPC,
// connected to node i.
func rawOn(t *testing.T, tc *coordtest.Cluster, i int, name, dataset string, examples uint64) *rawParticipant {
	t.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "org-" + name})
	if err != nil {
		t.Fatal(err)
	}
	client := pb.NewParticipantServiceClient(tc.Dial(i, credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := client.Register(t.Context(), &pb.RegisterRequest{Examples: examples, Datasets: []string{dataset}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	tasks, err := client.Tasks(t.Context(), &pb.TasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return &rawParticipant{name: name, cert: cert, client: client, tasks: tasks}
}

// nextTrainTask reads r's tasks until a training task of job arrives.
func nextTrainTask(t *testing.T, r *rawParticipant, job string) *pb.Task {
	t.Helper()
	for {
		task, err := r.tasks.Recv()
		if err != nil {
			t.Fatalf("%s's task stream: %v", r.name, err)
		}
		if task.GetKind() == pb.TaskKind_TASK_KIND_TRAIN && task.GetJobId() == job {
			return task
		}
	}
}

// TestHostileInput sends what an attacker on the internet, a hostile
// participant or a careless admin would, over real sockets to a
// three-coordinator cluster, while a job trains. Each is refused with the
// status or connection error it should get; afterwards the job commits its
// next rounds, and a second job, whose cohort is the hostile participant
// and an honest one, commits too.
func TestHostileInput(t *testing.T) {
	tc := coordtest.NewCluster(t, 3, func(c *coordinator.Config) {
		c.MetricsAddr = "127.0.0.1:0"
		c.Limits.HandshakeTimeout = time.Second
		c.Limits.MetricsReadTimeout = time.Second
		c.Limits.StreamIdleTimeout = 2 * time.Second
		c.Limits.MaxConnsPerIP = 64
		c.Limits.ParticipantBurst = 100
		c.Limits.ParticipantRate = 20
	})
	leader := tc.Leader(10 * time.Second)
	li := tc.Index(leader)
	startFleet(t, tc, 4, fleetHooks{})
	admin := tc.Admin(li, "ops")
	waitConnected(t, admin, 4)
	trainingSpec := blobsJob(1000)
	trainingSpec.EvaluateFraction = 0
	training := submit(t, admin, trainingSpec)
	tc.WaitCommitted(training, 1, 30*time.Second)

	// Job "hostile": its cohort is mallory, played here, and an honest raw
	// participant; rounds wait up to 10 s.
	mallory := rawOn(t, tc, li, "mallory", "hostile", 100)
	honest := rawOn(t, tc, li, "honest", "hostile", 100)
	outsider := rawOn(t, tc, li, "outsider", "elsewhere", 100)
	waitConnected(t, admin, 7)
	hspec := state.JobSpecFromProto(blobsJob(5))
	hspec.Name, hspec.Dataset, hspec.ParticipantsPerRound, hspec.MinParticipants, hspec.EvaluateFraction = "hostile", "hostile", 2, 1, 0
	hspec.RoundDeadline = state.Duration(10 * time.Second)
	hostile := submit(t, admin, hspec.ToProto())
	task := nextTrainTask(t, mallory, hostile)
	params := 8*3 + 3
	header := func(tk *pb.Task) *pb.UpdateHeader {
		return &pb.UpdateHeader{JobId: hostile, Round: tk.Round, Attempt: tk.Attempt, BaseModelDigest: tk.BaseModelDigest, NumParams: uint64(params), Examples: 100}
	}
	good := make([]float32, params)
	for i := range good {
		good[i] = 0.01
	}
	with := func(i int, v float32) []float32 { d := slices.Clone(good); d[i] = v; return d }
	huge := make([]float32, params)
	for i := range huge {
		huge[i] = 1e38
	}
	upload := func(from *rawParticipant, h *pb.UpdateHeader, delta []float32) error {
		return participant.Upload(t.Context(), from.client, h, delta)
	}
	wantStatus := func(err error, want codes.Code) error {
		if got := status.Code(err); got != want {
			return fmt.Errorf("got %v (%v); want %v", got, err, want)
		}
		if err != nil && len(status.Convert(err).Message()) < 10 {
			return fmt.Errorf("status message %q explains nothing", status.Convert(err).Message())
		}
		return nil
	}
	node := tc.Nodes[li]
	other, _ := pki.NewCA("elsewhere")
	foreign, _ := other.Issue(pki.Identity{Role: pki.RoleParticipant, Name: "mallory", Organization: "x"})
	grpcWith := func(cr credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(node.Addr(), grpc.WithTransportCredentials(cr))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = pb.NewParticipantServiceClient(conn).Register(ctx, &pb.RegisterRequest{})
		if c := status.Code(err); c != codes.Unavailable && c != codes.Unauthenticated {
			return fmt.Errorf("got %v (%v); want the connection refused", c, err)
		}
		return nil
	}
	garbage := func(addr string) error {
		c, err := dialFrom("127.0.0.9", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write(bytes.Repeat([]byte("\x16\x03\x01\xff\xffGARBAGE\r\n\r\n"), 64))
		return closedWithin(c, 10*time.Second)
	}
	idle := func(addr string) error {
		c, err := dialFrom("127.0.0.9", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		return closedWithin(c, 10*time.Second)
	}
	gossipAddr := node.GossipAddr()

	cases := []struct {
		name string
		run  func() error
	}{
		// Requests.
		{"oversize message", func() error {
			stream, err := mallory.client.UploadUpdate(t.Context())
			if err != nil {
				return err
			}
			stream.Send(&pb.UpdateChunk{Header: header(task), Data: make([]byte, 3<<20)})
			_, err = stream.CloseAndRecv()
			return wantStatus(err, codes.ResourceExhausted)
		}},
		{"oversize model at submit", func() error {
			s := blobsJob(1)
			s.Model = "mlp:784-65536-65536-65536-65536-65536-65536-65536-65536-10"
			_, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: s})
			return wantStatus(err, codes.InvalidArgument)
		}},
		{"10,000-layer model spec", func() error {
			s := blobsJob(1)
			s.Model = "mlp:8" + strings.Repeat("-8", 10000) + "-3"
			_, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: s})
			return wantStatus(err, codes.InvalidArgument)
		}},
		{"malformed job spec (negative learning rate)", func() error {
			s := blobsJob(1)
			s.LearningRate = -1
			_, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: s})
			return wantStatus(err, codes.InvalidArgument)
		}},
		{"unsigned admin call", func() error {
			raw := pb.NewAdminServiceClient(tc.Dial(li, credentials.NewTLS(pki.ClientTLS(tc.AdminCert("ops2", "org1"), tc.CA.Pool()))))
			_, err := raw.ListJobs(t.Context(), &pb.ListJobsRequest{})
			return wantStatus(err, codes.Unauthenticated)
		}},
		{"participant calling the admin service", func() error {
			raw := pb.NewAdminServiceClient(tc.Dial(li, credentials.NewTLS(pki.ClientTLS(mallory.cert, tc.CA.Pool()))))
			_, err := raw.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: blobsJob(1)})
			return wantStatus(err, codes.PermissionDenied)
		}},
		{"header with the wrong vector length", func() error {
			h := header(task)
			h.NumParams = 5
			return wantStatus(upload(mallory, h, good[:5]), codes.InvalidArgument)
		}},
		{"fewer values than announced", func() error { return wantStatus(upload(mallory, header(task), good[:10]), codes.InvalidArgument) }},
		{"NaN", func() error {
			return wantStatus(upload(mallory, header(task), with(3, float32(math.NaN()))), codes.InvalidArgument)
		}},
		{"+Inf", func() error {
			return wantStatus(upload(mallory, header(task), with(4, float32(math.Inf(1)))), codes.InvalidArgument)
		}},
		{"-Inf", func() error {
			return wantStatus(upload(mallory, header(task), with(5, float32(math.Inf(-1)))), codes.InvalidArgument)
		}},
		{"poisoned update (every entry 1e38)", func() error { return wantStatus(upload(mallory, header(task), huge), codes.InvalidArgument) }},
		{"update for a round not open", func() error {
			h := header(task)
			h.Round++
			return wantStatus(upload(mallory, h, good), codes.FailedPrecondition)
		}},
		{"participant outside the cohort", func() error { return wantStatus(upload(outsider, header(task), good), codes.PermissionDenied) }},
		{"update for an unknown job", func() error {
			h := header(task)
			h.JobId = "job-ffffffffffff"
			return wantStatus(upload(mallory, h, good), codes.NotFound)
		}},
		{"stream that never sends its header", func() error {
			stream, err := mallory.client.UploadUpdate(t.Context())
			if err != nil {
				return err
			}
			start := time.Now()
			// Without closing its side: wait for the server to give up.
			err = stream.RecvMsg(&pb.UploadUpdateResponse{})
			t.Logf("header-less stream ended after %v: %v", time.Since(start).Round(time.Millisecond), err)
			return wantStatus(err, codes.DeadlineExceeded)
		}},
		{"registration with an absurd region", func() error {
			_, err := mallory.client.Register(t.Context(), &pb.RegisterRequest{Region: strings.Repeat("x", 1000), Datasets: []string{"hostile"}})
			return wantStatus(err, codes.InvalidArgument)
		}},
		{"secure-aggregation message naming no round", func() error {
			_, err := mallory.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{})
			return wantStatus(err, codes.InvalidArgument)
		}},
		{"download of an unknown model", func() error {
			s, err := mallory.client.DownloadModel(t.Context(), &pb.DownloadModelRequest{Digest: "sha256:" + strings.Repeat("0", 64)})
			if err == nil {
				_, err = s.Recv()
			}
			return wantStatus(err, codes.NotFound)
		}},
		{"evaluation nobody asked for", func() error {
			_, err := mallory.client.ReportEvaluation(t.Context(), &pb.ReportEvaluationRequest{JobId: hostile, ModelRound: 1, Examples: 10, Correct: 5})
			if c := status.Code(err); c != codes.FailedPrecondition && c != codes.PermissionDenied {
				return fmt.Errorf("got %v (%v)", c, err)
			}
			return nil
		}},
		{"garbage page token", func() error {
			_, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: training, PageToken: "§§§"})
			return wantStatus(err, codes.InvalidArgument)
		}},
		{"approval of an unknown proposal", func() error {
			_, err := admin.Approve(t.Context(), &pb.ApproveRequest{ProposalId: "job-000000000000", Kind: "submit_job"})
			return wantStatus(err, codes.NotFound)
		}},
		{"crafted safetensors header (data_offsets [8,0])", func() error {
			header := []byte(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`)
			var b bytes.Buffer
			b.Write([]byte{byte(len(header)), 0, 0, 0, 0, 0, 0, 0})
			b.Write(header)
			b.Write(make([]byte, 8))
			if _, err := model.ReadSafetensors(bytes.NewReader(b.Bytes())); err == nil {
				return errors.New("accepted")
			}
			return nil
		}},
		{"the participant's first good update", func() error { return wantStatus(upload(mallory, header(task), good), codes.OK) }},
		{"duplicate submission", func() error { return wantStatus(upload(mallory, header(task), good), codes.AlreadyExists) }},
	}
	for _, c := range cases {
		if err := c.run(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	// Round 1 of the hostile job commits: with the honest participant, or
	// without it at its deadline.
	htask := nextTrainTask(t, honest, hostile)
	if err := upload(honest, header(htask), good); err != nil && status.Code(err) != codes.FailedPrecondition {
		t.Errorf("honest participant's update: %v", err)
	}
	tc.WaitCommitted(hostile, 1, 30*time.Second)
	next := nextTrainTask(t, mallory, hostile)
	if err := upload(honest, header(nextTrainTask(t, honest, hostile)), good); err != nil {
		t.Errorf("honest participant's update in round 2: %v", err)
	}
	more := []struct {
		name string
		run  func() error
	}{
		{"the previous round's update replayed", func() error { return wantStatus(upload(mallory, header(task), good), codes.FailedPrecondition) }},
		{"a slow client that never finishes its stream", func() error {
			stream, err := mallory.client.UploadUpdate(t.Context())
			if err != nil {
				return err
			}
			if err := stream.Send(&pb.UpdateChunk{Header: header(next), Data: protocol.EncodeFloat32(good[:4])}); err != nil {
				return err
			}
			start := time.Now()
			// Half a vector, and the stream left open: the server gives up
			// at the round's deadline.
			err = stream.RecvMsg(&pb.UploadUpdateResponse{})
			t.Logf("slow stream ended after %v: %v", time.Since(start).Round(time.Millisecond), err)
			return wantStatus(err, codes.DeadlineExceeded)
		}},
		{"a participant flooding calls", func() error {
			var limited int
			var wg sync.WaitGroup
			var mu sync.Mutex
			for range 300 {
				wg.Go(func() {
					_, err := outsider.client.Register(t.Context(), &pb.RegisterRequest{Examples: 100, Datasets: []string{"elsewhere"}})
					if status.Code(err) == codes.ResourceExhausted {
						mu.Lock()
						limited++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if limited == 0 {
				return errors.New("300 calls at once were all answered")
			}
			t.Logf("%d of 300 calls at once refused (ResourceExhausted)", limited)
			return nil
		}},
	}
	for _, c := range more {
		if err := c.run(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	connCases := []struct {
		name string
		run  func() error
	}{
		// The ports, from a host with no certificate.
		{"gRPC: no client certificate", func() error {
			return grpcWith(credentials.NewTLS(&tls.Config{RootCAs: tc.CA.Pool(), MinVersion: tls.VersionTLS13}))
		}},
		{"gRPC: another CA's certificate", func() error { return grpcWith(credentials.NewTLS(pki.ClientTLS(foreign, tc.CA.Pool()))) }},
		{"gRPC: garbage bytes", func() error { return garbage(node.Addr()) }},
		{"Raft: garbage bytes", func() error { return garbage(node.RaftAddr()) }},
		{"gossip (TCP): garbage bytes", func() error { return garbage(gossipAddr) }},
		{"metrics: garbage bytes", func() error { return garbage(node.MetricsAddr()) }},
		{"gossip (UDP): garbage packet", func() error {
			c, err := net.Dial("udp", gossipAddr)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write(bytes.Repeat([]byte{0xff}, 512)); err != nil {
				return err
			}
			// Ignored: the node sees every coordinator alive. On a loaded
			// machine a probe may time out on its own (loopback gossip
			// probes in 100 ms), so it waits for the members to be alive
			// rather than reading them once; a gossip layer the packet
			// broke would never show them alive again.
			var last error
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				m, err := admin.ListMembers(t.Context(), &pb.ListMembersRequest{})
				if err != nil {
					return err
				}
				last = nil
				for _, mem := range m.Members {
					if mem.GossipState != "alive" {
						last = fmt.Errorf("%s is %s after the packet", mem.Name, mem.GossipState)
					}
				}
				if last == nil {
					return nil
				}
			}
			return last
		}},
		{"gRPC: idle half-open connection", func() error { return idle(node.Addr()) }},
		{"Raft: idle half-open connection", func() error { return idle(node.RaftAddr()) }},
		{"gossip: idle half-open connection", func() error { return idle(gossipAddr) }},
		{"metrics: idle half-open connection", func() error { return idle(node.MetricsAddr()) }},
		{"Raft: 200 idle connections from one host", func() error {
			conns, err := flood("127.0.0.2", node.RaftAddr(), 200, 64)
			defer closeAll(conns)
			if err != nil {
				return err
			}
			// The others are closed once the handshake timeout passes.
			for _, c := range conns {
				if err := closedWithin(c, 10*time.Second); err != nil {
					return err
				}
			}
			return nil
		}},
		{"gRPC: connection flood from one host", func() error {
			conns, err := flood("127.0.0.3", node.Addr(), 150, 64)
			closeAll(conns)
			return err
		}},
	}
	for _, c := range connCases {
		if err := c.run(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	t.Logf("%d hostile cases", len(cases)+len(more)+len(connCases))

	// Unharmed: the training job commits more rounds, the hostile job its
	// next one, and every coordinator agrees.
	j, _ := tc.Leader(5 * time.Second).FSM().Job(training)
	tc.WaitCommitted(training, j.CommittedRounds+2, 60*time.Second)
	tc.WaitCommitted(hostile, 2, 30*time.Second)
	if j, _ := tc.Leader(5 * time.Second).FSM().Job(hostile); j.Status == pb.JobStatus_JOB_STATUS_FAILED {
		t.Fatalf("hostile job failed: %s", j.Reason)
	}
	admin.CancelJob(context.Background(), &pb.CancelJobRequest{JobId: training})
	tc.WaitConverged(20 * time.Second)
	tc.CheckInvariants()

}

// A job whose rounds keep aborting fails with the reason once one round has
// aborted max_attempts times in a row, instead of retrying for ever.
func TestJobFailsAfterMaxAttempts(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	rawOn(t, tc, 0, "silent", "blobs", 100) // connected, never uploads
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 1)
	spec := state.JobSpecFromProto(blobsJob(5))
	spec.ParticipantsPerRound, spec.MinParticipants, spec.MaxAttempts, spec.EvaluateFraction = 1, 1, 3, 0
	spec.RoundDeadline = state.Duration(200 * time.Millisecond)
	id := submit(t, admin, spec.ToProto())
	job := tc.WaitJob(id, 30*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_FAILED || !strings.Contains(job.Reason, "aborted 3 times in a row") || !strings.Contains(job.Reason, "deadline passed") {
		t.Fatalf("job %v: %q; want FAILED after 3 aborted attempts, with the last reason", job.Status, job.Reason)
	}
	t.Logf("job failed: %s", job.Reason)
}
