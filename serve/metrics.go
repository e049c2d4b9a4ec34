package serve

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	batchSize    *prometheus.HistogramVec
	round        *prometheus.GaugeVec
	swaps        *prometheus.CounterVec
	followErrors prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "accord_serve_requests_total",
			Help: "Inference requests answered, by protocol (rest, grpc) and status code (HTTP status or gRPC code name).",
		}, []string{"protocol", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "accord_serve_latency_seconds",
			Help:    "Time from a request's arrival to its answer, by protocol.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50 µs … 1.6 s
		}, []string{"protocol"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "accord_serve_batch_size",
			Help:    "Rows in each batch run, by model.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1024
		}, []string{"model"}),
		round: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "accord_serve_model_round",
			Help: "The committed round of the model being served, by model.",
		}, []string{"model"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "accord_serve_swaps_total",
			Help: "Models swapped in, by model.",
		}, []string{"model"}),
		followErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "accord_serve_follow_errors_total",
			Help: "Failed polls of the coordinators (rounds, models, revocations).",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.batchSize, m.round, m.swaps, m.followErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
