package netsim

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Endpoint is the view of a Network from one region: connections it dials
// travel that region's links.
type Endpoint struct {
	n      *Network
	region string
}

// Region returns the region the endpoint is in.
func (e *Endpoint) Region() string { return e.region }

// DialContext dials addr on loopback. If addr is registered, the
// connection is shaped both ways: what this side writes travels
// Link(e.Region(), target region) and what it reads travelled the link
// back. The dial itself takes one modelled round trip (the TCP handshake)
// and fails with ErrPartitioned across a cut. ctx bounds the dial only.
// Unregistered addresses are dialled plainly.
func (e *Endpoint) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	to, ok := e.n.regionOf(addr)
	if !ok {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, e.region, ErrUnsupportedNetwork)
	}
	return e.n.connect(ctx, e.region, to, addr, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
}

// GRPCDialer returns a dialer for grpc.WithContextDialer that dials TCP
// through the endpoint.
func (e *Endpoint) GRPCDialer() func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return e.DialContext(ctx, "tcp", addr)
	}
}

// connect opens a connection shaped from region from to region to: after
// the modelled handshake it dials the underlying connection with dialRaw.
func (n *Network) connect(ctx context.Context, from, to, addr string, dialRaw func(context.Context) (net.Conn, error)) (*shapedConn, error) {
	if n.IsCut(from, to) {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, from, partitionError(from, to))
	}
	if err := pause(ctx, n.handshake(from, to)); err != nil {
		return nil, fmt.Errorf("dial %s from %s to %s: %w", addr, from, to, err)
	}
	raw, err := dialRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s to %s: %w", addr, from, to, err)
	}
	c := newShapedConn(n, raw, from, to)
	if !n.track(c) {
		_ = raw.Close()
		return nil, fmt.Errorf("dial %s from %s: %w", addr, from, partitionError(from, to))
	}
	c.start()
	return c, nil
}

// handshake is how long a TCP connection takes to open from region from to
// region to: one round trip.
func (n *Network) handshake(from, to string) time.Duration {
	there, back := n.Link(from, to), n.Link(to, from)
	return there.Latency + n.draw(there).jitter + back.Latency + n.draw(back).jitter
}

// pause waits for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
