package coordinator

import (
	"github.com/accord-fl/accord/netlimit"

	"errors"
	"fmt"
	"net"
	"net/http"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the coordinator's Prometheus metrics, in a registry of its own
// so that several coordinators can share a process (tests, scenarios).
type metrics struct {
	reg                   *prometheus.Registry
	roundsCommitted       prometheus.Counter
	roundsAborted         prometheus.Counter
	participantsConnected prometheus.GaugeFunc
	bytesReceived         prometheus.Counter
	roundSeconds          prometheus.Histogram
	isLeader              prometheus.Gauge
	secaggPhaseSeconds    *prometheus.HistogramVec
	secaggDropouts        *prometheus.CounterVec
	secaggParts           *prometheus.CounterVec
	modelsDeleted         prometheus.Counter
	// grpc counts the gRPC server's requests by service, method and code
	// (grpc_server_handled_total and the like).
	grpc *grpcprom.ServerMetrics
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		roundsCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "accord_rounds_committed_total", Help: "Rounds this coordinator committed as leader."}),
		roundsAborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "accord_rounds_aborted_total", Help: "Round attempts this coordinator aborted as leader."}),
		bytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "accord_update_bytes_received_total", Help: "Bytes of model updates received."}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "accord_round_duration_seconds", Help: "Time from opening a round to committing it.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "accord_raft_leader", Help: "1 while this coordinator is the Raft leader."}),
		secaggPhaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "accord_secagg_phase_duration_seconds", Help: "Time each secure-aggregation phase stayed open (advertise-keys includes training).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}, []string{"phase"}),
		secaggDropouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "accord_secagg_dropouts_total", Help: "Clients a secure-aggregation phase closed without."}, []string{"phase"}),
		secaggParts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "accord_secagg_parts_total", Help: "Parts of secure-aggregation messages too large for one gRPC message (protocol.SecAggPartBytes): task parts this leader sent (task), share-keys and unmask request parts it took (share_keys, unmask)."},
			[]string{"message"}),
		modelsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "accord_models_deleted_total", Help: "Models this coordinator deleted because no job's retain policy keeps them."}),
		grpc: grpcprom.NewServerMetrics(),
	}
	m.reg.MustRegister(m.roundsCommitted, m.roundsAborted, m.bytesReceived, m.roundSeconds, m.isLeader, m.secaggPhaseSeconds, m.secaggDropouts,
		m.secaggParts, m.modelsDeleted, m.grpc,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (c *Coordinator) startMetrics() error {
	c.metrics.participantsConnected = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "accord_participants_connected", Help: "Participants with an open task stream to this coordinator."},
		func() float64 { return float64(c.sessions.count()) })
	rc := newRaftCollector(c)
	c.metrics.reg.MustRegister(c.metrics.participantsConnected, rc)
	c.wg.Go(rc.observe)
	ln, err := net.Listen("tcp", c.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s: %w", c.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	lim := c.cfg.Limits
	c.metricsAddr = ln.Addr().String()
	c.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: lim.MetricsReadTimeout, ReadTimeout: lim.MetricsReadTimeout,
		WriteTimeout: 2 * lim.MetricsReadTimeout, IdleTimeout: 4 * lim.MetricsReadTimeout, MaxHeaderBytes: 16 << 10}
	c.wg.Go(func() {
		if err := c.httpSrv.Serve(netlimit.Listen(ln, lim.MaxConnsPerIP)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("metrics server", "err", err)
		}
	})
	return nil
}
