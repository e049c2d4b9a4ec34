package serve

import (
	"context"
	"crypto/tls"
	"encoding/json"
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

// benchServer starts a server of spec on loopback and returns a gRPC
// client of it (mutual TLS, a consumer's certificate).
func benchServer(b *testing.B, spec string, maxBatch int, maxWait time.Duration) inferencepb.GRPCInferenceServiceClient {
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
	return inferencepb.NewGRPCInferenceServiceClient(conn)
}

// benchInfer sends b.N one-row ModelInfer calls from clients goroutines
// and reports p50, p99 and rows a second.
func benchInfer(b *testing.B, client inferencepb.GRPCInferenceServiceClient, features, clients int) {
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
}

// BenchmarkServe2NN measures accord serve's gRPC endpoint (mutual TLS on
// loopback, the client in the same process) on the 2NN: batch 1 with one
// client, batch 1 with 32 clients (no batching), and dynamic batching
// (up to 32 rows, 2 ms) with 32 clients.
func BenchmarkServe2NN(b *testing.B) {
	const spec, features = "mlp:784-200-200-10", 784
	for _, tc := range []struct {
		name     string
		maxBatch int
		maxWait  time.Duration
		clients  int
	}{
		{"batch1/clients1", 1, 0, 1},
		{"batch1/clients32", 1, 0, 32},
		{"dynamic32-2ms/clients32", 32, 2 * time.Millisecond, 32},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchInfer(b, benchServer(b, spec, tc.maxBatch, tc.maxWait), features, tc.clients)
		})
	}
}

// BenchmarkPredict2NN is the model's forward pass alone (model.Predictor)
// at batch 1 and 32, no network.
func BenchmarkPredict2NN(b *testing.B) {
	m := model.New(model.MustParseSpec("mlp:784-200-200-10"), 1)
	for _, rows := range []int{1, 32} {
		b.Run(map[int]string{1: "batch1", 32: "batch32"}[rows], func(b *testing.B) {
			p := model.NewPredictor(m, rows)
			x := make([]float32, rows*784)
			for b.Loop() {
				if _, err := p.Predict(x, rows); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkTorch2NN runs testdata/torch_forward.py: PyTorch's forward pass
// of the same 2NN on one thread, in the same run (skipped without
// /usr/bin/python3 and torch).
func BenchmarkTorch2NN(b *testing.B) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		b.Skip("no /usr/bin/python3")
	}
	for b.Loop() {
		out, err := exec.Command("/usr/bin/python3", "testdata/torch_forward.py", "2").Output()
		if err != nil {
			b.Skipf("torch: %v", err)
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
		b.ReportMetric(res["batch32"].Rps, "batch32-rows/s")
	}
}
