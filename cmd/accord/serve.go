package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/serve"
)

// `accord serve` serves jobs' global models over the Open Inference
// Protocol (package serve). It has two identities: --cert/--key, an
// admin's, with which it reads the federation (job, rounds, models,
// revocations: reads only) like every admin command; and
// --serve-cert/--serve-key, an inference server's (accord pki issue --role
// inference), that its listeners present. Clients need a consumer's
// certificate (accord pki issue --role consumer).

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := m.newFlagSet("serve", "--coordinator LIST --job ID[=ALIAS][,ID...] --cert ADMIN.crt --key ADMIN.key --ca ca.crt "+
		"--serve-cert SERVE.crt --serve-key SERVE.key [--http-addr :8000] [--grpc-addr :8001] [--metrics-addr ADDR] [--max-batch 32] [--max-wait 2ms]")
	addrs, tf := addAdminFlags(fs)
	def := serve.DefaultConfig()
	jobs := fs.String("job", "", "jobs to serve, comma-separated; ID=ALIAS serves a job under the model name ALIAS (default: its ID)")
	serveCert := fs.String("serve-cert", envOr("ACCORD_SERVE_CERT", ""), "the inference server's certificate, role inference [$ACCORD_SERVE_CERT]")
	serveKey := fs.String("serve-key", envOr("ACCORD_SERVE_KEY", ""), "the inference server's key [$ACCORD_SERVE_KEY]")
	httpAddr := fs.String("http-addr", ":8000", "REST endpoint (Open Inference Protocol, mutual TLS); empty: none")
	grpcAddr := fs.String("grpc-addr", ":8001", "gRPC GRPCInferenceService (mutual TLS); empty: none")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics")
	maxBatch := fs.Int("max-batch", def.MaxBatch, "most rows in one batch")
	maxWait := fs.Duration("max-wait", def.MaxWait, "how long a batch waits for more rows after its first (0: only what is queued)")
	workers := fs.Int("workers", def.Workers, "batches run at once per model")
	maxRows := fs.Int("max-rows", def.MaxRows, "most rows in one request")
	poll := fs.Duration("poll", def.PollInterval, "how often to ask the coordinators for new rounds and revocations")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	cfg := def
	cfg.Logger = slog.New(slog.NewJSONHandler(m.Stderr, &slog.HandlerOptions{Level: lv}))
	var err error
	if cfg.Coordinators, err = coordinatorAddrs(*addrs); err != nil {
		return err
	}
	if cfg.Jobs, err = parseServeJobs(*jobs); err != nil {
		return err
	}
	mat, err := tf.load()
	if err != nil {
		return err
	}
	if *serveCert == "" || *serveKey == "" {
		return usageError{fmt.Errorf("--serve-cert and --serve-key are required: the listeners' certificate (accord pki issue --role inference)")}
	}
	sc, err := pki.LoadKeyPair(*serveCert, *serveKey)
	if err != nil {
		return fmt.Errorf("--serve-cert/--serve-key: %w", err)
	}
	cfg.CA, cfg.AdminCert, cfg.Cert = mat.pool, mat.cert, sc
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.MetricsAddr = *httpAddr, *grpcAddr, *metricsAddr
	cfg.MaxBatch, cfg.MaxWait, cfg.Workers, cfg.MaxRows, cfg.PollInterval = *maxBatch, *maxWait, *workers, *maxRows, *poll
	cfg.QueueRows = max(cfg.QueueRows, cfg.MaxRows)
	srv, err := serve.New(cfg)
	if err != nil {
		return usageError{err}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(m.Stdout, "serving %s: REST %s, gRPC %s (waiting for the first committed round)\n",
		strings.Join(jobNames(cfg.Jobs), ", "), orNone(srv.HTTPAddr()), orNone(srv.GRPCAddr()))
	<-ctx.Done()
	return nil
}

// parseServeJobs reads --job: ID or ID=ALIAS, comma-separated.
func parseServeJobs(list string) ([]serve.Job, error) {
	var out []serve.Job
	for _, part := range strings.Split(list, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		id, alias, _ := strings.Cut(part, "=")
		if id = strings.TrimSpace(id); id == "" {
			return nil, usageError{fmt.Errorf("--job %q: %q names no job ID", list, part)}
		}
		out = append(out, serve.Job{ID: id, Alias: strings.TrimSpace(alias)})
	}
	if len(out) == 0 {
		return nil, usageError{fmt.Errorf("--job: name at least one job ID")}
	}
	return out, nil
}

func jobNames(jobs []serve.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.Name())
	}
	return out
}

func orNone(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}
