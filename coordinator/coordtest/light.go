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

	"github.com/accord-fl/accord/aggregate/secagg"
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

// quantise returns the update as a secure round's client input x = (w·Δ,
// w·clip), w = min(1, examples/scale), quantised for a cohort of n, as
// participant.startSecure forms it. It is computed once per round shape
// and shared: the clients clone their input.
func (u *Update) quantise(n int, clip, scale float64) ([]uint32, error) {
	key := quantKey{n, clip, scale}
	u.mu.Lock()
	defer u.mu.Unlock()
	if q, ok := u.quantised[key]; ok {
		return q, nil
	}
	quant, err := secagg.NewQuantizer(clip, n)
	if err != nil {
		return nil, err
	}
	w := min(1, float64(u.examples)/scale)
	x := make([]float32, len(u.delta)+1)
	for i, d := range u.delta {
		x[i] = float32(w * float64(d))
	}
	x[len(u.delta)] = float32(w * clip)
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	q := quant.Quantize(x, mrand.New(mrand.NewChaCha8(seed)))
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

	// secure holds this participant's secure-aggregation clients by round
	// attempt (session); only Serve's goroutine touches it.
	secure map[string]*lightSecure

	done, late, failed atomic.Int64
	mu                 sync.Mutex // guards lastErr
	lastErr            error
}

// lightSecure is one round attempt's client.
type lightSecure struct {
	client *secagg.Client
	cohort []string
	certs  map[int][]byte
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
	l := &Light{cfg: cfg, name: leaf.Subject.CommonName, conn: conn, client: pb.NewParticipantServiceClient(conn), secure: map[string]*lightSecure{}}
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
	if s := l.secure[string(lightSession(m))]; s != nil {
		return len(s.client.Neighbours())
	}
	return 0
}

func lightSession(t *pb.Task) []byte {
	return protocol.SecAggSession(t.GetJobId(), t.GetRound(), t.GetAttempt(), t.GetSecagg().GetGroup())
}

func lightRound(t *pb.Task) *pb.SecAggRound {
	return &pb.SecAggRound{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt()}
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
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS:
		return l.shareKeys(ctx, t)
	case pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT:
		return l.maskedInput(ctx, t)
	case pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		return l.unmask(ctx, t)
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
	st := t.GetSecagg()
	n := int(st.GetN())
	switch {
	case len(st.GetCohort()) != n || int(st.GetIndex()) >= n || st.GetCohort()[st.GetIndex()] != l.name:
		return fmt.Errorf("secure aggregation task: cohort of %d names for %d clients; index %d is not %s", len(st.GetCohort()), n, st.GetIndex(), l.name)
	case st.GetLength() != uint64(l.cfg.Update.Params())+1:
		return fmt.Errorf("secure aggregation task: vectors of %d values; this update has %d (+1 weight)", st.GetLength(), l.cfg.Update.Params())
	case !(st.GetWeightScale() >= 1):
		return fmt.Errorf("secure aggregation task: weight scale %v", st.GetWeightScale())
	}
	x, err := l.cfg.Update.quantise(n, st.GetClip(), st.GetWeightScale())
	if err != nil {
		return fmt.Errorf("secure aggregation task: %w", err)
	}
	params := secagg.Params{N: n, K: int(st.GetDegree()), T: int(st.GetThreshold()), Length: int(st.GetLength()), GraphSeed: st.GetGraphSeed(),
		Session: lightSession(t)}
	s := &lightSecure{cohort: st.GetCohort(), certs: map[int][]byte{}}
	sign := func(msg []byte) ([]byte, error) { return pki.Sign(l.cfg.Cert, msg) }
	verify := func(from int, identity string, msg, sig []byte) bool {
		if from < 0 || from >= len(s.cohort) || s.cohort[from] != identity {
			return false
		}
		return pki.VerifySigned(l.cfg.CA, s.certs[from], pki.Identity{Role: pki.RoleParticipant, Name: identity}, msg, sig) == nil
	}
	if s.client, err = secagg.NewClient(params, int(st.GetIndex()), l.name, x, sign, verify); err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	ad, err := s.client.Advertise()
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	if len(l.secure) >= 4 {
		clear(l.secure) // attempts long gone
	}
	l.secure[string(lightSession(t))] = s
	_, err = l.client.SecAggAdvertise(ctx, &pb.SecAggAdvertiseRequest{Round: lightRound(t),
		Advertisement: protocol.AdvertisementToWire(ad, l.cfg.Cert.Certificate[0])})
	return err
}

// session returns the client of t's round attempt.
func (l *Light) session(t *pb.Task) (*lightSecure, error) {
	s := l.secure[string(lightSession(t))]
	if s == nil {
		return nil, fmt.Errorf("secure aggregation %v for a round attempt this participant did not advertise in", t.GetKind())
	}
	return s, nil
}

// shareKeys checks the neighbours' advertisements and sends them their
// shares (phase 1), in parts if they exceed one message.
func (l *Light) shareKeys(ctx context.Context, t *pb.Task) error {
	s, err := l.session(t)
	if err != nil {
		return err
	}
	var ads []secagg.Advertisement
	for _, a := range t.GetSecagg().GetAdvertisements() {
		from := int(a.GetFrom())
		if from >= len(s.cohort) {
			return fmt.Errorf("secure aggregation: advertisement from client %d of %d", from, len(s.cohort))
		}
		s.certs[from] = a.GetCertificate()
		ads = append(ads, protocol.AdvertisementFromWire(a, s.cohort[from]))
	}
	shares, err := s.client.ShareKeys(ads)
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	reqs, err := protocol.SplitShareKeys(lightRound(t), protocol.SharesToWire(shares), protocol.SecAggPartBytes)
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	for _, req := range reqs {
		if _, err := l.client.SecAggShareKeys(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

// maskedInput masks the update and uploads it (phase 2).
func (l *Light) maskedInput(ctx context.Context, t *pb.Task) error {
	s, err := l.session(t)
	if err != nil {
		return err
	}
	st := t.GetSecagg()
	y, err := s.client.MaskedInput(protocol.SharesFromWire(st.GetShares()), lightInts(st.GetSurvivors()))
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	hdr := &pb.UpdateHeader{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(), BaseModelDigest: t.GetBaseModelDigest(),
		NumParams: uint64(len(y)), Masked: true}
	return participant.UploadMasked(ctx, l.client, hdr, y)
}

// unmask reveals the shares that unmask the survivors' sum (phase 3).
func (l *Light) unmask(ctx context.Context, t *pb.Task) error {
	s, err := l.session(t)
	if err != nil {
		return err
	}
	delete(l.secure, string(lightSession(t)))
	reveals, err := s.client.Unmask(lightInts(t.GetSecagg().GetSurvivors()))
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	reqs, err := protocol.SplitUnmask(lightRound(t), protocol.RevealsToWire(reveals), protocol.SecAggPartBytes)
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	for _, req := range reqs {
		if _, err := l.client.SecAggUnmask(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

func lightInts(v []uint32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
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
