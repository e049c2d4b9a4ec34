package coordinator

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"

	"github.com/accord-fl/accord/coordinator/peers"
	"github.com/accord-fl/accord/coordinator/state"
)

// newLinks returns the coordinator's links to the others (peers.Links):
// addresses come from gossip, and a peer whose certificate is revoked or
// whose coordinator the federation removed is refused.
func newLinks(c *Coordinator) *peers.Links {
	cfg := peers.Config{Cert: c.cfg.Cert, CA: c.cfg.CA, Revoked: c.refuseRevoked,
		Addr: func(name string) (string, bool) {
			m, ok := c.memberByName(name)
			return m.GRPC, ok
		},
		Removed: func(name string) error {
			if c.fsm.MemberRule(name) == state.MemberExcluded {
				return fmt.Errorf("%w: coordinator %s was removed by an approved proposal", state.ErrForbidden, name)
			}
			return nil
		},
		// Three quarters of MaxConcurrentStreams, the streams the leader
		// lets one connection hold (the coordinators of a federation share
		// their limits), leaving room for the uploads and calls of the
		// participants relayed.
		RelayStreams: int(c.cfg.Limits.MaxConcurrentStreams) * 3 / 4}
	if n := c.cfg.Network; n != nil {
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return n.DialContext(ctx, "tcp", addr) }
	}
	return peers.New(cfg)
}

// leaderConn returns a connection to the current leader (not this node).
func (c *Coordinator) leaderConn() (*grpc.ClientConn, error) {
	id, err := c.leaderID()
	if err != nil {
		return nil, err
	}
	return c.links.Conn(id)
}

// leaderRelay returns a connection to the current leader (not this node)
// for one relayed participant stream, and the function that releases it
// (peers.Links.Relay).
func (c *Coordinator) leaderRelay() (*grpc.ClientConn, func(), error) {
	id, err := c.leaderID()
	if err != nil {
		return nil, nil, err
	}
	return c.links.Relay(id)
}

// leaderID is the current leader's name, if it is another node.
func (c *Coordinator) leaderID() (string, error) {
	id := c.KnownLeader()
	if id == "" {
		return "", fmt.Errorf("%w: no leader is known yet; retry", ErrNotLeader)
	}
	if id == c.cfg.Name {
		return "", fmt.Errorf("%w: leadership is changing; retry", ErrNotLeader)
	}
	return id, nil
}

// forwardUnary makes a unary call on the leader, on the caller's behalf, when
// this node is not the leader; forwarded reports whether it did.
func forwardUnary[Resp any](ctx context.Context, c *Coordinator, id principal,
	call func(ctx context.Context, cc grpc.ClientConnInterface) (Resp, error)) (resp Resp, forwarded bool, err error) {
	if c.IsLeader() {
		return resp, false, nil
	}
	cc, err := c.leaderConn()
	if err != nil {
		return resp, true, toStatus(err)
	}
	resp, err = call(forwardContext(ctx, id), cc)
	return resp, true, err
}
