package peers

import (
	"slices"

	"google.golang.org/grpc"
)

// relayPool is the connections to one peer that carry the participants'
// streams a follower relays to the leader (task streams, uploads). Each
// connection carries at most limit streams: over one connection, the
// leader's MaxConcurrentStreams would hold back every stream past it
// (past 256 participants on a follower, by default) until one ended, and
// starve the unary calls and blob transfers of the peer's other
// connection (Links.Conn). A connection is opened when every one is full
// and closed when it carries no stream, so a former leader keeps none; the
// first stream after a quiet spell pays one TLS handshake.
// The caller serialises its calls (Links.mu).
type relayPool struct {
	limit int
	dial  func() (*grpc.ClientConn, error)
	conns []*relayConn
}

// relayConn is one connection of a relayPool, with the streams it carries.
type relayConn struct {
	cc     *grpc.ClientConn
	active int
}

// acquire takes a slot for one stream on a connection with room, opening
// one if none has.
func (rp *relayPool) acquire() (*relayConn, error) {
	for _, r := range rp.conns {
		if r.active < rp.limit {
			r.active++
			return r, nil
		}
	}
	cc, err := rp.dial()
	if err != nil {
		return nil, err
	}
	r := &relayConn{cc: cc, active: 1}
	rp.conns = append(rp.conns, r)
	return r, nil
}

// release gives back a stream's slot on r and returns r's connection for
// the caller to close if it now carries nothing (nil otherwise, or if the
// pool dropped r already).
func (rp *relayPool) release(r *relayConn) *grpc.ClientConn {
	r.active--
	i := slices.Index(rp.conns, r)
	if r.active > 0 || i < 0 {
		return nil
	}
	rp.conns = slices.Delete(rp.conns, i, i+1)
	return r.cc
}

// drop forgets every connection and returns them for the caller to close;
// their streams' later releases find nothing to do.
func (rp *relayPool) drop() []*grpc.ClientConn {
	var out []*grpc.ClientConn
	for _, r := range rp.conns {
		out = append(out, r.cc)
	}
	rp.conns = nil
	return out
}
