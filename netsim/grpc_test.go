package netsim

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCThroughEndpoint runs gRPC over TLS through a shaped link, across
// a cut and after it heals.
func TestGRPCThroughEndpoint(t *testing.T) {
	const latency = 20 * time.Millisecond
	cert, pool := selfSigned(t, "netsim.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		srv.Stop()
		<-served
	}()

	n := New(1)
	n.SetLink("eu", "us", Link{Latency: latency, Jitter: 5 * time.Millisecond})
	n.Register(ln.Addr().String(), "us")
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithContextDialer(n.Endpoint("eu").GRPCDialer()),
		grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "netsim.test")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)

	check := func(wait bool) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		start := time.Now()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(wait))
		return time.Since(start), err
	}
	if _, err := check(true); err != nil {
		t.Fatalf("first check: %v", err)
	}
	if got, err := check(false); err != nil || got < 2*latency {
		t.Errorf("check = %v after %v; want nil after ≥ %v", err, got, 2*latency)
	}

	n.Cut("us")
	if _, err := check(false); err == nil {
		t.Error("check across the cut succeeded")
	}
	n.Heal("us")
	if _, err := check(true); err != nil {
		t.Errorf("check after heal: %v", err)
	}
}
