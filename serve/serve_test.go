package serve_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/protocol/inferencepb"
	"github.com/accord-fl/accord/serve"
)

// blobs is a 3-class problem in 8 dimensions that logistic regression
// solves (as in the coordinator's tests).
func blobs(n int, seed uint64) *model.Dataset {
	rng := rand.New(rand.NewPCG(seed, 9))
	const d, classes = 8, 3
	ds := &model.Dataset{X: make([]float32, n*d), Y: make([]int32, n), Features: d, Classes: classes}
	for i := range n {
		c := rng.IntN(classes)
		ds.Y[i] = int32(c)
		for j := range d {
			centre := 0.0
			if j%classes == c {
				centre = 2.5
			}
			ds.X[i*d+j] = float32(centre + rng.NormFloat64())
		}
	}
	return ds
}

// federation is an in-process coordinator with participants training a
// job of many rounds, and serve following it.
type federation struct {
	tc    *coordtest.Cluster
	jobID string
	srv   *serve.Server
	admin pb.AdminServiceClient
}

const org = "org-ops"

func startFederation(t *testing.T, rounds uint32) *federation {
	t.Helper()
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for i := range 3 {
		name := fmt.Sprintf("p%d", i)
		cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "hospital-" + name})
		if err != nil {
			t.Fatal(err)
		}
		p, err := participant.New(participant.Config{
			Coordinators: tc.Addrs(), Cert: cert, CA: tc.CA.Pool(), Region: "eu", Dataset: "blobs",
			Train: blobs(120, uint64(i)), Validation: blobs(40, uint64(1000+i)),
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { p.Run(ctx) })
	}
	adminCert := tc.AdminCert("ops", org)
	admin := tc.AdminWith(0, adminCert)
	spec := state.DefaultJobSpec()
	spec.Name, spec.Model, spec.Dataset = "blobs", "logreg:8-3", "blobs"
	spec.Rounds, spec.TargetAccuracy = rounds, 0
	spec.ParticipantsPerRound, spec.MinParticipants = 3, 2
	spec.RoundDeadline = state.Duration(5 * time.Second)
	var jobID string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: spec.ToProto()})
		if err == nil {
			jobID = resp.JobId
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("submitting job: %v", err)
		}
	}
	tc.WaitCommitted(jobID, 1, 30*time.Second)

	serveCert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleInference, Name: "serve", Organization: org})
	if err != nil {
		t.Fatal(err)
	}
	cfg := serve.DefaultConfig()
	cfg.Coordinators, cfg.CA, cfg.AdminCert, cfg.Cert = tc.Addrs(), tc.CA.Pool(), adminCert, serveCert
	cfg.Jobs = []serve.Job{{ID: jobID, Alias: "blobs"}}
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.PollInterval = 50 * time.Millisecond
	if os.Getenv("ACCORD_TEST_LOG") == "" {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := serve.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for deadline := time.Now().Add(10 * time.Second); !srv.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("serve not ready within 10s")
		}
	}
	return &federation{tc: tc, jobID: jobID, srv: srv, admin: admin}
}

// consumer issues a certificate of role and name in the admin's
// organisation.
func (f *federation) cert(t *testing.T, role pki.Role, name string) tls.Certificate {
	t.Helper()
	c, err := f.tc.CA.Issue(pki.Identity{Role: role, Name: name, Organization: org})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *federation) httpClient(cert tls.Certificate) *http.Client {
	tr := &http.Transport{TLSClientConfig: pki.ConsumerTLS(cert, f.tc.CA.Pool()), ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (f *federation) grpcClient(t *testing.T, cert tls.Certificate) inferencepb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(f.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ConsumerTLS(cert, f.tc.CA.Pool()))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inferencepb.NewGRPCInferenceServiceClient(conn)
}

// committed is the job's committed rounds and their digests.
func (f *federation) committed(t *testing.T) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	token := ""
	for {
		resp, err := f.admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: f.jobID, PageToken: token, PageSize: 5000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Rounds {
			out[r.Number] = r.ModelDigest
		}
		if token = resp.NextPageToken; token == "" {
			return out
		}
	}
}

type restAnswer struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name     string    `json:"name"`
		Shape    []int64   `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float32 `json:"data"`
	} `json:"outputs"`
	Parameters struct {
		Job    string `json:"accord_job"`
		Round  uint32 `json:"accord_round"`
		Digest string `json:"accord_digest"`
	} `json:"parameters"`
	Error string `json:"error"`
}

func restInfer(c *http.Client, base, body string) (int, restAnswer, error) {
	resp, err := c.Post(base+"/v2/models/blobs/infer", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, restAnswer{}, err
	}
	defer resp.Body.Close()
	var a restAnswer
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		return resp.StatusCode, a, fmt.Errorf("answer %q: %w", b, err)
	}
	return resp.StatusCode, a, nil
}

func inferBody(rows int) string {
	var b bytes.Buffer
	b.WriteString(`{"id":"q1","inputs":[{"name":"input","shape":[`)
	fmt.Fprintf(&b, "%d,8],\"datatype\":\"FP32\",\"data\":[", rows)
	for i := range rows * 8 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%.2f", float64(i%8)*0.4)
	}
	b.WriteString("]}]}")
	return b.String()
}

func TestServeOverMTLS(t *testing.T) {
	f := startFederation(t, 3)
	base := "https://" + f.srv.HTTPAddr()
	consumer := f.cert(t, pki.RoleConsumer, "partner")
	hc := f.httpClient(consumer)

	// REST: health, metadata, infer.
	resp, err := hc.Get(base + "/v2/health/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v2/health/ready: %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
	resp, err = hc.Get(base + "/v2/models/blobs")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
		Platform string   `json:"platform"`
		Inputs   []struct {
			Name, Datatype string
			Shape          []int64
		} `json:"inputs"`
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta.Name != "blobs" || len(meta.Versions) != 1 || len(meta.Inputs) != 1 || meta.Inputs[0].Datatype != "FP32" ||
		fmt.Sprint(meta.Inputs[0].Shape) != "[-1 8]" {
		t.Errorf("metadata %+v; want blobs, one version, input FP32 [-1 8]", meta)
	}
	code, a, err := restInfer(hc, base, inferBody(4))
	if err != nil || code != 200 {
		t.Fatalf("infer: %d %+v %v; want 200", code, a, err)
	}
	committed := f.committed(t)
	if len(a.Outputs) != 1 || fmt.Sprint(a.Outputs[0].Shape) != "[4 3]" || len(a.Outputs[0].Data) != 12 || a.ID != "q1" {
		t.Errorf("infer answer %+v; want one output of shape [4 3]", a)
	}
	if a.Parameters.Job != f.jobID || committed[a.Parameters.Round] != a.Parameters.Digest || a.ModelVersion != fmt.Sprint(a.Parameters.Round) {
		t.Errorf("answer names job %s round %d digest %s (version %s); want job %s and a committed round's digest (%v)",
			a.Parameters.Job, a.Parameters.Round, a.Parameters.Digest, a.ModelVersion, f.jobID, committed)
	}

	// REST refuses malformed requests with 400 and a reason.
	for _, bad := range []string{
		`{"inputs":[{"name":"input","shape":[1,7],"datatype":"FP32","data":[1,2,3,4,5,6,7]}]}`,
		`{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP64","data":[1,2,3,4,5,6,7,8]}]}`,
		`{"inputs":[{"name":"input","shape":[2,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}`,
		`{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,1e39]}]}`,
		`{"inputs":[]}`,
		`not json`,
	} {
		if code, a, _ := restInfer(hc, base, bad); code != 400 || a.Error == "" {
			t.Errorf("infer %s: %d %q; want 400 with an error", bad, code, a.Error)
		}
	}
	// Nested data is read row by row.
	nested := `{"inputs":[{"name":"input","shape":[2,8],"datatype":"FP32","data":[[1,2,3,4,5,6,7,8],[8,7,6,5,4,3,2,1]]}]}`
	if code, a, err := restInfer(hc, base, nested); code != 200 || len(a.Outputs) != 1 || len(a.Outputs[0].Data) != 6 {
		t.Errorf("nested infer: %d %+v %v; want 200 with 6 values", code, a, err)
	}

	// gRPC: metadata and infer with fp32_contents and with raw contents.
	gc := f.grpcClient(t, consumer)
	md, err := gc.ModelMetadata(t.Context(), &inferencepb.ModelMetadataRequest{Name: "blobs"})
	if err != nil || md.Inputs[0].Datatype != "FP32" {
		t.Fatalf("ModelMetadata: %v, %v", md, err)
	}
	x := []float32{2.5, 0, 0, 2.5, 0, 0, 2.5, 0}
	out, err := gc.ModelInfer(t.Context(), &inferencepb.ModelInferRequest{ModelName: "blobs", Id: "g1",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 8},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: x}}}})
	if err != nil {
		t.Fatal(err)
	}
	probs := out.Outputs[0].Contents.Fp32Contents
	if len(probs) != 3 || out.Id != "g1" || out.Parameters["accord_job"].GetStringParam() != f.jobID {
		t.Fatalf("ModelInfer: %v; want 3 probabilities for job %s", out, f.jobID)
	}
	round := uint32(out.Parameters["accord_round"].GetInt64Param())
	if d := out.Parameters["accord_digest"].GetStringParam(); f.committed(t)[round] != d {
		t.Errorf("ModelInfer names round %d digest %s; not that committed round's", round, d)
	}
	raw := make([]byte, 32)
	for i, v := range x {
		u := math.Float32bits(v)
		raw[4*i], raw[4*i+1], raw[4*i+2], raw[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	rout, err := gc.ModelInfer(t.Context(), &inferencepb.ModelInferRequest{ModelName: "blobs",
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 8}}},
		RawInputContents: [][]byte{raw}})
	if err != nil || len(rout.RawOutputContents) != 1 || len(rout.RawOutputContents[0]) != 12 {
		t.Fatalf("ModelInfer raw: %v, %v; want 12 bytes of raw output", rout, err)
	}
	for _, bad := range []*inferencepb.ModelInferRequest{
		{ModelName: "blobs", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 8},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4, 5, 6, 7, float32(math.NaN())}}}}},
		{ModelName: "blobs", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 9},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: make([]float32, 9)}}}},
	} {
		if _, err := gc.ModelInfer(t.Context(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("bad ModelInfer: %v; want InvalidArgument", err)
		}
	}
	if _, err := gc.ModelInfer(t.Context(), &inferencepb.ModelInferRequest{ModelName: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown model: %v; want NotFound", err)
	}

	// Certificates of other roles are refused, over both protocols.
	for _, role := range []pki.Role{pki.RoleParticipant, pki.RoleAdmin, pki.RoleCoordinator} {
		c := f.cert(t, role, "other-"+string(role))
		if _, err := f.httpClient(c).Get(base + "/v2/health/ready"); err == nil {
			t.Errorf("a %s's certificate was admitted over REST; want the handshake refused", role)
		}
		if _, err := f.grpcClient(t, c).ServerReady(t.Context(), &inferencepb.ServerReadyRequest{}); err == nil {
			t.Errorf("a %s's certificate was admitted over gRPC", role)
		}
	}

	// A revoked consumer is refused: on its open connection and on new
	// ones.
	victim := f.cert(t, pki.RoleConsumer, "leaky")
	vc, vg := f.httpClient(victim), f.grpcClient(t, victim)
	if code, _, err := restInfer(vc, base, inferBody(1)); err != nil || code != 200 {
		t.Fatalf("consumer before revocation: %d %v; want 200", code, err)
	}
	if _, err := vg.ServerReady(t.Context(), &inferencepb.ServerReadyRequest{}); err != nil {
		t.Fatalf("consumer before revocation over gRPC: %v", err)
	}
	if _, err := f.admin.Revoke(t.Context(), &pb.RevokeRequest{Serial: pki.SerialOf(victim.Leaf), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, _, err := restInfer(vc, base, inferBody(1))
		_, gerr := vg.ServerReady(t.Context(), &inferencepb.ServerReadyRequest{})
		if (err != nil || code == 403) && status.Code(gerr) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked consumer still admitted: REST %d %v, gRPC %v", code, err, gerr)
		}
	}
	if _, err := f.httpClient(victim).Get(base + "/v2/health/ready"); err == nil {
		t.Error("revoked consumer admitted on a new connection")
	}
	// The other consumer is still served.
	if code, _, err := restInfer(hc, base, inferBody(1)); err != nil || code != 200 {
		t.Errorf("consumer after another's revocation: %d %v; want 200", code, err)
	}

	// Metrics.
	mresp, err := http.Get("http://" + f.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`accord_serve_requests_total{code="200",protocol="rest"}`, `accord_serve_requests_total{code="InvalidArgument",protocol="grpc"}`,
		"accord_serve_latency_seconds_bucket", `accord_serve_batch_size_bucket{model="blobs"`, `accord_serve_model_round{model="blobs"}`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestSwapUnderLoad keeps clients requesting over REST and gRPC while the
// job commits rounds: no request may fail, every answer must name a
// committed round and its digest, and the rounds answering must move on.
// It runs for ACCORD_SERVE_SWAP_DURATION (default 3s; ACCORD_LONG=1: 30s).
func TestSwapUnderLoad(t *testing.T) {
	dur := 3 * time.Second
	if os.Getenv("ACCORD_LONG") != "" {
		dur = 30 * time.Second
	}
	if v := os.Getenv("ACCORD_SERVE_SWAP_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		dur = d
	}
	f := startFederation(t, 100000)
	consumer := f.cert(t, pki.RoleConsumer, "partner")
	base := "https://" + f.srv.HTTPAddr()
	type seen struct {
		round  uint32
		digest string
	}
	var (
		mu       sync.Mutex
		answers  = map[seen]int{}
		failures []string
		total    atomic.Int64
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, s)
		}
	}
	record := func(r uint32, d string) {
		mu.Lock()
		answers[seen{r, d}]++
		mu.Unlock()
		total.Add(1)
	}
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i := range 2 {
		hc := f.httpClient(consumer)
		wg.Go(func() {
			body := inferBody(1 + i)
			for time.Now().Before(end) {
				code, a, err := restInfer(hc, base, body)
				if err != nil || code != 200 {
					fail(fmt.Sprintf("REST: %d %v %s", code, err, a.Error))
					continue
				}
				record(a.Parameters.Round, a.Parameters.Digest)
			}
		})
		gc := f.grpcClient(t, consumer)
		wg.Go(func() {
			req := &inferencepb.ModelInferRequest{ModelName: "blobs",
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 8},
					Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 0, 0, 1, 0, 0, 1, 0}}}}}
			for time.Now().Before(end) {
				out, err := gc.ModelInfer(context.Background(), req)
				if err != nil {
					fail(fmt.Sprintf("gRPC: %v", err))
					continue
				}
				record(uint32(out.Parameters["accord_round"].GetInt64Param()), out.Parameters["accord_digest"].GetStringParam())
			}
		})
	}
	wg.Wait()
	committed := f.committed(t)
	rounds := map[uint32]bool{}
	for s, n := range answers {
		rounds[s.round] = true
		if d, ok := committed[s.round]; !ok || d != s.digest {
			t.Errorf("%d answers named round %d digest %s; the job committed that round with digest %q", n, s.round, s.digest, d)
		}
	}
	t.Logf("%d requests in %v (%.0f/s), answered by %d rounds; the job committed %d", total.Load(), dur, float64(total.Load())/dur.Seconds(), len(rounds), len(committed))
	if len(failures) > 0 {
		t.Errorf("failed requests (first %d): %v", len(failures), failures)
	}
	if len(rounds) < 2 {
		t.Errorf("answers came from %d rounds; want the model swapped at least once", len(rounds))
	}
}
