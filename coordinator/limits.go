package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
)

// Limits bound what any one peer, participant or request can take from a
// coordinator. Every field has a default (DefaultLimits); a coordinator's
// config file sets them under `limits:`.
type Limits struct {
	// HandshakeTimeout bounds a TLS handshake on the Raft and gRPC ports.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxPendingHandshakes bounds the Raft port's handshakes in progress;
	// past it new connections are closed at once.
	MaxPendingHandshakes int `yaml:"max_pending_handshakes"`
	// MaxConnsPerIP bounds the connections one source address may hold on
	// the gRPC and metrics ports; MaxRaftConnsPerIP on the Raft port (a
	// peer keeps a few).
	MaxConnsPerIP     int `yaml:"max_conns_per_ip"`
	MaxRaftConnsPerIP int `yaml:"max_raft_conns_per_ip"`
	// MaxRecvMsgBytes bounds one gRPC message (model and update chunks are
	// protocol.ChunkBytes, secure-aggregation messages at most
	// protocol.SecAggPartBytes, each part of a larger one too).
	MaxRecvMsgBytes int `yaml:"max_recv_msg_bytes"`
	// MaxConcurrentStreams bounds the streams of one gRPC connection.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// KeepaliveMinTime is the most often a client may ping; more often and
	// the connection is closed (gRPC keepalive enforcement).
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// KeepaliveTime and KeepaliveTimeout: the server pings an idle
	// connection after KeepaliveTime and closes it if no answer comes
	// within KeepaliveTimeout (dead peers, half-open connections).
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// MaxConnectionIdle closes a gRPC connection with no call for this long.
	MaxConnectionIdle time.Duration `yaml:"max_connection_idle"`
	// ParticipantRate and ParticipantBurst bound each participant's unary
	// calls (a token bucket per certificate name); streams count once.
	ParticipantRate  float64 `yaml:"participant_rate"`
	ParticipantBurst int     `yaml:"participant_burst"`
	// MetricsReadTimeout bounds reading a metrics request, headers included.
	MetricsReadTimeout time.Duration `yaml:"metrics_read_timeout"`
	// StreamIdleTimeout bounds the wait for an upload's first message; an
	// admitted upload has until its round's (or phase's) deadline.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout"`
}

// DefaultLimits are limits for a federation of up to a few thousand
// participants.
func DefaultLimits() Limits {
	return Limits{
		HandshakeTimeout: 5 * time.Second, MaxPendingHandshakes: 256, MaxConnsPerIP: 1024, MaxRaftConnsPerIP: 64,
		MaxRecvMsgBytes: 2 << 20, MaxConcurrentStreams: 256,
		KeepaliveMinTime: 10 * time.Second, KeepaliveTime: 30 * time.Second, KeepaliveTimeout: 10 * time.Second,
		MaxConnectionIdle: 15 * time.Minute, ParticipantRate: 50, ParticipantBurst: 200,
		MetricsReadTimeout: 5 * time.Second, StreamIdleTimeout: 30 * time.Second,
	}
}

// minRecvMsgBytes is the smallest MaxRecvMsgBytes that takes every message
// participants and coordinators send: a 1 MiB update chunk or
// secure-aggregation part, and room for the fields around it.
const minRecvMsgBytes = max(protocol.ChunkBytes, protocol.SecAggPartBytes) + 64<<10

// Validate reports the first limit that is not positive, or too small.
func (l Limits) Validate() error {
	switch {
	case l.HandshakeTimeout <= 0:
		return errors.New("limits: handshake_timeout must be positive")
	case l.MaxPendingHandshakes <= 0:
		return errors.New("limits: max_pending_handshakes must be positive")
	case l.MaxConnsPerIP <= 0 || l.MaxRaftConnsPerIP <= 0:
		return errors.New("limits: max_conns_per_ip and max_raft_conns_per_ip must be positive")
	case l.MaxRecvMsgBytes < minRecvMsgBytes:
		return fmt.Errorf("limits: max_recv_msg_bytes must be at least %d (%d KiB): update chunks and secure-aggregation messages take up to 1 MiB", minRecvMsgBytes, minRecvMsgBytes>>10)
	case l.MaxConcurrentStreams == 0:
		return errors.New("limits: max_concurrent_streams must be positive")
	case l.KeepaliveMinTime <= 0 || l.KeepaliveTime <= 0 || l.KeepaliveTimeout <= 0 || l.MaxConnectionIdle <= 0:
		return errors.New("limits: keepalive times and max_connection_idle must be positive")
	case !(l.ParticipantRate > 0) || l.ParticipantBurst <= 0:
		return errors.New("limits: participant_rate and participant_burst must be positive")
	case l.MetricsReadTimeout <= 0 || l.StreamIdleTimeout <= 0:
		return errors.New("limits: metrics_read_timeout and stream_idle_timeout must be positive")
	}
	return nil
}

// grpcOptions are the gRPC server's limits.
func (l Limits) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: l.KeepaliveTime, Timeout: l.KeepaliveTimeout, MaxConnectionIdle: l.MaxConnectionIdle}),
	}
}

// ErrRateLimited means a caller made calls faster than its limit.
var ErrRateLimited = errors.New("too many requests")

// rateLimiter keeps a token bucket per participant.
type rateLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// maxBuckets bounds the participants tracked at once; past it, the map
// starts afresh (every bucket full again), which costs at most one burst.
const maxBuckets = 1 << 16

func newRateLimiter(l Limits) *rateLimiter {
	return &rateLimiter{limit: rate.Limit(l.ParticipantRate), burst: l.ParticipantBurst, buckets: map[string]*rate.Limiter{}}
}

func (r *rateLimiter) allow(name string) bool {
	r.mu.Lock()
	b := r.buckets[name]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			r.buckets = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(r.limit, r.burst)
		r.buckets[name] = b
	}
	r.mu.Unlock()
	return b.Allow()
}

// participantRate is a gRPC interceptor refusing participants' calls past
// their rate (ResourceExhausted). Calls a coordinator forwards were counted
// where the participant made them.
func (c *Coordinator) participantRate(ctx context.Context) error {
	id, _, err := peerCertificate(ctx)
	if err != nil || id.Role != pki.RoleParticipant {
		return nil
	}
	if !c.rates.allow(id.Name) {
		return fmt.Errorf("%w: %s exceeded %.0f calls a second (burst %d)", ErrRateLimited, id.Name, c.cfg.Limits.ParticipantRate, c.cfg.Limits.ParticipantBurst)
	}
	return nil
}

func (c *Coordinator) unaryLimits(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.participantRate(ctx); err != nil {
		return nil, toStatus(err)
	}
	return handler(ctx, req)
}

func (c *Coordinator) streamLimits(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := c.participantRate(ss.Context()); err != nil {
		return toStatus(err)
	}
	return handler(srv, ss)
}
