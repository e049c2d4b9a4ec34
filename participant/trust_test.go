package participant

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// fakeCoordinator is a ParticipantService that records what a participant
// asked of it. It streams tasks to whoever registers and serves one model.
type fakeCoordinator struct {
	pb.UnimplementedParticipantServiceServer
	tasks []*pb.Task
	model []byte // encoded parameters, served under their digest

	mu        sync.Mutex
	registers []*pb.RegisterRequest
	refusals  []*pb.RefuseTaskRequest
	failures  []*pb.ReportTaskFailureRequest
	downloads int
	updates   []*pb.UpdateHeader
}

func (f *fakeCoordinator) Register(_ context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers = append(f.registers, req)
	return &pb.RegisterResponse{ParticipantId: "p"}, nil
}

func (f *fakeCoordinator) Tasks(_ *pb.TasksRequest, stream grpc.ServerStreamingServer[pb.Task]) error {
	for _, t := range f.tasks {
		if err := stream.Send(t); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeCoordinator) DownloadModel(req *pb.DownloadModelRequest, stream grpc.ServerStreamingServer[pb.ModelChunk]) error {
	f.mu.Lock()
	f.downloads++
	f.mu.Unlock()
	if req.GetDigest() != protocol.Digest(f.model) {
		return status.Error(codes.NotFound, "no such model")
	}
	for _, ch := range protocol.Chunks(f.model) {
		if err := stream.Send(&pb.ModelChunk{Data: ch}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeCoordinator) UploadUpdate(stream grpc.ClientStreamingServer[pb.UpdateChunk, pb.UploadUpdateResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.updates = append(f.updates, first.GetHeader())
	f.mu.Unlock()
	return stream.SendAndClose(&pb.UploadUpdateResponse{})
}

func (f *fakeCoordinator) RefuseTask(_ context.Context, req *pb.RefuseTaskRequest) (*pb.RefuseTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refusals = append(f.refusals, req)
	return &pb.RefuseTaskResponse{}, nil
}

func (f *fakeCoordinator) ReportTaskFailure(_ context.Context, req *pb.ReportTaskFailureRequest) (*pb.ReportTaskFailureResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, req)
	return &pb.ReportTaskFailureResponse{}, nil
}

// reported returns a copy of the task failures f was told of.
func (f *fakeCoordinator) reported() []*pb.ReportTaskFailureRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*pb.ReportTaskFailureRequest(nil), f.failures...)
}

// snapshot returns copies of what f recorded.
func (f *fakeCoordinator) snapshot() (registers []*pb.RegisterRequest, refusals []*pb.RefuseTaskRequest, downloads int, updates []*pb.UpdateHeader) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(registers, f.registers...), append(refusals, f.refusals...), f.downloads, append(updates, f.updates...)
}

// serve runs f on 127.0.0.1 with TLS presenting cert, until the test ends.
func serve(t *testing.T, f *fakeCoordinator, cert tls.Certificate, ca *x509.CertPool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(cert, ca))))
	pb.RegisterParticipantServiceServer(s, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().String()
}

// logBuffer is an io.Writer for a test's logs, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runParticipant runs a participant of cert against addr until the test
// ends, logging at debug level into the returned buffer.
func runParticipant(t *testing.T, addr string, cert tls.Certificate, ca *x509.CertPool, edit func(*Config)) *logBuffer {
	t.Helper()
	logs := new(logBuffer)
	cfg := Config{
		Coordinators: []string{addr}, Cert: cert, CA: ca, Dataset: "toy",
		Train:      &model.Dataset{X: []float32{0, 1, 1, 0, 1, 1, 0, 0}, Y: []int32{0, 1, 1, 0}, Features: 2, Classes: 2},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return logs
}

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// craftServerCert makes, by hand and signed by the CA's key, a certificate
// naming id that allows server authentication for 127.0.0.1 whatever id's
// role, valid from notBefore for validFor.
func craftServerCert(t *testing.T, ca *pki.CA, id pki.Identity, notBefore time.Time, validFor time.Duration) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: id.Name, Organization: []string{id.Organization}, OrganizationalUnit: []string{string(id.Role)}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestParticipantRefusesServersThatAreNotCoordinators(t *testing.T) {
	ca, err := pki.NewCA("fed")
	if err != nil {
		t.Fatal(err)
	}
	site, err := ca.Issue(pki.Identity{Role: pki.RoleParticipant, Name: "site-1", Organization: "orgA"})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueWith(pki.Identity{Role: pki.RoleCoordinator, Name: "coord-old", Organization: "orgA"},
		pki.IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		server tls.Certificate
		logHas string // what the participant's connection error says
	}{
		{"participant certificate crafted to serve", craftServerCert(t, ca, pki.Identity{Role: pki.RoleParticipant, Name: "site-3", Organization: "orgC"}, time.Now().Add(-time.Hour), 2*time.Hour),
			"server site-3 is a participant, not a coordinator"},
		{"expired coordinator certificate", expired, "certificate has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeCoordinator{}
			logs := runParticipant(t, serve(t, fake, tt.server, ca.Pool()), site, ca.Pool(), nil)
			waitFor(t, "a connection error mentioning "+tt.logHas, func() bool { return strings.Contains(logs.String(), tt.logHas) })
			if registers, _, _, _ := fake.snapshot(); len(registers) > 0 {
				t.Errorf("the participant registered %d times; want never", len(registers))
			}
		})
	}
}

func TestParticipantSitePolicyAndDeclaredExamples(t *testing.T) {
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
	digest := protocol.Digest(blob)
	task := func(kind pb.TaskKind, job, org string, round uint32) *pb.Task {
		return &pb.Task{Kind: kind, JobId: job, Round: round, Attempt: 1, Model: "logreg:2-2", Dataset: "toy", BaseModelDigest: digest,
			LocalEpochs: 1, BatchSize: 2, LearningRate: 0.1, JobOrganization: org, JobRounds: 10}
	}
	fake := &fakeCoordinator{model: blob, tasks: []*pb.Task{
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-c", "orgC", 1),
		task(pb.TaskKind_TASK_KIND_EVALUATE, "job-c", "orgC", 1),
		task(pb.TaskKind_TASK_KIND_TRAIN, "job-a", "orgA", 1),
	}}
	policy := &Policy{Organizations: []string{"orgA", "orgB"}}
	runParticipant(t, serve(t, fake, coord, ca.Pool()), site, ca.Pool(), func(c *Config) {
		c.Policy = policy
		c.DeclaredExamples = 1_000_000
	})
	waitFor(t, "two refusals and one update", func() bool {
		_, refusals, _, updates := fake.snapshot()
		return len(refusals) >= 2 && len(updates) >= 1
	})
	registers, refusals, downloads, updates := fake.snapshot()
	if got := registers[0].GetExamples(); got != 1_000_000 {
		t.Errorf("registered %d examples; want the declared 1000000", got)
	}
	for _, r := range refusals {
		if want := `organisation "orgC" is not accepted by this site (accepts orgA, orgB)`; r.GetJobId() != "job-c" || r.GetReason() != want || r.GetRound() != 1 || r.GetAttempt() != 1 {
			t.Errorf("refusal %v; want job-c round 1 attempt 1 with reason %q", r, want)
		}
	}
	if downloads != 1 {
		t.Errorf("%d model downloads; want 1 (the accepted job's only)", downloads)
	}
	if got := updates[0]; got.GetJobId() != "job-a" || got.GetExamples() != 1_000_000 {
		t.Errorf("update for job %q declaring %d examples; want job-a declaring 1000000", got.GetJobId(), got.GetExamples())
	}
}
