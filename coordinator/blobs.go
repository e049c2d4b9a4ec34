package coordinator

import (
	"context"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/accord-fl/accord/pki"
)

// blobCluster is the coordinator's side of blobsync.Cluster: its peers'
// connections, Raft's voters and the gossip members to fetch from.
type blobCluster struct{ c *Coordinator }

func (b blobCluster) Conn(name string) (grpc.ClientConnInterface, error) { return b.c.links.Conn(name) }

func (b blobCluster) Voters() ([]string, error) {
	servers, err := b.c.voters()
	var names []string
	for _, s := range servers {
		names = append(names, string(s.ID))
	}
	return names, err
}

func (b blobCluster) Peers() []string {
	var names []string
	for _, m := range b.c.memberList() {
		if m.Name != b.c.cfg.Name && m.State != "left" {
			names = append(names, m.Name)
		}
	}
	return names
}

// authorizeCoordinator refuses a ClusterService caller that is not a
// coordinator of the federation (or is revoked).
func (c *Coordinator) authorizeCoordinator(ctx context.Context) error {
	_, err := c.caller(ctx, pki.RoleCoordinator)
	return toStatus(err)
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

// replicateBlob stores a blob on a quorum of the voters (blobsync).
func (c *Coordinator) replicateBlob(ctx context.Context, blob []byte) (string, error) {
	return c.blobs.Replicate(ctx, blob)
}

// blob returns a stored blob, fetched from a peer if this coordinator
// lacks it (blobsync).
func (c *Coordinator) blob(ctx context.Context, digest string) ([]byte, error) {
	return c.blobs.Blob(ctx, digest)
}
