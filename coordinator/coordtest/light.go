package coordtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Update is the precomputed update lightweight participants send in every
// round they are chosen for, instead of training. Every participant given
// the same Update shares its vectors, which nobody writes after NewUpdate.
type Update struct {
	delta    []float32
	examples uint64

	mu        sync.Mutex
	quantised map[quantKey][]uint32
}

// quantKey is what a secure round's quantised input depends on.
type quantKey struct {
	n           int
	clip, scale float64
}

// NewUpdate returns an update of delta from a participant declaring
// examples training examples.
func NewUpdate(delta []float32, examples uint64) *Update {
	return &Update{delta: delta, examples: examples, quantised: map[quantKey][]uint32{}}
}

// Params is the update's length.
func (u *Update) Params() int { return len(u.delta) }

// quantise returns the update as a secure round's client input
// (participant.SecureInput, all work done), computed once per round shape
// and shared: the clients clone their input.
func (u *Update) quantise(st *pb.SecAggTask) ([]uint32, error) {
	key := quantKey{int(st.GetN()), st.GetClip(), st.GetWeightScale()}
	u.mu.Lock()
	defer u.mu.Unlock()
	if q, ok := u.quantised[key]; ok {
		return q, nil
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("secure aggregation task: %w", err)
	}
	q, err := participant.SecureInput(st, u.delta, u.examples, 1, mrand.New(mrand.NewChaCha8(seed)))
	if err != nil {
		return nil, err
	}
	u.quantised[key] = q
	return q, nil
}

// LightConfig configures a lightweight participant.
type LightConfig struct {
	// Addr is the coordinator it connects to (and stays with).
	Addr string
	// Cert is its certificate (its identity), CA the federation's.
	Cert tls.Certificate
	CA   *x509.CertPool
	// Dataset, Features and Classes are the data it declares it holds.
	Dataset           string
	Features, Classes int
	// Update is what it sends in each round.
	Update *Update
	// Slots, if set, is a semaphore shared by participants in one process:
	// each holds a slot while it does a task (downloads, masks, uploads),
	// so that a thousand of them given their tasks at once take turns on
	// the machine's cores instead of all competing with the coordinators.
	Slots chan struct{}
	// OnTask, if set, is called with every task as it arrives (whole).
	OnTask func(t *pb.Task)
}

// Light is a lightweight participant for benchmarks of many participants
// in one process: it speaks the participant protocol for real (mutual TLS,
// the task stream, the base model's download, the upload, and under secure
// aggregation the client's every phase with its real cryptography) but
// trains nothing: its update is precomputed. It does not reconnect; a
// broken task stream ends Serve.
type Light struct {
	cfg    LightConfig
	name   string
	conn   *grpc.ClientConn
	client pb.ParticipantServiceClient

	// secure holds this participant's secure-aggregation clients.
	secure *participant.SecureRounds

	done, late, failed atomic.Int64
	mu                 sync.Mutex // guards lastErr
	lastErr            error
}

// DialLight connects a lightweight participant to cfg.Addr and registers
// it; Serve then takes tasks.
func DialLight(ctx context.Context, cfg LightConfig) (*Light, error) {
	leaf := cfg.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("light participant: certificate: %w", err)
		}
	}
	conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cfg.Cert, cfg.CA))))
	if err != nil {
		return nil, fmt.Errorf("light participant %s: %w", leaf.Subject.CommonName, err)
	}
	l := &Light{cfg: cfg, name: leaf.Subject.CommonName, conn: conn, client: pb.NewParticipantServiceClient(conn), secure: participant.NewSecureRounds(4)}
	_, err = l.client.Register(ctx, &pb.RegisterRequest{Examples: cfg.Update.examples, Datasets: []string{cfg.Dataset},
		Holdings: []*pb.DatasetShape{{Name: cfg.Dataset, Features: uint32(cfg.Features), Classes: uint32(cfg.Classes)}}})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("light participant %s: register with %s: %w", l.name, cfg.Addr, err)
	}
	return l, nil
}

// Name is the participant's identity.
func (l *Light) Name() string { return l.name }

// Close closes the connection.
func (l *Light) Close() error { return l.conn.Close() }

// Stats are the tasks a lightweight participant did, those whose round had
// moved on without it (FailedPrecondition: late), and those that failed
// otherwise, with the last failure.
func (l *Light) Stats() (done, late, failed int64, last error) {
	l.mu.Lock()
	last = l.lastErr
	l.mu.Unlock()
	return l.done.Load(), l.late.Load(), l.failed.Load(), last
}

// Serve opens the task stream and does each task as it comes, until ctx
// ends (nil) or the stream breaks (its error).
func (l *Light) Serve(ctx context.Context) error {
	stream, err := l.client.Tasks(ctx, &pb.TasksRequest{})
	if err != nil {
		return fmt.Errorf("light participant %s: task stream: %w", l.name, err)
	}
	var parts protocol.TaskParts
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("light participant %s: task stream: %w", l.name, err)
		}
		t, err := parts.Add(m, l.items(m))
		if err != nil {
			l.record(fmt.Errorf("task parts: %w", err))
		}
		if t == nil {
			continue
		}
		if l.cfg.OnTask != nil {
			l.cfg.OnTask(t)
		}
		l.record(l.doInSlot(ctx, t))
	}
}

// record counts a task's outcome.
func (l *Light) record(err error) {
	switch {
	case err == nil:
		l.done.Add(1)
	case status.Code(err) == codes.FailedPrecondition:
		l.late.Add(1)
	default:
		l.failed.Add(1)
		l.mu.Lock()
		l.lastErr = err
		l.mu.Unlock()
	}
}

// items is the most advertisements or shares a task of m's round attempt
// may bring: this client's neighbours.
func (l *Light) items(m *pb.Task) int {
	return l.secure.Items(m)
}

// doInSlot does a task holding one of the Slots, if there are slots.
func (l *Light) doInSlot(ctx context.Context, t *pb.Task) error {
	if l.cfg.Slots != nil {
		select {
		case l.cfg.Slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-l.cfg.Slots }()
	}
	return l.do(ctx, t)
}

// do does one task within its deadline.
func (l *Light) do(ctx context.Context, t *pb.Task) error {
	if d := t.GetDeadlineUnixMs(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(d))
		defer cancel()
	}
	switch t.GetKind() {
	case pb.TaskKind_TASK_KIND_TRAIN:
		return l.train(ctx, t)
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT, pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		return l.secure.Step(ctx, l.client, t)
	}
	return fmt.Errorf("light participant: task kind %v not done", t.GetKind())
}

// train downloads the base model, as a participant must before training,
// then sends the precomputed update: plainly, or by advertising its keys
// under secure aggregation.
func (l *Light) train(ctx context.Context, t *pb.Task) error {
	if err := l.download(ctx, t.GetBaseModelDigest()); err != nil {
		return err
	}
	if t.GetSecagg() != nil {
		return l.advertise(ctx, t)
	}
	u := l.cfg.Update
	hdr := &pb.UpdateHeader{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(), BaseModelDigest: t.GetBaseModelDigest(),
		NumParams: uint64(len(u.delta)), Examples: u.examples}
	return participant.Upload(ctx, l.client, hdr, u.delta)
}

// download reads the model's chunks to the end and drops them.
func (l *Light) download(ctx context.Context, digest string) error {
	stream, err := l.client.DownloadModel(ctx, &pb.DownloadModelRequest{Digest: digest})
	if err != nil {
		return fmt.Errorf("download %s: %w", digest, err)
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("download %s: %w", digest, err)
		}
	}
}

// advertise makes the round's client and sends its keys (phase 0).
func (l *Light) advertise(ctx context.Context, t *pb.Task) error {
	if err := participant.CheckSecureTask(t, l.name, l.cfg.Update.Params()); err != nil {
		return err
	}
	x, err := l.cfg.Update.quantise(t.GetSecagg())
	if err != nil {
		return err
	}
	s, err := participant.NewSecureRound(t, participant.SecureIdentity{Name: l.name, Cert: l.cfg.Cert, CA: l.cfg.CA}, x, 0)
	if err != nil {
		return err
	}
	l.secure.Put(t, s)
	return s.Advertise(ctx, l.client)
}

// Fleet is n lightweight participants site-0…site-(n−1), each of its own
// organisation, holding MNIST-shaped data (784 features, 10 classes):
// participant i connects to addrs[i mod len(addrs)], as participants
// configured with their nearest coordinator first spread over a cluster,
// and serves its task stream in a goroutine of its own until Stop or the
// end of the test.
type Fleet struct {
	lights []*Light
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	served  error                // the first Serve that ended with an error
	opened  map[uint32]time.Time // round → when its first training task arrived
	changed chan struct{}        // closed, and replaced, when opened or served change
}

// FleetConfig configures a fleet (StartFleet).
type FleetConfig struct {
	// N participants connect to Addrs, participant i to Addrs[i mod
	// len(Addrs)], with certificates from CA.
	N     int
	Addrs []string
	CA    *pki.CA
	// Update is what each sends (LightConfig.Update).
	Update *Update
	// Slots, if positive, is how many participants do a task at once
	// (LightConfig.Slots); 0 lets every one go at once.
	Slots int
}

// StartFleet issues the participants' certificates, connects and
// registers them (32 at a time) and starts serving.
func StartFleet(tb testing.TB, cfg FleetConfig) *Fleet {
	tb.Helper()
	n := cfg.N
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{lights: make([]*Light, n), cancel: cancel, opened: map[uint32]time.Time{}, changed: make(chan struct{})}
	tb.Cleanup(f.Stop)
	var slots chan struct{}
	if cfg.Slots > 0 {
		slots = make(chan struct{}, cfg.Slots)
	}
	work := make(chan int)
	errs := make(chan error, n)
	var dial sync.WaitGroup
	for range min(n, 32) {
		dial.Go(func() {
			for i := range work {
				errs <- f.dial(ctx, i, cfg, slots)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	dial.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, l := range f.lights {
		f.wg.Go(func() {
			if err := l.Serve(ctx); err != nil {
				f.mu.Lock()
				if f.served == nil {
					f.served = err
					f.notifyLocked()
				}
				f.mu.Unlock()
			}
		})
	}
	return f
}

// dial connects and registers participant i.
func (f *Fleet) dial(ctx context.Context, i int, cfg FleetConfig, slots chan struct{}) error {
	name := fmt.Sprintf("site-%d", i)
	cert, err := cfg.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "org-" + name})
	if err != nil {
		return err
	}
	l, err := DialLight(ctx, LightConfig{Addr: cfg.Addrs[i%len(cfg.Addrs)], Cert: cert, CA: cfg.CA.Pool(), Dataset: "mnist", Features: 784, Classes: 10,
		Update: cfg.Update, Slots: slots, OnTask: f.sawTask})
	if err != nil {
		return err
	}
	f.lights[i] = l
	return nil
}

// sawTask notes when the first training task of each round arrived.
func (f *Fleet) sawTask(t *pb.Task) {
	if t.GetKind() != pb.TaskKind_TASK_KIND_TRAIN {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.opened[t.GetRound()]; !ok {
		f.opened[t.GetRound()] = time.Now()
		f.notifyLocked()
	}
}

func (f *Fleet) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// WaitRound waits until a participant received a training task of round
// (of whichever job: a fleet serves one at a time), which the leader sends
// once the round before committed, and returns when the first came. It
// fails at once if a participant's task stream ended.
func (f *Fleet) WaitRound(ctx context.Context, round uint32, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		at, ok := f.opened[round]
		served, changed := f.served, f.changed
		f.mu.Unlock()
		switch {
		case ok:
			return at, nil
		case served != nil:
			return time.Time{}, fmt.Errorf("waiting for round %d: %w", round, served)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("no participant received a task of round %d within %v", round, timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// Stop ends every participant's task stream and connection, and waits
// for their goroutines. It is safe twice.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
	for _, l := range f.lights {
		if l != nil {
			l.Close()
		}
	}
}

// Err is the first error a participant's task stream ended with (nil:
// every one still serves).
func (f *Fleet) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served
}

// Stats sums the participants' Stats.
func (f *Fleet) Stats() (done, late, failed int64, last error) {
	for _, l := range f.lights {
		d, lt, fl, err := l.Stats()
		done, late, failed = done+d, late+lt, failed+fl
		if err != nil {
			last = fmt.Errorf("%s: %w", l.Name(), err)
		}
	}
	return done, late, failed, last
}
