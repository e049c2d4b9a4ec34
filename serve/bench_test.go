package serve

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/protocol/inferencepb"
)

// fakeFederation serves one job with one committed model and no
// revocations, so that benchmarks measure serving alone.
type fakeFederation struct {
	spec string
	blob []byte
}

func (f *fakeFederation) GetJob(context.Context, *pb.GetJobRequest, ...grpc.CallOption) (*pb.Job, error) {
	return &pb.Job{Id: "job-bench", CommittedRounds: 1}, nil
}

func (f *fakeFederation) ListRevocations(context.Context, *pb.ListRevocationsRequest, ...grpc.CallOption) (*pb.ListRevocationsResponse, error) {
	return &pb.ListRevocationsResponse{}, nil
}

func (f *fakeFederation) PullModel(context.Context, *pb.PullModelRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[pb.ModelChunk], error) {
	return &chunkStream{chunks: []*pb.ModelChunk{{Digest: protocol.Digest(f.blob), Model: f.spec, Data: f.blob}}}, nil
}

type chunkStream struct {
	grpc.ClientStream
	chunks []*pb.ModelChunk
}

func (c *chunkStream) Recv() (*pb.ModelChunk, error) {
	if len(c.chunks) == 0 {
		return nil, io.EOF
	}
	ch := c.chunks[0]
	c.chunks = c.chunks[1:]
	return ch, nil
}

// The models benchmarked: the FedAvg paper's 2NN and CNN (McMahan et al.
// 2017), each with its input width.
const (
	spec2NN = "mlp:784-200-200-10"
	specCNN = "cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10"
	mnistIn = 784
)

// serveCase is one BenchmarkServe configuration: the server's batching and
// how many clients call it at once.
type serveCase struct {
	name     string
	maxBatch int
	maxWait  time.Duration
	clients  int
}

// benchServer starts a server of spec on loopback and returns it with a
// gRPC client of it (mutual TLS, a consumer's certificate).
func benchServer(b *testing.B, spec string, maxBatch int, maxWait time.Duration) (*Server, inferencepb.GRPCInferenceServiceClient) {
	b.Helper()
	ca, err := pki.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	issue := func(role pki.Role, name string) tls.Certificate {
		c, err := ca.Issue(pki.Identity{Role: role, Name: name, Organization: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	m := model.New(model.MustParseSpec(spec), 1)
	cfg := DefaultConfig()
	cfg.Coordinators, cfg.Jobs, cfg.CA = []string{"127.0.0.1:1"}, []Job{{ID: "job-bench", Alias: "m"}}, ca.Pool()
	cfg.AdminCert, cfg.Cert = issue(pki.RoleAdmin, "ops"), issue(pki.RoleInference, "serve")
	cfg.GRPCAddr, cfg.MaxBatch, cfg.MaxWait = "127.0.0.1:0", maxBatch, maxWait
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.fed = &fakeFederation{spec: spec, blob: protocol.EncodeFloat32(m.Params)}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for deadline := time.Now().Add(5 * time.Second); !s.Ready(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("not ready")
		}
	}
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ConsumerTLS(issue(pki.RoleConsumer, "partner"), ca.Pool()))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return s, inferencepb.NewGRPCInferenceServiceClient(conn)
}

// benchServe runs each case on a fresh server of spec.
func benchServe(b *testing.B, spec string, cases []serveCase) {
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s, client := benchServer(b, spec, tc.maxBatch, tc.maxWait)
			benchInfer(b, s, client, mnistIn, tc.clients)
		})
	}
}

// benchInfer sends b.N one-row ModelInfer calls from clients goroutines
// and reports p50, p99, rows a second and the mean rows in a batch the
// server ran.
func benchInfer(b *testing.B, s *Server, client inferencepb.GRPCInferenceServiceClient, features, clients int) {
	x := make([]float32, features)
	for i := range x {
		x[i] = float32(i%255) / 255
	}
	req := &inferencepb.ModelInferRequest{ModelName: "m", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{
		Name: "input", Datatype: "FP32", Shape: []int64{1, int64(features)}, Contents: &inferencepb.InferTensorContents{Fp32Contents: x}}}}
	for range 50 { // warm up
		if _, err := client.ModelInfer(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	rows0, batches0 := batchTotals(b, s)
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		n := b.N / clients
		if c < b.N%clients {
			n++
		}
		wg.Go(func() {
			for range n {
				t0 := time.Now()
				if _, err := client.ModelInfer(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "rows/s")
	if rows, batches := batchTotals(b, s); batches > batches0 {
		b.ReportMetric((rows-rows0)/(batches-batches0), "rows/batch")
	}
}

// batchTotals reads the rows and batches the server has run, from its
// accord_serve_batch_size histogram.
func batchTotals(b *testing.B, s *Server) (rows, batches float64) {
	fams, err := s.metrics.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "accord_serve_batch_size" {
			continue
		}
		for _, m := range f.GetMetric() {
			rows += m.GetHistogram().GetSampleSum()
			batches += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return rows, batches
}

// BenchmarkServe2NN measures accord serve's gRPC endpoint (mutual TLS on
// loopback, the clients in the same process as the server) on the 2NN:
// batch 1 with one client, batch 1 with 32 clients (no batching), and
// dynamic batching (up to 32 rows, 2 ms) with 32 clients. Server and
// clients share one core, as make bench-serve runs it
// (testdata/compare_serve.sh, which prints every benchmark here in one
// table):
//
//	taskset -c 0 go test -run '^$' -bench 'Serve2NN' -cpu 1 -benchtime 3s ./serve/
func BenchmarkServe2NN(b *testing.B) {
	benchServe(b, spec2NN, []serveCase{
		{"batch1/clients1", 1, 0, 1},
		{"batch1/clients32", 1, 0, 32},
		{"dynamic32-2ms/clients32", 32, 2 * time.Millisecond, 32},
	})
}

// BenchmarkServeCNN is BenchmarkServe2NN on the FedAvg CNN, with the same
// 2 ms wait. A longer wait buys nothing here: a batch of 32 CNN rows
// computes for about 17 ms, and the 32 clients' next requests reach the
// queue within the wait, so batches already run nearly full (measured on
// one core: 1 ms gave 26–30 rows a batch, 2 ms 31.3, 5 ms 31.5, 10 ms 31.9,
// at the same ~1,800 rows/s); and when load is light, every lone request
// pays the whole wait on top of a batch-1 forward pass of under 1 ms.
func BenchmarkServeCNN(b *testing.B) {
	benchServe(b, specCNN, []serveCase{
		{"batch1/clients1", 1, 0, 1},
		{"batch1/clients32", 1, 0, 32},
		{"dynamic32-2ms/clients32", 32, 2 * time.Millisecond, 32},
	})
}

// benchPredict measures spec's forward pass alone (model.Predictor) at
// batch 1 and 32, no network: each call's latency (p50, p99) and rows a
// second.
func benchPredict(b *testing.B, spec string) {
	m := model.New(model.MustParseSpec(spec), 1)
	for _, rows := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch%d", rows), func(b *testing.B) {
			p := model.NewPredictor(m, rows)
			x := make([]float32, rows*m.Spec.Inputs())
			for i := range x {
				x[i] = float32(i%255) / 255
			}
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := p.Predict(x, rows); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkPredict2NN is the 2NN's forward pass alone at batch 1 and 32.
func BenchmarkPredict2NN(b *testing.B) { benchPredict(b, spec2NN) }

// BenchmarkPredictCNN is the CNN's forward pass alone at batch 1 and 32.
func BenchmarkPredictCNN(b *testing.B) { benchPredict(b, specCNN) }

// benchTorch runs testdata/torch_forward.py on model ("2nn" or "cnn"):
// PyTorch's forward pass of the same network on one thread, in the same
// run (skipped without /usr/bin/python3 and torch). The script times its
// own loop for about 2 s a batch size, so one iteration is enough.
func benchTorch(b *testing.B, name string) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		b.Skip("no /usr/bin/python3")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		b.Skipf("no torch for /usr/bin/python3 (Debian's python3-torch): %v", err)
	}
	for b.Loop() {
		cmd := exec.Command("/usr/bin/python3", "testdata/torch_forward.py", name, "2")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("testdata/torch_forward.py %s: %v\n%s", name, err, stderr.Bytes())
		}
		var res map[string]struct {
			P50 float64 `json:"p50_us"`
			P99 float64 `json:"p99_us"`
			Rps float64 `json:"rows_per_s"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("%s: %v", out, err)
		}
		b.ReportMetric(res["batch1"].P50, "batch1-p50-µs")
		b.ReportMetric(res["batch1"].P99, "batch1-p99-µs")
		b.ReportMetric(res["batch1"].Rps, "batch1-rows/s")
		b.ReportMetric(res["batch32"].P50, "batch32-p50-µs")
		b.ReportMetric(res["batch32"].P99, "batch32-p99-µs")
		b.ReportMetric(res["batch32"].Rps, "batch32-rows/s")
	}
}

// BenchmarkTorch2NN is PyTorch's forward pass of the 2NN on one thread.
func BenchmarkTorch2NN(b *testing.B) { benchTorch(b, "2nn") }

// BenchmarkTorchCNN is PyTorch's forward pass of the CNN on one thread.
func BenchmarkTorchCNN(b *testing.B) { benchTorch(b, "cnn") }
