package coordinator

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/hashicorp/raft"
)

// dialPeer opens a TLS connection to another coordinator's address, over
// Config.Network if it is set.
func (c *Coordinator) dialPeer(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	var raw net.Conn
	var err error
	if c.cfg.Network != nil {
		raw, err = c.cfg.Network.DialContext(ctx, "tcp", addr)
	} else {
		raw, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" { // as tls.Dial does: verify the host dialled
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			raw.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// raftIDAt returns the server ID the latest Raft configuration gives the
// address, or "" (hashicorp/raft's GetConfiguration reads a cached value
// and does not block).
func (c *Coordinator) raftIDAt(address raft.ServerAddress) string {
	if c.raft == nil {
		return ""
	}
	for _, s := range c.raft.GetConfiguration().Configuration().Servers {
		if s.Address == address {
			return string(s.ID)
		}
	}
	return ""
}
