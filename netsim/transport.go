package netsim

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// WrapTransport returns t with its outgoing traffic travelling the
// endpoint's links, for memberlist gossip between regions. Packets to a
// registered address are delayed by the link (serialisation, latency,
// jitter; they may reorder) or dropped (loss, cut, also while in flight);
// streams are dialled through t and shaped like DialContext's. Traffic to
// unregistered addresses, and PacketCh, StreamCh and FinalAdvertiseAddr,
// pass through to t; incoming traffic was shaped by its sender. Shutdown
// drops the packets still in flight, then shuts t down.
func (e *Endpoint) WrapTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return &transport{inner: t, e: e, inFlight: map[*delayedPacket]struct{}{}}
}

// transport is a memberlist transport seen through the network model.
type transport struct {
	inner memberlist.NodeAwareTransport
	e     *Endpoint

	mu       sync.Mutex
	shut     bool
	inFlight map[*delayedPacket]struct{}
	timers   sync.WaitGroup
}

// delayedPacket is a packet waiting for its delivery time.
type delayedPacket struct {
	timer *time.Timer
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// FinalAdvertiseAddr passes through to the wrapped transport.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// PacketCh passes through to the wrapped transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.inner.PacketCh() }

// StreamCh passes through to the wrapped transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.inner.StreamCh() }

// WriteTo sends b to addr through the model; see WriteToAddress.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends b to a.Addr after the link's delay, or drops it. It
// returns at once with the send time, as a datagram send does; an error
// of the wrapped transport after the delay is lost like the packet.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	to, ok := t.e.n.regionOf(a.Addr)
	if !ok {
		return t.inner.WriteToAddress(b, a)
	}
	if t.isShut() {
		return now, fmt.Errorf("write to %s: %w", a.Addr, ErrTransportShutdown)
	}
	from, n := t.e.region, t.e.n
	if n.IsCut(from, to) {
		return now, nil
	}
	link := n.Link(from, to)
	d := n.draw(link)
	if d.lost {
		return now, nil
	}
	delay := packetDelay(len(b), link, d)
	if delay <= 0 {
		if _, err := t.inner.WriteToAddress(b, a); err != nil {
			return now, err
		}
		n.count(from, to, len(b))
		return now, nil
	}
	buf := bytes.Clone(b) // the caller may reuse b once we return
	deliver := func() {
		if n.IsCut(from, to) {
			return
		}
		if _, err := t.inner.WriteToAddress(buf, a); err == nil {
			n.count(from, to, len(buf))
		}
	}
	if !t.after(delay, deliver) {
		return now, fmt.Errorf("write to %s: %w", a.Addr, ErrTransportShutdown)
	}
	return now, nil
}

func (t *transport) isShut() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.shut
}

// after runs f after d unless the transport shuts down first; false if it
// is already shut down.
func (t *transport) after(d time.Duration, f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shut {
		return false
	}
	p := &delayedPacket{}
	t.timers.Add(1)
	p.timer = time.AfterFunc(d, func() {
		defer t.timers.Done()
		t.mu.Lock()
		_, live := t.inFlight[p]
		delete(t.inFlight, p)
		t.mu.Unlock()
		if live {
			f()
		}
	})
	t.inFlight[p] = struct{}{}
	return true
}

// DialTimeout opens a stream to addr; see DialAddressTimeout.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr through the wrapped
// transport, shaped both ways, within timeout.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	to, ok := t.e.n.regionOf(a.Addr)
	if !ok {
		return t.inner.DialAddressTimeout(a, timeout)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return t.e.n.connect(ctx, t.e.region, to, a.Addr, func(ctx context.Context) (net.Conn, error) {
		left := time.Duration(0) // no timeout, as for the wrapped transport
		if d, ok := ctx.Deadline(); ok {
			if left = time.Until(d); left <= 0 {
				return nil, context.DeadlineExceeded
			}
		}
		return t.inner.DialAddressTimeout(a, left)
	})
}

// Shutdown drops the packets in flight, waits for deliveries under way,
// then shuts the wrapped transport down.
func (t *transport) Shutdown() error {
	t.mu.Lock()
	t.shut = true
	for p := range t.inFlight {
		if p.timer.Stop() {
			t.timers.Done()
		}
		delete(t.inFlight, p)
	}
	t.mu.Unlock()
	t.timers.Wait()
	return t.inner.Shutdown()
}
