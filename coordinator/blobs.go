package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// clusterService implements pb.ClusterServiceServer for the other
// coordinators.
type clusterService struct {
	pb.UnimplementedClusterServiceServer
	c *Coordinator
}

func (s *clusterService) PutBlob(stream pb.ClusterService_PutBlobServer) error {
	if _, err := s.c.caller(stream.Context(), pki.RoleCoordinator); err != nil {
		return toStatus(err)
	}
	var digest string // named by the first chunk
	blob, err := protocol.ReceiveBlob(func() ([]byte, error) {
		ch, err := stream.Recv()
		if digest == "" {
			digest = ch.GetDigest()
		}
		return ch.GetData(), err
	}, "")
	if err == nil && protocol.Digest(blob) != digest {
		err = fmt.Errorf("%w: content does not hash to %s", protocol.ErrBlob, digest)
	}
	if errors.Is(err, protocol.ErrBlob) {
		return toStatus(fmt.Errorf("%w: %w", state.ErrBadUpdate, err))
	}
	if err != nil {
		return err
	}
	if _, err := s.c.store.PutBlob(blob); err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&pb.PutBlobResponse{})
}

func (s *clusterService) GetBlob(req *pb.GetBlobRequest, stream pb.ClusterService_GetBlobServer) error {
	if _, err := s.c.caller(stream.Context(), pki.RoleCoordinator); err != nil {
		return toStatus(err)
	}
	blob, err := s.c.store.GetBlob(req.GetDigest())
	if err != nil {
		return toStatus(err)
	}
	for _, ch := range protocol.Chunks(blob) {
		if err := stream.Send(&pb.BlobChunk{Digest: req.GetDigest(), Data: ch}); err != nil {
			return err
		}
	}
	return nil
}

// voters returns the Raft configuration's voters.
func (c *Coordinator) voters() ([]raft.Server, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, s)
		}
	}
	return out, nil
}

// replicateBlob stores a blob locally and on enough other voters that a
// quorum (this node counted) holds it, so a committed digest always names a
// model that survives any minority of crashes.
func (c *Coordinator) replicateBlob(ctx context.Context, blob []byte) (string, error) {
	digest, err := c.store.PutBlob(blob)
	if err != nil {
		return "", err
	}
	voters, err := c.voters()
	if err != nil {
		return "", err
	}
	need := len(voters)/2 + 1 - 1 // a quorum, less this node
	if need <= 0 {
		return digest, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
	defer cancel()
	acks := make(chan error, len(voters))
	var wg sync.WaitGroup
	for _, s := range voters {
		if string(s.ID) == c.cfg.Name {
			continue
		}
		wg.Go(func() { acks <- c.pushBlob(ctx, string(s.ID), digest, blob) })
	}
	go func() { wg.Wait(); close(acks) }()
	got := 0
	var errs []error
	for err := range acks {
		if err == nil {
			if got++; got >= need {
				return digest, nil // the rest finish in the background, bounded by ctx
			}
		} else {
			errs = append(errs, err)
		}
	}
	return "", fmt.Errorf("model %s reached %d of the %d other coordinators a quorum needs: %w", digest, got, need, errors.Join(errs...))
}

func (c *Coordinator) pushBlob(ctx context.Context, peer, digest string, blob []byte) error {
	cc, err := c.peers.conn(peer)
	if err != nil {
		return err
	}
	stream, err := pb.NewClusterServiceClient(cc).PutBlob(ctx)
	if err != nil {
		return err
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

// fetchBlob gets a missing blob by digest from any other coordinator,
// checks its hash and stores it.
func (c *Coordinator) fetchBlob(ctx context.Context, digest string) ([]byte, error) {
	var errs []error
	for _, m := range c.memberList() {
		if m.Name == c.cfg.Name || m.State == "left" {
			continue
		}
		blob, err := c.fetchBlobFrom(ctx, m.Name, digest)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := c.store.PutBlob(blob); err != nil {
			return nil, err
		}
		return blob, nil
	}
	return nil, fmt.Errorf("%w %s: no coordinator could supply it: %w", ErrUnknownModel, digest, errors.Join(errs...))
}

func (c *Coordinator) fetchBlobFrom(ctx context.Context, peer, digest string) ([]byte, error) {
	cc, err := c.peers.conn(peer)
	if err != nil {
		return nil, err
	}
	stream, err := pb.NewClusterServiceClient(cc).GetBlob(ctx, &pb.GetBlobRequest{Digest: digest})
	if err != nil {
		return nil, err
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

// blob returns a stored blob, fetching it from a peer if this coordinator
// lacks it.
func (c *Coordinator) blob(ctx context.Context, digest string) ([]byte, error) {
	blob, err := c.store.GetBlob(digest)
	if err == nil {
		return blob, nil
	}
	return c.fetchBlob(ctx, digest)
}

// blobFetchLoop makes every coordinator hold every model the FSM names:
// after a restart, a snapshot install or a round it missed, it fetches what
// it lacks from its peers. It works from what changed: a job whose models
// it all holds is walked again only once the FSM has replaced it (jobs
// are copy-on-write, so an unchanged job is the same pointer).
func (c *Coordinator) blobFetchLoop() {
	have := map[string]bool{}
	complete := map[string]*state.Job{} // jobs, as last seen, whose kept models are all here
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-ticker.C:
		}
		views := c.fsm.JobViews()
		for id := range complete {
			if views[id] == nil {
				delete(complete, id)
			}
		}
		for id, j := range views {
			if complete[id] == j {
				continue
			}
			if c.fetchMissing(j, have) {
				complete[id] = j
			}
			select {
			case <-c.stop:
				return
			default:
			}
		}
	}
}

// fetchMissing fetches the job's kept models this coordinator lacks,
// recording in have those it holds, and reports whether it now holds them
// all.
func (c *Coordinator) fetchMissing(j *state.Job, have map[string]bool) bool {
	kept, _ := j.ModelDigests()
	all := true
	for _, d := range kept {
		if have[d] {
			continue
		}
		if ok, _ := c.store.HasBlob(d); ok {
			have[d] = true
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.fetchBlob(ctx, d)
		cancel()
		if err != nil {
			all = false
			continue
		}
		have[d] = true
		c.log.Debug("fetched missing model", "digest", d)
	}
	return all
}
