// Package blobsync keeps on the coordinators the blobs a job's rounds name
// (models and server-optimiser states): a new blob is stored on a quorum of
// Raft's voters before its digest is committed, so that a committed digest
// survives any minority of crashes, and every coordinator fetches from the
// others the blobs it lacks (after a restart, a snapshot install, or a
// round it missed). Blobs are content-addressed: what a peer sends is
// stored only if it hashes to the digest asked for.
//
// It reaches the other coordinators through a Cluster (their connections,
// the voters, the members to fetch from) and serves them through Server,
// the gRPC ClusterService.
package blobsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/store"
)

// Store holds blobs by digest (store.Store).
type Store interface {
	PutBlob(blob []byte) (string, error)
	PutCheckedBlob(digest string, blob []byte) error
	GetBlob(digest string) ([]byte, error)
	HasBlob(digest string) (bool, error)
}

// Cluster is what a Syncer needs of the other coordinators.
type Cluster interface {
	// Conn is a connection to the coordinator called name.
	Conn(name string) (grpc.ClientConnInterface, error)
	// Voters names Raft's voters, this coordinator among them.
	Voters() ([]string, error)
	// Peers names the other coordinators to fetch a blob from, in the
	// order to try them.
	Peers() []string
}

// Syncer replicates and fetches one coordinator's blobs.
type Syncer struct {
	self    string
	store   Store
	cluster Cluster
	// pushTimeout bounds Replicate's wait for a quorum.
	pushTimeout time.Duration
	log         *slog.Logger
}

// New returns the Syncer of the coordinator called self. pushTimeout
// bounds how long Replicate waits for a quorum to store a blob.
func New(self string, st Store, cl Cluster, pushTimeout time.Duration, log *slog.Logger) *Syncer {
	return &Syncer{self: self, store: st, cluster: cl, pushTimeout: pushTimeout, log: log}
}

// Replicate stores blob here and on enough other voters that a quorum
// (this coordinator counted) holds it, and returns its digest. The pushes
// past the quorum finish in the background, bounded by the push timeout.
func (s *Syncer) Replicate(ctx context.Context, blob []byte) (string, error) {
	digest, err := s.store.PutBlob(blob)
	if err != nil {
		return "", err
	}
	voters, err := s.cluster.Voters()
	if err != nil {
		return "", err
	}
	need := len(voters)/2 + 1 - 1 // a quorum, less this coordinator
	if need <= 0 {
		return digest, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.pushTimeout)
	defer cancel()
	acks := make(chan error, len(voters))
	var wg sync.WaitGroup
	for _, v := range voters {
		if v != s.self {
			wg.Go(func() { acks <- s.push(ctx, v, digest, blob) })
		}
	}
	go func() { wg.Wait(); close(acks) }()
	got := 0
	var errs []error
	for err := range acks {
		if err != nil {
			errs = append(errs, err)
		} else if got++; got >= need {
			return digest, nil
		}
	}
	return "", fmt.Errorf("model %s reached %d of the %d other coordinators a quorum needs: %w", digest, got, need, errors.Join(errs...))
}

// push sends a blob to the coordinator called peer.
func (s *Syncer) push(ctx context.Context, peer, digest string, blob []byte) error {
	cc, err := s.cluster.Conn(peer)
	if err != nil {
		return err
	}
	stream, err := pb.NewClusterServiceClient(cc).PutBlob(ctx)
	if err != nil {
		return fmt.Errorf("pushing %s to %s: %w", digest, peer, err)
	}
	for _, ch := range protocol.Chunks(blob) {
		if stream.Send(&pb.BlobChunk{Digest: digest, Data: ch}) != nil {
			break // the stream ended; CloseAndRecv says why
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("pushing %s to %s: %w", digest, peer, err)
	}
	return nil
}

// Blob returns a stored blob, fetching it from the other coordinators if
// this one lacks it.
func (s *Syncer) Blob(ctx context.Context, digest string) ([]byte, error) {
	blob, err := s.store.GetBlob(digest)
	if err == nil {
		return blob, nil
	}
	return s.Fetch(ctx, digest)
}

// Fetch gets a blob from the first of the other coordinators that has it,
// checks its hash, and stores it. Nobody having it is store.ErrNotFound.
func (s *Syncer) Fetch(ctx context.Context, digest string) ([]byte, error) {
	var errs []error
	for _, peer := range s.cluster.Peers() {
		blob, err := s.fetchFrom(ctx, peer, digest)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.store.PutCheckedBlob(digest, blob); err != nil { // fetchFrom checked it
			return nil, err
		}
		return blob, nil
	}
	return nil, fmt.Errorf("%w: blob %s: no coordinator could supply it: %w", store.ErrNotFound, digest, errors.Join(errs...))
}

// fetchFrom reads a blob from the coordinator called peer and checks that
// it hashes to digest.
func (s *Syncer) fetchFrom(ctx context.Context, peer, digest string) ([]byte, error) {
	cc, err := s.cluster.Conn(peer)
	if err != nil {
		return nil, err
	}
	stream, err := pb.NewClusterServiceClient(cc).GetBlob(ctx, &pb.GetBlobRequest{Digest: digest})
	if err != nil {
		return nil, fmt.Errorf("fetching %s from %s: %w", digest, peer, err)
	}
	blob, err := protocol.ReceiveBlob(func() ([]byte, error) {
		ch, err := stream.Recv()
		return ch.GetData(), err
	}, digest)
	if err != nil {
		return nil, fmt.Errorf("fetching %s from %s: %w", digest, peer, err)
	}
	return blob, nil
}

// Run makes this coordinator hold every blob the jobs name, until ctx
// ends: every interval it fetches those it lacks. It works from what
// changed: a job whose blobs it all holds is walked again only once jobs
// returns another view of it (views are copy-on-write, so an unchanged
// job is the same pointer).
func (s *Syncer) Run(ctx context.Context, interval time.Duration, jobs func() map[string]*state.Job) {
	have := map[string]bool{}
	complete := map[string]*state.Job{} // jobs, as last seen, whose kept blobs are all here
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		views := jobs()
		for id := range complete {
			if views[id] == nil {
				delete(complete, id)
			}
		}
		for id, j := range views {
			if ctx.Err() != nil {
				return
			}
			if complete[id] != j && s.fetchMissing(ctx, j, have) {
				complete[id] = j
			}
		}
	}
}

// fetchMissing fetches the job's kept blobs this coordinator lacks,
// recording in have those it holds, and reports whether it now holds them
// all.
func (s *Syncer) fetchMissing(ctx context.Context, j *state.Job, have map[string]bool) bool {
	kept, _ := j.ModelDigests()
	all := true
	for _, d := range kept {
		if have[d] {
			continue
		}
		if ok, _ := s.store.HasBlob(d); ok {
			have[d] = true
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := s.Fetch(fctx, d)
		cancel()
		if err != nil {
			all = false
			continue
		}
		have[d] = true
		s.log.Debug("fetched missing model", "digest", d)
	}
	return all
}
