package participant

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Config configures a participant daemon.
type Config struct {
	// Coordinators are the addresses to try, in order; more are learned
	// from the cluster.
	Coordinators []string
	// Cert is the participant's certificate (its identity); CA the
	// federation's.
	Cert tls.Certificate
	CA   *x509.CertPool
	// Region is reported at registration.
	Region string
	// PinCoordinators keeps to Coordinators: the addresses the cluster
	// reports at registration are not added (a site behind a proxy, or a
	// rehearsal's shaped links).
	PinCoordinators bool
	// Dial, if set, opens the connections to coordinators (scenarios route
	// them through a modelled network); nil dials directly.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Availability, if set, is declared at registration: the coordinators
	// choose this participant for rounds within its hours only.
	Availability *pb.Availability
	// Dataset names the data this participant holds ("mnist").
	Dataset string
	// Train is the local training data; Validation the local data that
	// global models are evaluated on (may be empty).
	Train, Validation *model.Dataset
	// MinBackoff and MaxBackoff bound the wait between reconnections.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives structured logs (nil: discarded).
	Logger *slog.Logger
	// Compute, if set, is a semaphore shared by participants simulated in
	// one process: each holds a slot while it trains or evaluates, so they
	// share the machine's cores instead of starving its other goroutines.
	Compute chan struct{}
	// BeforeUpload, if set, runs after local training and before the upload;
	// returning an error drops the update. Scenarios use it to simulate
	// participants that fail mid-round.
	BeforeUpload func(t *pb.Task) error
	// BeforeReport, if set, runs after an evaluation and before its report;
	// returning an error drops the report. Tests use it to hold reports
	// across a leader change.
	BeforeReport func(t *pb.Task) error
	// AfterTask, if set, runs after each task the participant completed.
	// Tests use it to kill a participant at a chosen point of a round.
	AfterTask func(t *pb.Task)
	// Policy is the site's policy: the train and evaluate tasks of jobs it
	// refuses are refused (RefuseTask) without touching the data. Nil
	// accepts every job.
	Policy *Policy
	// DeclaredExamples, if nonzero, is the example count this participant
	// declares instead of its real one: a fault, for tests and scenarios
	// that simulate a participant lying about its size. It is what
	// registration, plain updates and the secure-aggregation weight report.
	DeclaredExamples uint64
	// FlipUpdate, if nonzero, makes this participant Byzantine: it sends
	// −FlipUpdate times the update it trained (a sign-flipping attack), in
	// plain and secure rounds alike. A fault, for tests and scenarios.
	FlipUpdate float64
	// EpochDelay, if nonzero, makes every local epoch take at least this
	// long: a fault simulating a slow site, for the local time budget.
	EpochDelay time.Duration
	// FaultAt, if set, overrides FlipUpdate and EpochDelay task by task,
	// so that a scenario's timeline can turn a site hostile or slow from a
	// given round on.
	FaultAt func(t *pb.Task) (flip float64, epochDelay time.Duration)
	// SecAggPartBytes, if positive, replaces protocol.SecAggPartBytes as
	// the most bytes of one SecAggShareKeys or SecAggUnmask request: tests
	// lower it so that small rounds send their shares in parts.
	SecAggPartBytes int
}

// faults returns the sign-flip factor and the epoch delay for task t.
func (c Config) faults(t *pb.Task) (float64, time.Duration) {
	if c.FaultAt != nil {
		return c.FaultAt(t)
	}
	return c.FlipUpdate, c.EpochDelay
}

// Validate reports the first missing setting.
func (c Config) Validate() error {
	switch {
	case len(c.Coordinators) == 0:
		return errors.New("participant config: no coordinator address")
	case len(c.Cert.Certificate) == 0 || c.CA == nil:
		return errors.New("participant config: a certificate and the federation CA are required")
	case c.Dataset == "":
		return errors.New("participant config: no dataset name")
	case c.Train == nil || c.Train.Len() == 0:
		return errors.New("participant config: no training data")
	}
	if err := c.Train.Validate(); err != nil {
		return fmt.Errorf("participant config: training data: %w", err)
	}
	if c.Policy != nil {
		if err := c.Policy.Validate(); err != nil {
			return fmt.Errorf("participant config: site policy: %w", err)
		}
	}
	if c.Validation != nil && c.Validation.Len() > 0 {
		if err := c.Validation.Validate(); err != nil {
			return fmt.Errorf("participant config: validation data: %w", err)
		}
	}
	return nil
}

// Participant is one participant daemon.
type Participant struct {
	cfg   Config
	name  string // the identity in the certificate
	log   *slog.Logger
	creds credentials.TransportCredentials

	mu     sync.Mutex
	addrs  []string
	models map[string][]float32 // small cache of downloaded models by digest
	secure *SecureRounds        // secure aggregation in progress
	// refused holds the jobs the site policy refused, with the reason, so
	// that their later tasks are refused without checking again.
	refused map[string]string
}

// New checks cfg and returns a participant; it connects nothing until Run.
func New(cfg Config) (*Participant, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	leaf := cfg.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("participant config: certificate: %w", err)
		}
	}
	name := leaf.Subject.CommonName
	return &Participant{
		cfg: cfg, name: name, log: log.With("participant", name), addrs: slices.Clone(cfg.Coordinators),
		creds: credentials.NewTLS(pki.ClientTLS(cfg.Cert, cfg.CA)), models: map[string][]float32{}, secure: NewSecureRounds(8),
		refused: map[string]string{},
	}, nil
}

// Run connects and serves tasks until ctx is done, reconnecting with
// exponential backoff (and jitter) to the next known coordinator whenever
// the connection breaks. It returns nil when ctx ends.
func (p *Participant) Run(ctx context.Context) error {
	backoff := p.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		addr := p.addrs[attempt%len(p.addrs)]
		p.mu.Unlock()
		start := time.Now()
		registered, err := p.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			backoff = p.cfg.MinBackoff // it had been working
		}
		if registered {
			// Normal when leadership moves: the new leader's cluster takes
			// the participant back at once.
			p.log.Info("disconnected; reconnecting", "coordinator", addr, "err", err, "backoff", backoff.String())
		} else {
			p.log.Warn("cannot connect to coordinator; will retry", "coordinator", addr, "err", err, "backoff", backoff.String())
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

// session serves one connection to one coordinator until it breaks. It
// reports whether it registered.
func (p *Participant) session(ctx context.Context, addr string) (bool, error) {
	// Keepalive pings find a coordinator gone behind a silent network
	// partition in seconds, not in TCP's minutes; every 15 s respects the
	// coordinators' enforcement policy (one ping per 10 s at most).
	opts := []grpc.DialOption{grpc.WithTransportCredentials(p.creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second})}
	if p.cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(p.cfg.Dial))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	client := pb.NewParticipantServiceClient(conn)
	reg, err := client.Register(ctx, &pb.RegisterRequest{Region: p.cfg.Region, Examples: p.examples(), Datasets: []string{p.cfg.Dataset},
		Availability: p.cfg.Availability, Holdings: []*pb.DatasetShape{p.holding()}})
	if err != nil {
		return false, fmt.Errorf("register with %s: %w", addr, err)
	}
	p.log.Info("registered", "coordinator", addr, "dataset", p.cfg.Dataset, "examples", p.examples(), "region", p.cfg.Region)
	p.learn(reg.GetCoordinators())
	stream, err := client.Tasks(ctx, &pb.TasksRequest{})
	if err != nil {
		return true, fmt.Errorf("task stream from %s: %w", addr, err)
	}
	// A secure-aggregation task too large for one message comes in parts,
	// one after another; it is handled once the last came.
	var parts protocol.TaskParts
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, err
		}
		t, err := parts.Add(m, p.secure.Items(m))
		if err != nil {
			p.taskLog(m).Warn("secure aggregation task dropped: its parts do not reassemble", "err", err)
		}
		if t == nil {
			continue
		}
		log := p.taskLog(t)
		phase, secure := secAggPhase(t.GetKind())
		if secure {
			log.Debug("task received")
		} else {
			log.Info("task received")
		}
		began := time.Now()
		if err := p.handle(ctx, client, t); err != nil {
			switch {
			case ctx.Err() != nil:
				log.Debug("task abandoned: shutting down", "seconds", seconds(time.Since(began)), "err", err)
			case status.Code(err) == codes.FailedPrecondition:
				// The round (or its phase) closed without this update: it
				// had the updates it wanted. Nothing is wrong here.
				log.Info("task not needed: its round moved on", "seconds", seconds(time.Since(began)), "err", err)
			default:
				log.Warn("task failed", "seconds", seconds(time.Since(began)), "err", err)
			}
			continue
		}
		if secure {
			log.Info("secure aggregation phase done", "phase", phase, "seconds", seconds(time.Since(began)))
		}
		log.Debug("task done", "seconds", seconds(time.Since(began)))
		if p.cfg.AfterTask != nil {
			p.cfg.AfterTask(t)
		}
	}
}

// learn adds coordinator addresses the cluster told us about.
func (p *Participant) learn(addrs []string) {
	if p.cfg.PinCoordinators {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		if a != "" && !slices.Contains(p.addrs, a) {
			p.addrs = append(p.addrs, a)
		}
	}
}

// taskLog is the participant's logger with task t's job, round, attempt
// and kind.
func (p *Participant) taskLog(t *pb.Task) *slog.Logger {
	return p.log.With("job", t.GetJobId(), "round", t.GetRound(), "attempt", t.GetAttempt(), "kind", kindName(t.GetKind()))
}

// kindName is a task kind as the logs name it: train, evaluate,
// secagg_share_keys…
func kindName(k pb.TaskKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "TASK_KIND_"))
}

// secAggPhase names the secure-aggregation phase a task of kind k
// completes, if it is one of the later phases (advertising keys is part of
// a train task).
func secAggPhase(k pb.TaskKind) (string, bool) {
	switch k {
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS:
		return "share_keys", true
	case pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT:
		return "masked_input", true
	case pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		return "unmask", true
	}
	return "", false
}

// seconds is d in seconds, to the millisecond, as the logs give durations.
func seconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }

// holding is what this participant declares it holds: its dataset's name,
// features and classes, so that the coordinators refuse at submission a
// job whose model does not fit any participant's data.
func (p *Participant) holding() *pb.DatasetShape {
	return &pb.DatasetShape{Name: p.cfg.Dataset, Features: uint32(p.cfg.Train.Features), Classes: uint32(p.cfg.Train.Classes)}
}

// taskFailure marks an error that stops this site from doing a task (the
// model does not fit its data, local training failed): the coordinators
// are told why (ReportTaskFailure), so the round does not wait for this
// participant and operators read the reason in 'accord job show'.
type taskFailure struct{ error }

func (f taskFailure) Unwrap() error { return f.error }

// maxReportedReason bounds the reason sent with a task failure (the
// coordinators cut it there too).
const maxReportedReason = 200

func (p *Participant) handle(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task) error {
	err := p.do(ctx, client, t)
	var tf taskFailure
	if errors.As(err, &tf) && ctx.Err() == nil {
		p.reportFailure(ctx, client, t, tf.error)
	}
	return err
}

// reportFailure tells the coordinators why this site could not do task t.
// A failure to tell them is logged: the task failed all the same.
func (p *Participant) reportFailure(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task, cause error) {
	reason := cause.Error()
	if len(reason) > maxReportedReason {
		reason = strings.ToValidUTF8(reason[:maxReportedReason], "")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := client.ReportTaskFailure(ctx, &pb.ReportTaskFailureRequest{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(),
		Kind: t.GetKind(), Reason: reason})
	if err != nil {
		p.taskLog(t).Warn("could not report a failed task", "err", err)
	}
}

// fits checks that this site can do task t with model spec: the task
// names the dataset it holds, and the model reads that data's features
// and classes.
func (p *Participant) fits(t *pb.Task, spec model.Spec) error {
	if t.GetDataset() != p.cfg.Dataset {
		return fmt.Errorf("this site holds dataset %s, not %s", p.cfg.Dataset, t.GetDataset())
	}
	ds := p.cfg.Train
	if t.GetKind() == pb.TaskKind_TASK_KIND_EVALUATE && p.cfg.Validation != nil && p.cfg.Validation.Len() > 0 {
		ds = p.cfg.Validation
	}
	if ds.Features != spec.Inputs() || ds.Classes != spec.Classes() {
		return fmt.Errorf("%w: dataset has %d features and %d classes; model %s wants %d and %d",
			model.ErrShape, ds.Features, ds.Classes, spec, spec.Inputs(), spec.Classes())
	}
	return nil
}

func (p *Participant) do(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task) error {
	if d := t.GetDeadlineUnixMs(); d > 0 {
		if time.Now().After(time.UnixMilli(d)) {
			return errors.New("task arrived after its deadline")
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(d))
		defer cancel()
	}
	switch t.GetKind() {
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT, pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		return p.secure.Step(ctx, client, t)
	case pb.TaskKind_TASK_KIND_TRAIN, pb.TaskKind_TASK_KIND_EVALUATE:
		if p.refuse(ctx, client, t) {
			return nil
		}
	}
	spec, err := model.ParseSpec(t.GetModel())
	if err == nil {
		err = p.fits(t, spec)
	}
	if err != nil {
		return taskFailure{err}
	}
	base, err := p.download(ctx, client, t.GetBaseModelDigest())
	if err != nil {
		return err
	}
	switch t.GetKind() {
	case pb.TaskKind_TASK_KIND_TRAIN:
		return p.train(ctx, client, t, spec, base)
	case pb.TaskKind_TASK_KIND_EVALUATE:
		return p.evaluate(ctx, client, t, spec, base)
	default:
		return fmt.Errorf("unknown task kind %v", t.GetKind())
	}
}

// examples is the number of training examples this participant declares:
// its real count, unless Config.DeclaredExamples simulates a lie.
func (p *Participant) examples() uint64 {
	if p.cfg.DeclaredExamples != 0 {
		return p.cfg.DeclaredExamples
	}
	return uint64(p.cfg.Train.Len())
}

// refuse checks a task's job against the site policy. If the policy
// refuses it, refuse tells the coordinators why (a failure to tell them is
// logged: the task is refused all the same) and returns true.
func (p *Participant) refuse(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task) bool {
	p.mu.Lock()
	reason, known := p.refused[t.GetJobId()]
	p.mu.Unlock()
	if !known {
		err := p.cfg.Policy.Check(t)
		if err == nil {
			return false
		}
		reason = err.Error()
		p.mu.Lock()
		if len(p.refused) >= 1024 {
			clear(p.refused) // jobs long gone; they would only be checked again
		}
		p.refused[t.GetJobId()] = reason
		p.mu.Unlock()
		p.taskLog(t).Warn("site policy refuses job", "reason", reason)
	} else {
		p.taskLog(t).Debug("site policy refuses job", "reason", reason)
	}
	_, err := client.RefuseTask(ctx, &pb.RefuseTaskRequest{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(), Reason: reason})
	if err != nil {
		p.taskLog(t).Warn("could not report a refused task", "err", err)
	}
	return true
}

// download fetches a model by digest (or takes it from the cache) and checks
// its hash.
func (p *Participant) download(ctx context.Context, client pb.ParticipantServiceClient, digest string) ([]float32, error) {
	p.mu.Lock()
	cached, ok := p.models[digest]
	p.mu.Unlock()
	if ok {
		return cached, nil
	}
	began := time.Now()
	stream, err := client.DownloadModel(ctx, &pb.DownloadModelRequest{Digest: digest})
	if err != nil {
		return nil, err
	}
	blob, err := protocol.ReceiveBlob(func() ([]byte, error) {
		ch, err := stream.Recv()
		return ch.GetData(), err
	}, digest)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", digest, err)
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.models) >= 4 {
		clear(p.models)
	}
	p.models[digest] = params
	p.mu.Unlock()
	p.log.Debug("model downloaded", "digest", digest, "bytes", len(blob), "seconds", seconds(time.Since(began)))
	return params, nil
}

func (p *Participant) train(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task, spec model.Spec, base []float32) error {
	m, err := model.FromParams(spec, slices.Clone(base))
	if err != nil {
		return taskFailure{fmt.Errorf("base model: %w", err)}
	}
	cfg := model.TrainConfig{Epochs: int(t.GetLocalEpochs()), BatchSize: int(t.GetBatchSize()), LearningRate: t.GetLearningRate(), ProxMu: t.GetProxMu(), Seed: t.GetSeed()}
	budget := time.Duration(min(t.GetLocalTimeBudgetMs(), uint64(24*time.Hour/time.Millisecond))) * time.Millisecond
	flip, delay := p.cfg.faults(t)
	log := p.taskLog(t)
	began := time.Now()
	epochs, loss, err := p.trainEpochs(ctx, m, cfg, budget, delay)
	if err != nil {
		err = fmt.Errorf("local training: %w", err)
		if ctx.Err() == nil {
			err = taskFailure{err} // not the deadline: the round may still go on without us
		}
		return err
	}
	log.Info("trained", "epochs", epochs, "of", cfg.Epochs, "examples", p.cfg.Train.Len(), "loss", loss, "seconds", seconds(time.Since(began)))
	delta := m.Params
	for i, b := range base {
		delta[i] -= b
	}
	if flip != 0 {
		for i := range delta {
			delta[i] *= float32(-flip)
		}
	}
	if p.cfg.BeforeUpload != nil {
		if err := p.cfg.BeforeUpload(t); err != nil {
			return err
		}
	}
	done := uint32(0) // all of the task's epochs
	if epochs < cfg.Epochs {
		done = uint32(epochs)
		log.Info("local time budget ran out: sending partial work", "epochs", epochs, "of", cfg.Epochs)
	}
	if d := t.GetDp(); d != nil {
		if err := checkDPTask(t); err != nil {
			return taskFailure{err}
		}
		dp.ClipL2(delta, d.GetClip())
	}
	if t.GetSecagg() != nil {
		began = time.Now()
		if err := p.startSecure(ctx, client, t, delta, p.work(epochs, cfg.Epochs)); err != nil {
			return err
		}
		log.Info("secure aggregation phase done", "phase", "advertise_keys", "seconds", seconds(time.Since(began)))
		return nil
	}
	if m := t.GetSecureAggregation(); m != "" && m != "none" {
		return taskFailure{fmt.Errorf("the task claims secure aggregation %q but carries no masking parameters: not sending the update unmasked", m)}
	}
	hdr := &pb.UpdateHeader{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(), BaseModelDigest: t.GetBaseModelDigest(),
		NumParams: uint64(len(delta)), Examples: p.examples(), TrainLoss: loss, EpochsDone: done}
	began = time.Now()
	if err := Upload(ctx, client, hdr, delta); err != nil {
		return err
	}
	log.Info("uploaded", "bytes", 4*len(delta), "seconds", seconds(time.Since(began)))
	return nil
}

// checkDPTask checks a training task's differential privacy against the
// rest of the task, so that a coordinator cannot have this site send a
// masked update without the noise the mode promises (or an unmasked one
// labelled distributed): distributed DP goes with secure aggregation,
// central DP without it.
func checkDPTask(t *pb.Task) error {
	d := t.GetDp()
	masked := t.GetSecagg() != nil
	switch {
	case !(d.GetClip() > 0) || math.IsInf(d.GetClip(), 0):
		return fmt.Errorf("differential privacy task: clip %v", d.GetClip())
	case d.GetMode() == "distributed" && !masked:
		return errors.New("differential privacy task: distributed noise without secure aggregation")
	case d.GetMode() == "central" && masked:
		return errors.New("differential privacy task: central noise with secure aggregation would leave the unmasked sum without noise")
	case d.GetMode() != "distributed" && d.GetMode() != "central":
		return fmt.Errorf("differential privacy task: unknown mode %q", d.GetMode())
	case !(d.GetNoiseMultiplier() > 0) || math.IsInf(d.GetNoiseMultiplier(), 0):
		return fmt.Errorf("differential privacy task: noise multiplier %v", d.GetNoiseMultiplier())
	}
	return nil
}

// compute runs CPU-bound work holding a Compute slot, if there are slots:
// waiting on the network or a simulated delay holds none.
func (p *Participant) compute(ctx context.Context, work func() error) error {
	if p.cfg.Compute != nil {
		select {
		case p.cfg.Compute <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-p.cfg.Compute }()
	}
	return work()
}

// trainEpochs trains m for cfg.Epochs epochs, or fewer (at least one) if
// the local time budget runs out first, and returns the epochs done and
// the last epoch's mean loss.
func (p *Participant) trainEpochs(ctx context.Context, m *model.Model, cfg model.TrainConfig, budget, epochDelay time.Duration) (int, float64, error) {
	tr, err := model.NewTrainer(m, cfg)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var loss float64
	for e := 1; e <= cfg.Epochs; e++ {
		began := time.Now()
		if err := p.compute(ctx, func() (err error) { loss, err = tr.Epoch(ctx, p.cfg.Train); return err }); err != nil {
			return 0, 0, err
		}
		if epochDelay > 0 {
			select {
			case <-time.After(epochDelay - time.Since(began)):
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
		if budget > 0 && time.Since(start) >= budget {
			return e, loss, nil
		}
	}
	return cfg.Epochs, loss, nil
}

// work is the share of the task's epochs done.
func (p *Participant) work(done, asked int) float64 {
	if asked <= 0 || done >= asked {
		return 1
	}
	return float64(done) / float64(asked)
}

// Upload sends one update: the header, then the values in chunks.
func Upload(ctx context.Context, client pb.ParticipantServiceClient, hdr *pb.UpdateHeader, delta []float32) error {
	return uploadBytes(ctx, client, hdr, protocol.EncodeFloat32(delta))
}

// uploadBytes sends an update's header, then its encoded values in chunks.
func uploadBytes(ctx context.Context, client pb.ParticipantServiceClient, hdr *pb.UpdateHeader, data []byte) error {
	stream, err := client.UploadUpdate(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.UpdateChunk{Header: hdr}); err != nil {
		return uploadErr(stream, err)
	}
	for _, ch := range protocol.Chunks(data) {
		if err := stream.Send(&pb.UpdateChunk{Data: ch}); err != nil {
			return uploadErr(stream, err)
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

// uploadErr turns a failed Send into the server's status, which CloseAndRecv
// reports (Send itself only says io.EOF).
func uploadErr(stream pb.ParticipantService_UploadUpdateClient, err error) error {
	if errors.Is(err, io.EOF) {
		_, err = stream.CloseAndRecv()
	}
	return err
}

func (p *Participant) evaluate(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task, spec model.Spec, params []float32) error {
	val := p.cfg.Validation
	if val == nil || val.Len() == 0 {
		return taskFailure{errors.New("asked to evaluate, but this participant holds no validation data")}
	}
	m, err := model.FromParams(spec, params)
	if err != nil {
		return taskFailure{fmt.Errorf("model: %w", err)}
	}
	var met model.Metrics
	began := time.Now()
	err = p.compute(ctx, func() (err error) { met, err = model.Evaluate(ctx, m, val); return err })
	if err != nil {
		if ctx.Err() == nil {
			err = taskFailure{err}
		}
		return err
	}
	p.taskLog(t).Info("evaluated", "examples", met.Examples, "accuracy", met.Accuracy, "loss", met.Loss, "seconds", seconds(time.Since(began)))
	n := uint64(met.Examples)
	req := &pb.ReportEvaluationRequest{
		JobId: t.GetJobId(), ModelRound: t.GetRound(), ModelDigest: t.GetBaseModelDigest(),
		Examples: n, Correct: uint64(math.Round(met.Accuracy * float64(n))), LossSum: met.Loss * float64(n),
	}
	if p.cfg.BeforeReport != nil {
		if err := p.cfg.BeforeReport(t); err != nil {
			return err
		}
	}
	// A leader change makes the coordinators answer Unavailable for a
	// moment: try again until the task's deadline.
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err = client.ReportEvaluation(ctx, req)
		if status.Code(err) != codes.Unavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
