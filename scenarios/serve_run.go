package scenarios

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/internal/freeport"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol/inferencepb"
	"github.com/accord-fl/accord/scenarios/report"
	"github.com/accord-fl/accord/serve"
)

// ServeReport is what a scenario's accord serve answered while its job ran
// (the serve section).
type ServeReport struct {
	// Protocols are the endpoints called: "rest", "grpc".
	Protocols []string `json:"protocols"`
	MaxBatch  int      `json:"max_batch"`
	MaxWait   string   `json:"max_wait"`
	// Sent counts the requests sent once accord serve was ready; Failed
	// those that got no answer (an error status, a refusal, a timeout);
	// Answered the others, AnsweredBy by protocol.
	Sent       int            `json:"requests_sent"`
	Failed     int            `json:"requests_failed"`
	Answered   int            `json:"requests_answered"`
	AnsweredBy map[string]int `json:"answered_by_protocol"`
	// Rows counts the test examples answered; Accuracy is the share the
	// served models classified right.
	Rows     int     `json:"rows_answered"`
	Accuracy float64 `json:"accuracy"`
	// Rounds are the rounds the answers named, in order.
	Rounds []ServedRound `json:"rounds_served"`
	// NotCommitted counts the answers naming a round the job did not
	// commit, or a committed round with another model digest.
	NotCommitted int `json:"answers_not_committed"`
	// LastRound is the latest round an answer named; the clients go on
	// after the job ends until it is the job's last committed round (or
	// 10 s, or 20 polls, have passed).
	LastRound uint32 `json:"last_round_served"`
	// ReadyAtSeconds is when the first answer came, from the run's start.
	ReadyAtSeconds float64 `json:"ready_at_seconds"`
	// P50Ms and P99Ms are the answered requests' latencies as the clients
	// saw them.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Errors are the first failures, as the clients saw them.
	Errors []string `json:"errors,omitempty"`
	// Where says where accord serve ran and what its links were.
	Where string `json:"where"`
}

// ServedRound is one round's model as the answers named it.
type ServedRound struct {
	Round   uint32 `json:"round"`
	Digest  string `json:"digest"`
	Answers int    `json:"answers"`
	Rows    int    `json:"rows"`
	// Accuracy is on the rows it answered; TestAccuracy the runner's
	// evaluation of the round's model on the whole test set.
	Accuracy     float64 `json:"accuracy"`
	TestAccuracy float64 `json:"test_accuracy"`
	// Committed is whether the job committed this round with this digest.
	Committed bool `json:"committed"`
}

// serveInvariant is what a run with a serve section adds to the
// invariants it checks.
const serveInvariant = "accord serve: every answer names a round the job committed, with that round's model digest, and no request failed"

// maxServeErrors is how many failures a report quotes.
const maxServeErrors = 5

// serveTarget is a running accord serve as its clients reach it.
type serveTarget struct {
	restURL  string // https://host:port; "" without REST
	grpcAddr string // host:port; "" without gRPC
	// dial opens connections to it (nil: directly).
	dial   func(ctx context.Context, addr string) (net.Conn, error)
	client tls.Certificate // a consumer's
	ca     *x509.CertPool
	where  string
	// exited reports whether the server stopped on its own, and why
	// (nil: it cannot).
	exited func() (bool, string)
	// stop stops the server; safe to call twice.
	stop func()
}

// serveAnswer is one answered request: the round and digest it names and
// each row's class probabilities.
type serveAnswer struct {
	round  uint32
	digest string
	probs  []float32
}

// serveRun is a scenario's accord serve and the clients calling it while
// the job runs. Its methods are safe on a nil serveRun (no serve section).
type serveRun struct {
	spec    ServeSpec
	target  serveTarget
	model   string
	test    *model.Dataset
	order   []int // the test rows, in the order requests take them
	start   time.Time
	say     func(format string, args ...any)
	rest    *http.Client
	grpc    inferencepb.GRPCInferenceServiceClient
	conn    *grpc.ClientConn
	stopped chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	mu       sync.Mutex
	next     int // the next row of order
	sent     int
	failed   int
	errs     []string
	latency  []time.Duration
	rounds   map[roundDigest]*servedCount
	by       map[string]int
	last     uint32
	readyAt  time.Time
	answered int
}

type roundDigest struct {
	round  uint32
	digest string
}

// servedCount is what one round's model answered.
type servedCount struct{ answers, rows, correct int }

// startServeInProcess starts an accord serve (serve.Server) in the
// runner's process following job on the coordinators at addrs, with an
// admin's and an inference server's certificates from ca, and its clients
// (nil, nil without a serve section).
func startServeInProcess(ctx context.Context, sc *Scenario, ca *pki.CA, addrs []string, jobID string, test *model.Dataset,
	start time.Time, logger *slog.Logger, say func(string, ...any)) (*serveRun, error) {
	if sc.Serve == nil {
		return nil, nil
	}
	v := sc.Serve
	org := sc.Coordinators[0].Organization
	issue := func(role pki.Role, name string) (tls.Certificate, error) {
		c, err := ca.Issue(pki.Identity{Role: role, Name: name, Organization: org})
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("serve: %s certificate: %w", role, err)
		}
		return c, nil
	}
	adminCert, err := issue(pki.RoleAdmin, serveIdentities[0])
	if err != nil {
		return nil, err
	}
	serveCert, err := issue(pki.RoleInference, serveIdentities[1])
	if err != nil {
		return nil, err
	}
	consumer, err := issue(pki.RoleConsumer, serveIdentities[2])
	if err != nil {
		return nil, err
	}
	cfg := serve.DefaultConfig()
	cfg.Coordinators, cfg.Jobs, cfg.CA = addrs, []serve.Job{{ID: jobID, Alias: sc.modelName()}}, ca.Pool()
	cfg.AdminCert, cfg.Cert, cfg.Logger = adminCert, serveCert, logger
	if v.REST {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if v.GRPC {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	cfg.MaxBatch, cfg.MaxWait, cfg.PollInterval = v.MaxBatch, time.Duration(v.MaxWait), time.Duration(v.Poll)
	srv, err := serve.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	t := serveTarget{grpcAddr: srv.GRPCAddr(), client: consumer, ca: ca.Pool(), stop: func() { srv.Close() },
		where: "in the runner's process (serve.Server), reaching the coordinators on plain loopback"}
	if a := srv.HTTPAddr(); a != "" {
		t.restURL = "https://" + a
	}
	return newServeRun(ctx, sc, t, test, start, say)
}

// startServe starts an accord serve process following job, in the first
// coordinator's region (its namespace, when regions are namespaces), and
// its clients in the runner (nil, nil without a serve section).
func (pr *processRun) startServe(ctx context.Context, grpcAddrs []string, jobID string, test *model.Dataset,
	start time.Time, say func(string, ...any)) (*serveRun, error) {
	sc := pr.sc
	if sc.Serve == nil {
		return nil, nil
	}
	v := sc.Serve
	region, org := sc.Coordinators[0].Region, sc.Coordinators[0].Organization
	var httpAddr, grpcAddr string
	if pr.net.ns != nil {
		// Ports past every coordinator's, in the first coordinator's region.
		host, port := pr.net.ns.host(region), nsBasePort+10*len(sc.Coordinators)
		httpAddr, grpcAddr = net.JoinHostPort(host, fmt.Sprint(port)), net.JoinHostPort(host, fmt.Sprint(port+1))
	} else {
		var err error
		if httpAddr, err = freeport.Loopback(); err != nil {
			return nil, err
		}
		if grpcAddr, err = freeport.Loopback(); err != nil {
			return nil, err
		}
	}
	if !v.REST {
		httpAddr = ""
	}
	if !v.GRPC {
		grpcAddr = ""
	}
	host, _, _ := net.SplitHostPort(cmp.Or(httpAddr, grpcAddr))
	adminFlags, err := pr.fed.issue(pki.Identity{Role: pki.RoleAdmin, Name: serveIdentities[0], Organization: org})
	if err != nil {
		return nil, fmt.Errorf("serve: admin certificate: %w", err)
	}
	serveCert, serveKey, err := pr.fed.ca.IssueToDir(pr.fed.dir, pki.Identity{Role: pki.RoleInference, Name: serveIdentities[1], Organization: org},
		pki.IssueOptions{Hosts: []string{host}})
	if err != nil {
		return nil, fmt.Errorf("serve: inference certificate: %w", err)
	}
	consumer, err := pr.fed.ca.Issue(pki.Identity{Role: pki.RoleConsumer, Name: serveIdentities[2], Organization: org})
	if err != nil {
		return nil, fmt.Errorf("serve: consumer certificate: %w", err)
	}
	args := []string{"serve", "--coordinator", strings.Join(grpcAddrs, ","), "--job", jobID + "=" + sc.modelName(),
		"--serve-cert", serveCert, "--serve-key", serveKey, "--http-addr=" + httpAddr, "--grpc-addr=" + grpcAddr,
		"--max-batch", fmt.Sprint(v.MaxBatch), "--max-wait", time.Duration(v.MaxWait).String(),
		"--poll", time.Duration(v.Poll).String(), "--log-level", pr.logLevel}
	args = append(args, adminFlags...)
	name := serveIdentities[1]
	p := &proc{name: name, argv: append(pr.net.command(region, pr.binary), args...), log: filepath.Join(pr.work, "logs", name+".log")}
	pr.all = append(pr.all, p) // the watcher reports it if it exits
	if err := p.start(); err != nil {
		return nil, err
	}
	where := "an accord serve process, reaching the coordinators on loopback"
	if pr.net.ns != nil {
		where = fmt.Sprintf("an accord serve process in region %q's network namespace", region)
	}
	t := serveTarget{grpcAddr: grpcAddr, dial: pr.net.dial, client: consumer, ca: pr.fed.ca.Pool(), where: where,
		stop: func() { p.stop(10 * time.Second) },
		exited: func() (bool, string) {
			if ok, err := p.exited(); ok {
				return true, fmt.Sprintf("accord serve exited (%v); %s:\n%s", err, p.log, p.tail(5))
			}
			return false, ""
		}}
	if httpAddr != "" {
		t.restURL = "https://" + httpAddr
	}
	return newServeRun(ctx, sc, t, test, start, say)
}

// newServeRun connects clients to t and starts them: each waits until the
// server is ready, then sends requests at its share of the rate until
// stopped.
func newServeRun(ctx context.Context, sc *Scenario, t serveTarget, test *model.Dataset, start time.Time, say func(string, ...any)) (*serveRun, error) {
	v := *sc.Serve
	r := &serveRun{spec: v, target: t, model: sc.modelName(), test: test, start: start, say: say, stopped: make(chan struct{}),
		rounds: map[roundDigest]*servedCount{}, by: map[string]int{},
		order: rand.New(rand.NewPCG(sc.Job.Seed, 0x7365727665)).Perm(test.Len())} // "serve"
	dial := t.dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
	}
	tlsCfg := pki.ConsumerTLS(t.client, t.ca)
	if t.restURL != "" {
		r.rest = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}}
	}
	if t.grpcAddr != "" {
		// A process may not listen yet: retry its port as often as REST's
		// readiness polls do, not after gRPC's default backoff of 1 s
		// and more.
		conn, err := grpc.NewClient(t.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)), grpc.WithContextDialer(dial),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second},
				MinConnectTimeout: 5 * time.Second}))
		if err != nil {
			t.stop()
			return nil, fmt.Errorf("serve: gRPC client: %w", err)
		}
		r.conn, r.grpc = conn, inferencepb.NewGRPCInferenceServiceClient(conn)
	}
	protocols := v.protocols()
	interval := time.Duration(float64(time.Second) * float64(v.Clients) / v.Rate)
	for k := range v.Clients {
		proto := protocols[k%len(protocols)]
		r.wg.Go(func() { r.client(ctx, proto, interval) })
	}
	say("scenario %s: accord serve follows the job as model %q (%s; batches of up to %d rows, %v); %d clients send %g requests/s",
		sc.Name, r.model, strings.Join(protocols, " and "), v.MaxBatch, time.Duration(v.MaxWait), v.Clients, v.Rate)
	return r, nil
}

// client sends requests over proto every interval once the server is
// ready, until stopped or the section's request count is reached.
func (r *serveRun) client(ctx context.Context, proto string, interval time.Duration) {
	if !r.waitReady(ctx, proto) {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-r.stopped:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		idx, ok := r.take()
		if !ok {
			return
		}
		x := make([]float32, 0, len(idx)*r.test.Features)
		for _, i := range idx {
			x = append(x, r.test.Row(i)...)
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		t0 := time.Now()
		var a serveAnswer
		var err error
		if proto == protoREST {
			a, err = r.inferREST(rctx, x, len(idx))
		} else {
			a, err = r.inferGRPC(rctx, x, len(idx))
		}
		cancel()
		r.record(proto, idx, a, err, time.Since(t0))
	}
}

// waitReady polls the server's readiness over proto until it is ready
// (true), or the run stops or the server has exited (false).
func (r *serveRun) waitReady(ctx context.Context, proto string) bool {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ready := false
		if proto == protoREST {
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, r.target.restURL+"/v2/health/ready", nil)
			if err == nil {
				if resp, err := r.rest.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ready = resp.StatusCode == http.StatusOK
				}
			}
		} else {
			resp, err := r.grpc.ServerReady(rctx, &inferencepb.ServerReadyRequest{})
			ready = err == nil && resp.GetReady()
		}
		cancel()
		if ready {
			return true
		}
		if r.target.exited != nil {
			if gone, _ := r.target.exited(); gone {
				return false
			}
		}
		select {
		case <-r.stopped:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// take reserves the next request's rows, unless the section's request
// count has been sent.
func (r *serveRun) take() ([]int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spec.Requests > 0 && r.sent >= r.spec.Requests {
		return nil, false
	}
	r.sent++
	idx := make([]int, r.spec.Rows)
	for k := range idx {
		idx[k] = r.order[r.next%len(r.order)]
		r.next++
	}
	return idx, true
}

// record counts one request's outcome.
func (r *serveRun) record(proto string, idx []int, a serveAnswer, err error, took time.Duration) {
	classes := r.test.Classes
	if err == nil && len(a.probs) != len(idx)*classes {
		err = fmt.Errorf("%d output values for %d rows of %d classes", len(a.probs), len(idx), classes)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		if len(r.errs) < maxServeErrors {
			r.errs = append(r.errs, fmt.Sprintf("%s at %.1fs: %v", proto, time.Since(r.start).Seconds(), err))
		}
		return
	}
	if r.readyAt.IsZero() {
		r.readyAt = time.Now()
		r.say("accord serve answers (%s) with round %d's model, %.1fs into the run", proto, a.round, time.Since(r.start).Seconds())
	}
	key := roundDigest{a.round, a.digest}
	c := r.rounds[key]
	if c == nil {
		c = &servedCount{}
		r.rounds[key] = c
	}
	c.answers++
	c.rows += len(idx)
	for k, i := range idx {
		if int32(argmax(a.probs[k*classes:(k+1)*classes])) == r.test.Y[i] {
			c.correct++
		}
	}
	r.answered++
	r.by[proto]++
	r.last = max(r.last, a.round)
	r.latency = append(r.latency, took)
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// inferREST sends one REST infer request.
func (r *serveRun) inferREST(ctx context.Context, x []float32, rows int) (serveAnswer, error) {
	type input struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float32 `json:"data"`
	}
	body, err := json.Marshal(map[string][]input{"inputs": {{Name: "input", Shape: []int{rows, r.test.Features}, Datatype: "FP32", Data: x}}})
	if err != nil {
		return serveAnswer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.target.restURL+"/v2/models/"+url.PathEscape(r.model)+"/infer", bytes.NewReader(body))
	if err != nil {
		return serveAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.rest.Do(req)
	if err != nil {
		return serveAnswer{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
		Parameters struct {
			Round  uint32 `json:"accord_round"`
			Digest string `json:"accord_digest"`
		} `json:"parameters"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return serveAnswer{}, fmt.Errorf("HTTP %d: reading the answer: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return serveAnswer{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, out.Error)
	}
	if len(out.Outputs) != 1 {
		return serveAnswer{}, fmt.Errorf("%d outputs; want 1", len(out.Outputs))
	}
	return serveAnswer{round: out.Parameters.Round, digest: out.Parameters.Digest, probs: out.Outputs[0].Data}, nil
}

// inferGRPC sends one gRPC ModelInfer call.
func (r *serveRun) inferGRPC(ctx context.Context, x []float32, rows int) (serveAnswer, error) {
	resp, err := r.grpc.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: r.model,
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32",
			Shape: []int64{int64(rows), int64(r.test.Features)}, Contents: &inferencepb.InferTensorContents{Fp32Contents: x}}}})
	if err != nil {
		return serveAnswer{}, err
	}
	if len(resp.GetOutputs()) != 1 {
		return serveAnswer{}, fmt.Errorf("%d outputs; want 1", len(resp.GetOutputs()))
	}
	p := resp.GetParameters()
	return serveAnswer{round: uint32(p["accord_round"].GetInt64Param()), digest: p["accord_digest"].GetStringParam(),
		probs: resp.GetOutputs()[0].GetContents().GetFp32Contents()}, nil
}

// finish lets the clients go on until an answer names the job's last
// committed round (at most 10 s or 20 polls), stops them and the server,
// and puts what they saw into rep: rep.Serve, and the serve invariant.
func (r *serveRun) finish(ctx context.Context, rep *Report) {
	if r == nil {
		return
	}
	deadline := time.Now().Add(max(10*time.Second, 20*time.Duration(r.spec.Poll)))
	exitNote := ""
	for {
		r.mu.Lock()
		done := r.last >= rep.RoundsCommitted || r.spec.Requests > 0 && r.sent >= r.spec.Requests
		r.mu.Unlock()
		if r.target.exited != nil {
			if gone, why := r.target.exited(); gone {
				exitNote, done = why, true
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.close()

	committed := map[uint32]RoundReport{}
	for _, rr := range rep.Rounds {
		committed[rr.Round] = rr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sr := &ServeReport{Protocols: r.spec.protocols(), MaxBatch: r.spec.MaxBatch, MaxWait: time.Duration(r.spec.MaxWait).String(),
		Sent: r.sent, Failed: r.failed, Answered: r.answered, AnsweredBy: r.by, LastRound: r.last,
		Errors: slices.Clone(r.errs), Where: r.target.where}
	if exitNote != "" {
		sr.Errors = append(sr.Errors, exitNote)
	}
	correct := 0
	for key, c := range r.rounds {
		correct += c.correct
		sr.Rows += c.rows
		s := ServedRound{Round: key.round, Digest: key.digest, Answers: c.answers, Rows: c.rows, Accuracy: float64(c.correct) / float64(c.rows)}
		if rr, ok := committed[s.Round]; ok && rr.ModelDigest == s.Digest {
			s.Committed, s.TestAccuracy = true, rr.Accuracy
		} else {
			sr.NotCommitted += s.Answers
		}
		sr.Rounds = append(sr.Rounds, s)
	}
	slices.SortFunc(sr.Rounds, func(a, b ServedRound) int {
		return cmp.Or(cmp.Compare(a.Round, b.Round), strings.Compare(a.Digest, b.Digest))
	})
	if sr.Rows > 0 {
		sr.Accuracy = float64(correct) / float64(sr.Rows)
	}
	if !r.readyAt.IsZero() {
		sr.ReadyAtSeconds = r.readyAt.Sub(r.start).Seconds()
	}
	if n := len(r.latency); n > 0 {
		lat := slices.Clone(r.latency)
		slices.Sort(lat)
		sr.P50Ms, sr.P99Ms = lat[n/2].Seconds()*1e3, lat[n*99/100].Seconds()*1e3
	}
	rep.Serve = sr
	rep.InvariantsChecked = slices.Concat(rep.InvariantsChecked, []string{serveInvariant})
	var problems []string
	if sr.NotCommitted > 0 {
		problems = append(problems, fmt.Sprintf("accord serve: %d answers named a round or digest the job did not commit", sr.NotCommitted))
	}
	if sr.Failed > 0 {
		problems = append(problems, fmt.Sprintf("accord serve: %d of %d requests failed (first: %s)", sr.Failed, sr.Sent, strings.Join(sr.Errors, "; ")))
	}
	if len(problems) > 0 {
		rep.InvariantsOK = false
		rep.InvariantsError = strings.Join(append(slices.DeleteFunc([]string{rep.InvariantsError}, func(s string) bool { return s == "" }), problems...), "; ")
	}
	if len(sr.Rounds) == 0 {
		r.say("accord serve: %d requests, %d failed, none answered (it is ready once a round has committed)", sr.Sent, sr.Failed)
		return
	}
	r.say("accord serve: %d requests, %d failed, %d answers naming an uncommitted round; rounds %d–%d answered (%d models); accuracy %.2f%% on %d rows; p50 %.1f ms, p99 %.1f ms",
		sr.Sent, sr.Failed, sr.NotCommitted, sr.Rounds[0].Round, sr.LastRound, len(sr.Rounds), 100*sr.Accuracy, sr.Rows, sr.P50Ms, sr.P99Ms)
}

// close stops the clients, waiting for requests in flight, then the
// server. Safe to call twice and on nil.
func (r *serveRun) close() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		close(r.stopped)
		r.wg.Wait()
		if r.conn != nil {
			r.conn.Close()
		}
		if r.rest != nil {
			r.rest.CloseIdleConnections()
		}
		r.target.stop()
	})
}

// table is the report's table of what accord serve answered.
func (sr *ServeReport) table(committed uint32) report.Table {
	rounds := "none"
	if n := len(sr.Rounds); n > 0 {
		rounds = fmt.Sprintf("%d–%d (%d models; the job committed %d rounds)", sr.Rounds[0].Round, sr.LastRound, n, committed)
	}
	var by []string
	for _, p := range sr.Protocols {
		by = append(by, fmt.Sprintf("%s %d", p, sr.AnsweredBy[p]))
	}
	errs := "none"
	if len(sr.Errors) > 0 {
		errs = strings.Join(sr.Errors, "; ")
	}
	return report.Table{
		Title:  "Serving: accord serve following the job, " + sr.Where,
		Header: []string{"", "accord serve"},
		Rows: [][]string{
			{"requests sent / failed", fmt.Sprintf("%d / %d", sr.Sent, sr.Failed)},
			{"answered, by protocol", fmt.Sprintf("%d (%s)", sr.Answered, strings.Join(by, ", "))},
			{"answers naming a round or digest not committed", fmt.Sprint(sr.NotCommitted)},
			{"rounds answered", rounds},
			{"accuracy on the rows answered", fmt.Sprintf("%.2f%% of %d", 100*sr.Accuracy, sr.Rows)},
			{"latency p50 / p99 (ms)", fmt.Sprintf("%.1f / %.1f", sr.P50Ms, sr.P99Ms)},
			{"first answer (s into the run)", fmt.Sprintf("%.1f", sr.ReadyAtSeconds)},
			{"batching", fmt.Sprintf("up to %d rows, waiting up to %s", sr.MaxBatch, sr.MaxWait)},
			{"failures", errs},
		},
	}
}
