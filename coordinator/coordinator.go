package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/accord-fl/accord/coordinator/blobsync"
	"github.com/accord-fl/accord/coordinator/peers"
	"github.com/accord-fl/accord/coordinator/raftlayer"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/netlimit"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/store"
)

// Config configures one coordinator.
type Config struct {
	// Name is the coordinator's Raft server ID; it should match its certificate.
	Name string
	// DataDir holds the Badger database and Raft snapshots.
	DataDir string
	// GRPCAddr is where participants and admins connect ("127.0.0.1:0" picks a port).
	GRPCAddr string
	// RaftAddr is where other coordinators connect for Raft.
	RaftAddr string
	// Bootstrap makes this node form a new cluster of itself when its data
	// folder holds no Raft state.
	Bootstrap bool
	// BootstrapExpect, if positive, forms the cluster once that many
	// coordinators have found each other by gossip (and this node has no
	// Raft state).
	BootstrapExpect int
	// GossipAddr is where memberlist listens (UDP and TCP).
	GossipAddr string
	// Join lists gossip addresses of coordinators to join.
	Join []string
	// GossipKey encrypts gossip (16, 24 or 32 bytes; from `accord pki init`).
	GossipKey []byte
	// FastGossip shortens memberlist's probe intervals (tests, scenarios
	// on loopback). WANGossip takes memberlist's WAN timings instead, for
	// coordinators on several continents (SetProfile sets it).
	FastGossip bool
	WANGossip  bool
	// Network, if set, carries this coordinator's links to the other
	// coordinators: Raft, gRPC and gossip. Scenarios set it to run a
	// modelled WAN on loopback (netsim); nil is the host's network.
	Network Network
	// Cert is the coordinator's certificate; CA the federation's.
	Cert tls.Certificate
	CA   *x509.CertPool
	// MetricsAddr, if set, serves Prometheus metrics at /metrics.
	MetricsAddr string
	// HTTPAddr, if set, serves the read-only status page over HTTPS with
	// the coordinator's certificate: members, jobs, rounds, participants.
	// Clients present a certificate of the federation CA (any role), or,
	// if StatusTokenFile is set, that file's bearer token.
	HTTPAddr string
	// StatusTokenFile names a file holding the status page's bearer token
	// (one word, at least 16 characters), read at Start.
	StatusTokenFile string
	// Logger receives structured logs (nil: discarded).
	Logger *slog.Logger

	// Raft timing.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// ApplyTimeout bounds one Raft apply.
	ApplyTimeout time.Duration
	// SnapshotThreshold is the number of log entries between snapshots.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log; a
	// follower further behind is sent the snapshot (InstallSnapshot).
	TrailingLogs uint64
	// Tick is how often the leader re-examines open rounds for deadlines.
	Tick time.Duration
	// Limits bound what peers, participants and requests can take.
	Limits Limits
	// RetentionInterval is how often models no job keeps are deleted;
	// ValueLogGCInterval how often Badger's value log is collected.
	RetentionInterval  time.Duration
	ValueLogGCInterval time.Duration

	// secAggPartBytes, if positive, replaces protocol.SecAggPartBytes as
	// the most bytes of a task message carrying secure-aggregation items:
	// tests lower it so that small rounds send their tasks in parts.
	secAggPartBytes int
}

// DefaultConfig is a coordinator on loopback with hashicorp/raft's
// LAN timings.
func DefaultConfig() Config {
	rc := raft.DefaultConfig()
	return Config{
		GRPCAddr: "127.0.0.1:7700", RaftAddr: "127.0.0.1:7701", GossipAddr: "127.0.0.1:7702",
		HeartbeatTimeout: rc.HeartbeatTimeout, ElectionTimeout: rc.ElectionTimeout,
		LeaderLeaseTimeout: rc.LeaderLeaseTimeout, CommitTimeout: rc.CommitTimeout,
		ApplyTimeout: 10 * time.Second, SnapshotThreshold: rc.SnapshotThreshold, SnapshotInterval: rc.SnapshotInterval,
		Tick: 50 * time.Millisecond, Limits: DefaultLimits(), RetentionInterval: 10 * time.Second, ValueLogGCInterval: 5 * time.Minute,
	}
}

// Network carries a coordinator's links to its peers (see Config.Network).
type Network interface {
	// DialContext opens a stream connection, as net.Dialer does.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// WrapTransport returns the gossip transport to use in place of t.
	WrapTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Timing profiles: Raft's and gossip's timeouts for the network between
// the coordinators.
const (
	// ProfileLAN is hashicorp/raft's defaults (heartbeat and election
	// timeouts 1 s, leader lease 500 ms) and memberlist's LAN timings:
	// coordinators in one data centre or one country.
	ProfileLAN = "lan"
	// ProfileWAN triples Raft's timeouts (3 s, lease 1.5 s: about ten
	// round trips of a 300 ms intercontinental path, as etcd's tuning
	// guide advises for the election timeout) and takes memberlist's WAN
	// timings (probe timeout 3 s): coordinators on several continents.
	// Failover takes longer; a slow link no longer looks like a dead leader.
	ProfileWAN = "wan"
)

// SetProfile sets the Raft and gossip timings of a profile (ProfileLAN or
// ProfileWAN).
func (c *Config) SetProfile(name string) error {
	rc := raft.DefaultConfig()
	scale := time.Duration(1)
	switch name {
	case ProfileLAN:
		c.WANGossip = false
	case ProfileWAN:
		scale, c.WANGossip, c.FastGossip = 3, true, false
	default:
		return fmt.Errorf("timing profile %q: want %s or %s", name, ProfileLAN, ProfileWAN)
	}
	c.HeartbeatTimeout, c.ElectionTimeout = scale*rc.HeartbeatTimeout, scale*rc.ElectionTimeout
	c.LeaderLeaseTimeout, c.CommitTimeout = scale*rc.LeaderLeaseTimeout, scale*rc.CommitTimeout
	return nil
}

// Validate reports the first missing or inconsistent setting.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("coordinator config: Name is empty")
	case c.DataDir == "":
		return errors.New("coordinator config: DataDir is empty")
	case c.GRPCAddr == "" || c.RaftAddr == "" || c.GossipAddr == "":
		return errors.New("coordinator config: GRPCAddr, RaftAddr and GossipAddr are required")
	case len(c.GossipKey) != 0 && len(c.GossipKey) != 16 && len(c.GossipKey) != 24 && len(c.GossipKey) != 32:
		return errors.New("coordinator config: GossipKey must be 16, 24 or 32 bytes")
	case c.FastGossip && c.WANGossip:
		return errors.New("coordinator config: FastGossip and WANGossip are exclusive")
	case c.Bootstrap && c.BootstrapExpect > 0:
		return errors.New("coordinator config: set Bootstrap or BootstrapExpect, not both")
	case c.StatusTokenFile != "" && c.HTTPAddr == "":
		return errors.New("coordinator config: StatusTokenFile is set without HTTPAddr (the status page)")
	case len(c.Cert.Certificate) == 0 || c.CA == nil:
		return errors.New("coordinator config: a certificate and the federation CA are required (no insecure mode)")
	}
	leaf, err := x509.ParseCertificate(c.Cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("coordinator config: certificate: %w", err)
	}
	id, err := pki.IdentityOf(leaf)
	switch {
	case err != nil:
		return fmt.Errorf("coordinator config: certificate: %w", err)
	case id.Role != pki.RoleCoordinator:
		return fmt.Errorf("coordinator config: the certificate of %s is a %s's, not a coordinator's", id.Name, id.Role)
	case id.Name != c.Name:
		return fmt.Errorf("coordinator config: name %q differs from the certificate's %q (a coordinator's name is its certificate's, and its Raft server ID)", c.Name, id.Name)
	case c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.ApplyTimeout <= 0 || c.Tick <= 0 ||
		c.RetentionInterval <= 0 || c.ValueLogGCInterval <= 0:
		return errors.New("coordinator config: timeouts must be positive")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("coordinator config: %w", err)
	}
	return nil
}

// Coordinator is one member of the coordinator cluster.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	blobs   *blobsync.Syncer // models and optimiser states on a quorum, and fetched where missing
	fsm     *state.FSM
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	grpc    *grpc.Server
	grpcLn  net.Listener
	health  *health.Server
	metrics *metrics
	httpSrv *http.Server
	// metricsAddr is where the metrics server listens, once started.
	metricsAddr string
	// statusSrv serves the status page at statusAddr (HTTPAddr).
	statusSrv  *http.Server
	statusAddr string

	sessions        *sessions
	streams         *streamRegistry  // long-lived streams, by certificate serial
	nonces          *nonceCache      // signed admin requests seen here
	revoked         *revocationQueue // revocations applied, for revocationLoop
	rates           *rateLimiter     // participants' call rates
	leader          leaderState
	exec            *executor // performs the leader's decisions
	notifyCh        chan bool
	members         *membership
	links           *peers.Links // to the other coordinators
	org             string
	bootstrapped    atomic.Bool
	crashed         bool // Crash: stop without leaving gossip
	startupRestores int64

	stop        chan struct{}
	stopLead    chan struct{} // closed first by Shutdown: ends monitorLeadership
	leadStopped chan struct{} // set by Start; closed when monitorLeadership has returned
	wg          sync.WaitGroup
	closeOnce   sync.Once
	crashOnce   sync.Once
	closeErr    error
}

// New checks cfg and returns a coordinator; it starts nothing.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	org := ""
	if leaf, err := x509.ParseCertificate(cfg.Cert.Certificate[0]); err == nil && len(leaf.Subject.Organization) > 0 {
		org = leaf.Subject.Organization[0]
	}
	c := &Coordinator{
		cfg: cfg, log: log.With("coordinator", cfg.Name), fsm: state.NewFSM(cfg.CA), sessions: newSessions(), org: org,
		streams: newStreamRegistry(), nonces: newNonceCache(), revoked: &revocationQueue{wake: make(chan struct{}, 1)},
		rates:   newRateLimiter(cfg.Limits),
		metrics: newMetrics(), stop: make(chan struct{}), stopLead: make(chan struct{}), notifyCh: make(chan bool, 16),
		leader: leaderState{kick: make(chan struct{}, 1)},
	}
	c.links = newLinks(c)
	c.leader.decider = schedule.Decider{World: coordinatorWorld{sessions: c.sessions, fsm: c.fsm}, CA: cfg.CA}
	c.exec = &executor{cluster: c, tasks: c.sessions, leader: &c.leader, metrics: c.metrics, log: c.log, kick: c.kickLeader}
	c.fsm.NotifyRevocations(c.revoked.push)
	return c, nil
}

// Start opens the store, starts Raft and the gRPC server, and begins
// watching for leadership.
func (c *Coordinator) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			c.Shutdown()
		}
	}()
	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return err
	}
	if c.store, err = store.Open(filepath.Join(c.cfg.DataDir, "badger"), c.log); err != nil {
		return err
	}
	c.blobs = blobsync.New(c.cfg.Name, c.store, blobCluster{c}, c.cfg.ApplyTimeout, c.log)
	if err := c.startRaft(); err != nil {
		return err
	}
	if err := c.startGRPC(); err != nil {
		return err
	}
	if err := c.startGossip(); err != nil {
		return err
	}
	c.wg.Go(func() {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-c.stop; cancel() }()
		c.blobs.Run(ctx, 200*time.Millisecond, c.fsm.JobViews)
	})
	c.wg.Go(c.revocationLoop)
	c.wg.Go(c.healthLoop)
	c.wg.Go(c.retentionLoop)
	if c.cfg.MetricsAddr != "" {
		if err := c.startMetrics(); err != nil {
			return err
		}
	}
	if c.cfg.HTTPAddr != "" {
		if err := c.startStatusPage(); err != nil {
			return err
		}
	}
	c.leadStopped = make(chan struct{})
	c.wg.Go(func() {
		defer close(c.leadStopped)
		c.monitorLeadership()
	})
	c.log.Info("coordinator started", "grpc", c.Addr(), "raft", c.RaftAddr())
	return nil
}

func (c *Coordinator) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.Name)
	rc.HeartbeatTimeout, rc.ElectionTimeout = c.cfg.HeartbeatTimeout, c.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = c.cfg.LeaderLeaseTimeout, c.cfg.CommitTimeout
	if c.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	}
	if c.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = c.cfg.TrailingLogs
	}
	if c.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = c.cfg.SnapshotInterval
	}
	rc.NotifyCh = c.notifyCh
	rc.Logger = raftLogger(c.log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(c.cfg.DataDir, "snapshots"), 2, rc.Logger)
	if err != nil {
		return fmt.Errorf("raft snapshot store: %w", err)
	}
	layer, err := raftlayer.Listen(raftlayer.Config{Addr: c.cfg.RaftAddr, Cert: c.cfg.Cert, CA: c.cfg.CA,
		Verify: c.links.VerifyCoordinator, Track: c.links.Track, Dial: c.dialPeer, ServerID: c.raftIDAt,
		HandshakeTimeout: c.cfg.Limits.HandshakeTimeout, MaxPendingHandshakes: c.cfg.Limits.MaxPendingHandshakes, MaxConnsPerIP: c.cfg.Limits.MaxRaftConnsPerIP})
	if err != nil {
		return err
	}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: rc.Logger,
	})
	if c.raft, err = raft.NewRaft(rc, c.fsm, c.store, c.store, snaps, c.trans); err != nil {
		return fmt.Errorf("starting raft: %w", err)
	}
	c.startupRestores = c.fsm.Restores()
	has, err := raft.HasExistingState(c.store, c.store, snaps)
	if err != nil {
		return err
	}
	c.bootstrapped.Store(has)
	if c.cfg.Bootstrap {
		if !has {
			f := c.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: c.trans.LocalAddr()}}})
			if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return fmt.Errorf("bootstrapping raft: %w", err)
			}
		}
	}
	return nil
}

func (c *Coordinator) startGRPC() error {
	ln, err := net.Listen("tcp", c.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listener on %s: %w", c.cfg.GRPCAddr, err)
	}
	c.grpcLn = netlimit.Listen(ln, c.cfg.Limits.MaxConnsPerIP)
	serverTLS := pki.ServerTLS(c.cfg.Cert, c.cfg.CA)
	serverTLS.VerifyConnection = c.links.VerifyIncoming
	c.grpc = grpc.NewServer(append(c.cfg.Limits.grpcOptions(),
		grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.ChainUnaryInterceptor(c.metrics.grpc.UnaryServerInterceptor(), c.unaryLimits),
		grpc.ChainStreamInterceptor(c.metrics.grpc.StreamServerInterceptor(), c.streamLimits),
	)...)
	pb.RegisterParticipantServiceServer(c.grpc, &participantService{c: c})
	pb.RegisterAdminServiceServer(c.grpc, &adminService{c: c})
	pb.RegisterClusterServiceServer(c.grpc, &blobsync.Server{Store: c.store, Authorize: c.authorizeCoordinator, Status: toStatus})
	c.health = health.NewServer()
	healthpb.RegisterHealthServer(c.grpc, c.health)
	reflection.Register(c.grpc)
	c.metrics.grpc.InitializeMetrics(c.grpc)
	c.wg.Go(func() { _ = c.grpc.Serve(c.grpcLn) })
	return nil
}

// Addr is the gRPC address participants and admins dial.
func (c *Coordinator) Addr() string {
	if c.grpcLn == nil {
		return c.cfg.GRPCAddr
	}
	return c.grpcLn.Addr().String()
}

// MetricsAddr is where the metrics server listens ("" without one).
func (c *Coordinator) MetricsAddr() string { return c.metricsAddr }

// RaftAddr is the address other coordinators reach Raft at.
func (c *Coordinator) RaftAddr() string {
	if c.trans == nil {
		return c.cfg.RaftAddr
	}
	return string(c.trans.LocalAddr())
}

// Name is the coordinator's Raft server ID.
func (c *Coordinator) Name() string { return c.cfg.Name }

// FSM exposes the replicated state for reads.
func (c *Coordinator) FSM() *state.FSM { return c.fsm }

// Store exposes the coordinator's blobs for reads.
func (c *Coordinator) Store() *store.Store { return c.store }

// Snapshot takes a Raft snapshot now (and compacts the log).
func (c *Coordinator) Snapshot() error { return c.raft.Snapshot().Error() }

// InstalledSnapshots counts the snapshots the leader sent this coordinator
// (InstallSnapshot) since it started; its own snapshot, restored at
// start-up, does not count.
func (c *Coordinator) InstalledSnapshots() int64 { return c.fsm.Restores() - c.startupRestores }

// IsLeader reports whether this node is the Raft leader now.
func (c *Coordinator) IsLeader() bool { return c.raft != nil && c.raft.State() == raft.Leader }

// KnownLeader is the name of the leader this node knows of now ("" if
// none): its own name on the leader, and on a follower the leader it
// forwards calls to.
func (c *Coordinator) KnownLeader() string {
	if c.raft == nil {
		return ""
	}
	_, id := c.raft.LeaderWithID()
	return string(id)
}

// Shutdown stops everything Start started, in reverse order, and waits for
// every goroutine. It is safe to call twice.
func (c *Coordinator) Shutdown() error {
	c.closeOnce.Do(func() {
		// The leader loop stops first, while Raft and the participants'
		// streams are still up: otherwise it would see its own shutdown
		// disconnect everyone and record the open round aborted for
		// missing clients, where the next leader must record "leader
		// change" and retry it.
		close(c.stopLead)
		if c.leadStopped != nil {
			<-c.leadStopped
		}
		close(c.stop)
		var errs []error
		if c.members != nil && c.members.ml != nil {
			if !c.crashed {
				_ = c.members.ml.Leave(time.Second)
			}
			errs = append(errs, c.members.ml.Shutdown())
		}
		if c.statusSrv != nil {
			errs = append(errs, c.statusSrv.Close())
		}
		if c.httpSrv != nil {
			errs = append(errs, c.httpSrv.Close())
		}
		if c.grpc != nil {
			c.health.Shutdown()
			stopped := make(chan struct{})
			go func() { c.grpc.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(2 * time.Second):
				c.grpc.Stop()
				<-stopped
			}
		}
		if c.raft != nil {
			errs = append(errs, c.raft.Shutdown().Error())
		}
		if c.trans != nil {
			errs = append(errs, c.trans.Close())
		}
		c.links.CloseAll() // later dials are refused (Conn, Relay) or closed at once (Track)
		c.wg.Wait()
		if c.store != nil {
			errs = append(errs, c.store.Close())
		}
		c.closeErr = errors.Join(errs...)
		c.log.Info("coordinator stopped")
	})
	return c.closeErr
}

// apply submits a command to Raft and returns the error Raft or the FSM gave.
func (c *Coordinator) apply(t state.CommandType, body any) error {
	_, err := c.applyResponse(t, body)
	return err
}

// applyResponse submits a command to Raft and returns what the FSM
// answered, or the error Raft or the FSM gave.
func (c *Coordinator) applyResponse(t state.CommandType, body any) (any, error) {
	b, err := state.EncodeCommand(t, body)
	if err != nil {
		return nil, err
	}
	f := c.raft.Apply(b, c.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return nil, err
	}
	return f.Response(), nil
}

// requireLeader returns ErrNotLeader naming the leader when this node is not it.
func (c *Coordinator) requireLeader() error {
	if c.IsLeader() {
		return nil
	}
	addr, id := c.raft.LeaderWithID()
	if addr == "" {
		return fmt.Errorf("%w: no leader is known yet", ErrNotLeader)
	}
	return fmt.Errorf("%w: the leader is %s (raft %s)", ErrNotLeader, id, addr)
}

// Crash stops the coordinator as a crash would (its data folder stays): for
// tests and fault injection. Every socket closes at once, as the kernel of a
// killed process closes them: Raft's connections both ways and its
// listener, the gRPC server and its streams (Stop, not GracefulStop),
// gossip (no Leave). Only then do the leader loop, Raft and the store stop,
// cut off, so nothing they do on the way out reaches another node: no
// gossip goodbye, no GOAWAY, no last record or heartbeat from the leader.
// It is safe to call twice, and after Shutdown.
func (c *Coordinator) Crash() error {
	c.crashOnce.Do(func() {
		c.crashed = true
		c.links.CloseAll()
		if c.trans != nil {
			_ = c.trans.Close()
		}
		if c.grpc != nil {
			c.grpc.Stop()
		}
		if c.members != nil && c.members.ml != nil {
			_ = c.members.ml.Shutdown()
		}
	})
	return c.Shutdown()
}

// BlockPeers cuts this coordinator off from the named coordinators (Raft,
// blob transfers and forwarding; gossip still flows), closing the links it
// has to them; nil heals. For tests and fault injection: a partition.
func (c *Coordinator) BlockPeers(names []string) { c.links.SetBlocked(names) }
