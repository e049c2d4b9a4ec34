package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol/inferencepb"
)

// endpoint is one served model: a job, the name it is served under, the
// model answering now and its batcher.
type endpoint struct {
	job     Job
	name    string
	model   atomic.Pointer[loaded]
	batcher *batcher
}

// Server serves jobs' global models. New starts nothing; Start opens the
// listeners and starts following the federation; Close stops everything
// and is safe to call twice.
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	endpoints []*endpoint
	byName    map[string]*endpoint

	// revoked is the federation's revoked serials, nil until the first
	// list arrives (then every request is refused: fail closed).
	revoked atomic.Pointer[map[string]bool]

	fedConn *grpc.ClientConn
	fed     federation

	httpSrv, metricsSrv *http.Server
	grpcSrv             *grpc.Server
	httpLn, grpcLn      net.Listener
	metricsLn           net.Listener

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	started   bool
}

// New checks cfg and returns a server that has not started.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), byName: map[string]*endpoint{}, stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	for _, j := range cfg.Jobs {
		ep := &endpoint{job: j, name: j.Name()}
		obs := s.metrics.batchSize.WithLabelValues(ep.name)
		ep.batcher = newBatcher(cfg.MaxBatch, cfg.MaxWait, cfg.Workers, cfg.QueueRows, ep.model.Load, func(n int) { obs.Observe(float64(n)) })
		s.endpoints = append(s.endpoints, ep)
		s.byName[ep.name] = ep
	}
	return s, nil
}

// Start opens the listeners, starts the batchers and follows the
// federation. It returns once the listeners are open, not once a model is
// loaded: readiness (/v2/health/ready, ServerReady) says that.
func (s *Server) Start() error {
	if s.started {
		return errors.New("serve: already started")
	}
	s.started = true
	conn, err := dialFederation(s.cfg.Coordinators, s.cfg.AdminCert, s.cfg.CA)
	if err != nil {
		return fmt.Errorf("serve: coordinators: %w", err)
	}
	s.fedConn = conn
	if s.fed == nil {
		s.fed = pbAdmin(conn)
	}
	if s.cfg.HTTPAddr != "" {
		if s.httpLn, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
			s.Close()
			return fmt.Errorf("serve: http: %w", err)
		}
		tlsCfg := s.tlsConfig() // net/http adds to it: one config a listener
		s.httpSrv = &http.Server{Handler: s.restHandler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
		ln := tls.NewListener(s.httpLn, tlsCfg)
		s.wg.Go(func() { _ = s.httpSrv.Serve(ln) })
	}
	if s.cfg.GRPCAddr != "" {
		if s.grpcLn, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
			s.Close()
			return fmt.Errorf("serve: grpc: %w", err)
		}
		s.grpcSrv = grpc.NewServer(grpc.Creds(credentials.NewTLS(s.tlsConfig())),
			grpc.MaxRecvMsgSize(int(min(s.cfg.MaxBodyBytes, math.MaxInt32))),
			grpc.ChainUnaryInterceptor(s.grpcAuth))
		inferencepb.RegisterGRPCInferenceServiceServer(s.grpcSrv, &grpcService{s: s})
		ln := s.grpcLn
		s.wg.Go(func() { _ = s.grpcSrv.Serve(ln) })
	}
	if s.cfg.MetricsAddr != "" {
		if s.metricsLn, err = net.Listen("tcp", s.cfg.MetricsAddr); err != nil {
			s.Close()
			return fmt.Errorf("serve: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		ln := s.metricsLn
		s.wg.Go(func() { _ = s.metricsSrv.Serve(ln) })
	}
	for _, ep := range s.endpoints {
		ep.batcher.start()
	}
	s.wg.Go(func() { s.follow(s.stop) })
	return nil
}

// HTTPAddr, GRPCAddr and MetricsAddr are the addresses listened on, once
// started ("" for a listener not configured).
func (s *Server) HTTPAddr() string    { return addrOf(s.httpLn) }
func (s *Server) GRPCAddr() string    { return addrOf(s.grpcLn) }
func (s *Server) MetricsAddr() string { return addrOf(s.metricsLn) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Close stops the listeners (letting requests in flight finish), the
// batchers and the follower, in that order.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s.httpSrv != nil {
			_ = s.httpSrv.Shutdown(ctx)
		} else if s.httpLn != nil {
			s.httpLn.Close()
		}
		if s.grpcSrv != nil {
			s.grpcSrv.GracefulStop()
		} else if s.grpcLn != nil {
			s.grpcLn.Close()
		}
		if s.metricsSrv != nil {
			_ = s.metricsSrv.Shutdown(ctx)
		} else if s.metricsLn != nil {
			s.metricsLn.Close()
		}
		close(s.stop)
		if s.started {
			for _, ep := range s.endpoints {
				ep.batcher.close()
			}
		}
		s.wg.Wait()
		if s.fedConn != nil {
			s.fedConn.Close()
		}
	})
	return nil
}

// Ready reports whether the server knows the federation's revocations and
// has a committed model for every job.
func (s *Server) Ready() bool {
	if s.revoked.Load() == nil {
		return false
	}
	for _, ep := range s.endpoints {
		if ep.model.Load() == nil {
			return false
		}
	}
	return true
}

// tlsConfig is the listeners' TLS: the federation's mutual TLS, admitting
// only consumers' certificates that are not revoked. Requests are checked
// again (authorize), for revocations learnt while a connection is open.
func (s *Server) tlsConfig() *tls.Config {
	cfg := pki.ServerTLS(s.cfg.Cert, s.cfg.CA)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	requireConsumer := pki.RequireRole(pki.RoleConsumer, "client")
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := requireConsumer(cs); err != nil {
			return err
		}
		if s.revoked.Load() == nil {
			return nil // refused per request, as not ready, until known
		}
		return s.checkRevoked(cs.VerifiedChains[0][0])
	}
	return cfg
}

func (s *Server) checkRevoked(leaf *x509.Certificate) error {
	set := s.revoked.Load()
	if set == nil {
		return fmt.Errorf("%w: the federation's revocations are not known yet", ErrNotReady)
	}
	if serial := pki.SerialOf(leaf); (*set)[serial] {
		return fmt.Errorf("%w: %s's certificate %s", ErrRevoked, leaf.Subject.CommonName, serial)
	}
	return nil
}

// authorize admits a request on a verified connection: the certificate
// must be a consumer's and not revoked now.
func (s *Server) authorize(cs *tls.ConnectionState) error {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return fmt.Errorf("%w: no verified client certificate", ErrForbidden)
	}
	leaf := cs.VerifiedChains[0][0]
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	if id.Role != pki.RoleConsumer {
		return fmt.Errorf("%w: %s is a %s, not a consumer", ErrForbidden, id.Name, id.Role)
	}
	return s.checkRevoked(leaf)
}

// endpointFor finds a served model by name and, if given, version (a round
// number): only the round being served answers.
func (s *Server) endpointFor(name, version string) (*endpoint, *loaded, error) {
	ep := s.byName[name]
	if ep == nil {
		return nil, nil, fmt.Errorf("%w: no model %q", ErrUnknownModel, name)
	}
	m := ep.model.Load()
	if m == nil {
		return ep, nil, fmt.Errorf("%w: model %q (job %s) has no committed round yet", ErrNotReady, name, ep.job.ID)
	}
	if version != "" && version != fmt.Sprint(m.round) {
		return ep, nil, fmt.Errorf("%w: model %q serves version %d (its latest committed round), not %q", ErrUnknownModel, name, m.round, version)
	}
	return ep, m, nil
}

// infer validates a request's rows×features values and runs them.
func (s *Server) infer(ctx context.Context, ep *endpoint, m *loaded, x []float32, shape []int64) (result, error) {
	if len(shape) != 2 {
		return result{}, fmt.Errorf("%w: input shape %v: want [rows, %d]", ErrBadRequest, shape, m.inputs)
	}
	rows, features := shape[0], shape[1]
	switch {
	case features != int64(m.inputs):
		return result{}, fmt.Errorf("%w: input shape %v: the model reads %d features", ErrBadRequest, shape, m.inputs)
	case rows < 1 || rows > int64(s.cfg.MaxRows):
		return result{}, fmt.Errorf("%w: input shape %v: want 1 to %d rows", ErrBadRequest, shape, s.cfg.MaxRows)
	case int64(len(x)) != rows*features:
		return result{}, fmt.Errorf("%w: input shape %v needs %d values, got %d", ErrBadRequest, shape, rows*features, len(x))
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return result{}, fmt.Errorf("%w: input value %d (row %d) is %v: values must be finite", ErrBadRequest, i, int64(i)/features, v)
		}
	}
	res := ep.batcher.submit(ctx, x, int(rows))
	return res, res.err
}
