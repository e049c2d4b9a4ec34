package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// loaded is one committed model ready to answer: never changed once made,
// so that batches running on it need no lock.
type loaded struct {
	job     string
	round   uint32
	digest  string
	spec    string
	inputs  int
	classes int
	pred    *model.Predictor
}

// federation is what the server asks the coordinators; the admin service
// client has it.
type federation interface {
	GetJob(ctx context.Context, in *pb.GetJobRequest, opts ...grpc.CallOption) (*pb.Job, error)
	PullModel(ctx context.Context, in *pb.PullModelRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.ModelChunk], error)
	ListRevocations(ctx context.Context, in *pb.ListRevocationsRequest, opts ...grpc.CallOption) (*pb.ListRevocationsResponse, error)
}

// retryUnavailable makes gRPC retry a read a coordinator refused with
// UNAVAILABLE (no leader known yet) a few times.
const retryUnavailable = `{"methodConfig": [{"name": [{"service": "accord.v1.AdminService"}],
  "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
                  "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// dialFederation connects to the coordinators as the admin, signing every
// unary call; with several addresses gRPC's pick_first takes the first that
// connects and fails over to the next.
func dialFederation(addrs []string, cert tls.Certificate, ca *x509.CertPool) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, ca))),
		grpc.WithDefaultServiceConfig(retryUnavailable),
		grpc.WithChainUnaryInterceptor(adminauth.UnaryClientInterceptor(cert)),
	}
	target := addrs[0]
	if len(addrs) > 1 {
		r := manual.NewBuilderWithScheme("accord-serve")
		var state resolver.State
		for _, a := range addrs {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return nil, fmt.Errorf("coordinator %q: %w", a, err)
			}
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
		}
		r.InitialState(state)
		opts, target = append(opts, grpc.WithResolvers(r)), "accord-serve:///coordinators"
	}
	return grpc.NewClient(target, opts...)
}

// follow polls the federation until stop closes: revocations, then each
// job's committed rounds.
func (s *Server) follow(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.pollOnce(stop)
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// pollOnce asks for revocations and for every job's latest round once.
func (s *Server) pollOnce(stop <-chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), max(10*s.cfg.PollInterval, 30*time.Second))
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.pollRevocations(ctx); err != nil {
		s.metrics.followErrors.Inc()
		s.log.Warn("serve: reading revocations", "err", err)
	}
	for _, ep := range s.endpoints {
		if err := s.pollJob(ctx, ep); err != nil {
			s.metrics.followErrors.Inc()
			s.log.Warn("serve: following job", "job", ep.job.ID, "err", err)
		}
	}
}

func (s *Server) pollRevocations(ctx context.Context) error {
	resp, err := s.fed.ListRevocations(ctx, &pb.ListRevocationsRequest{})
	if err != nil {
		return err
	}
	set := make(map[string]bool, len(resp.GetRevocations()))
	for _, r := range resp.GetRevocations() {
		set[r.GetSerial()] = true
	}
	s.revoked.Store(&set)
	return nil
}

// pollJob swaps in the job's latest committed model if it is newer than
// the one served.
func (s *Server) pollJob(ctx context.Context, ep *endpoint) error {
	job, err := s.fed.GetJob(ctx, &pb.GetJobRequest{JobId: ep.job.ID})
	if err != nil {
		return err
	}
	round := job.GetCommittedRounds()
	cur := ep.model.Load()
	if round == 0 || (cur != nil && cur.round >= round) {
		return nil
	}
	m, err := s.pull(ctx, ep.job.ID, round)
	if err != nil {
		return err
	}
	ep.model.Store(m)
	s.metrics.round.WithLabelValues(ep.name).Set(float64(round))
	s.metrics.swaps.WithLabelValues(ep.name).Inc()
	s.log.Info("serve: model swapped in", "model", ep.name, "job", ep.job.ID, "round", round, "digest", m.digest)
	return nil
}

// pull fetches a committed round's model, checks that its bytes hash to
// the digest the coordinator names and decodes it.
func (s *Server) pull(ctx context.Context, jobID string, round uint32) (*loaded, error) {
	stream, err := s.fed.PullModel(ctx, &pb.PullModelRequest{JobId: jobID, Round: round})
	if err != nil {
		return nil, err
	}
	blob, first, err := protocol.ReceiveModel(stream)
	if err != nil {
		return nil, fmt.Errorf("pulling job %s round %d: %w", jobID, round, err)
	}
	if first == nil || first.GetDigest() == "" {
		return nil, fmt.Errorf("%w: job %s round %d came without a digest", ErrDigest, jobID, round)
	}
	if got := protocol.Digest(blob); got != first.GetDigest() {
		return nil, fmt.Errorf("%w: job %s round %d hashes to %s, not %s", ErrDigest, jobID, round, got, first.GetDigest())
	}
	spec, err := model.ParseSpec(first.GetModel())
	if err != nil {
		return nil, fmt.Errorf("job %s round %d: %w", jobID, round, err)
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		return nil, fmt.Errorf("job %s round %d: %w", jobID, round, err)
	}
	m, err := model.FromParams(spec, params)
	if err != nil {
		return nil, fmt.Errorf("job %s round %d: %w", jobID, round, err)
	}
	return &loaded{
		job: jobID, round: round, digest: first.GetDigest(), spec: spec.String(),
		inputs: spec.Inputs(), classes: spec.Classes(), pred: model.NewPredictor(m, s.cfg.MaxBatch),
	}, nil
}
