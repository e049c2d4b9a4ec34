package netsim

import (
	"fmt"
	"math"
	"time"
)

// Link is how traffic travels from one region to another (or within one).
// The zero Link is loopback: no delay, no limit, no loss.
type Link struct {
	// Latency is the one-way propagation delay.
	Latency time.Duration
	// Jitter adds to each stream chunk or packet an extra delay drawn
	// uniformly from [0, Jitter]. A stream never reorders: a chunk is never
	// delivered before the one written before it.
	Jitter time.Duration
	// Bandwidth is in bytes per second; 0 means unlimited.
	Bandwidth float64
	// Loss is a probability in [0, 1). A packet is dropped with this
	// probability; a stream chunk is instead delivered late, by one
	// retransmission timeout (see RetransmitTimeout), as TCP recovers losses.
	Loss float64
}

// minRetransmitTimeout is the floor of a stream's retransmission timeout,
// Linux's TCP_RTO_MIN.
const minRetransmitTimeout = 200 * time.Millisecond

// Validate reports whether l is a usable link: no negative durations or
// bandwidth, and Loss in [0, 1).
func (l Link) Validate() error {
	switch {
	case l.Latency < 0:
		return fmt.Errorf("netsim: negative latency %v", l.Latency)
	case l.Jitter < 0:
		return fmt.Errorf("netsim: negative jitter %v", l.Jitter)
	case l.Bandwidth < 0 || math.IsNaN(l.Bandwidth):
		return fmt.Errorf("netsim: bandwidth %v not ≥ 0", l.Bandwidth)
	case !(l.Loss >= 0 && l.Loss < 1):
		return fmt.Errorf("netsim: loss %v not in [0,1)", l.Loss)
	}
	return nil
}

// RetransmitTimeout is the extra delay of a lost stream chunk:
// max(200ms, 2×(Latency+Jitter)).
func (l Link) RetransmitTimeout() time.Duration {
	return max(minRetransmitTimeout, 2*(l.Latency+l.Jitter))
}

// serialise is how long size bytes take to leave the sender.
func (l Link) serialise(size int) time.Duration {
	if l.Bandwidth <= 0 || size <= 0 {
		return 0
	}
	return time.Duration(float64(size) / l.Bandwidth * float64(time.Second))
}

// draw is the random part of one chunk's or packet's journey.
type draw struct {
	jitter time.Duration
	lost   bool
}

// clock schedules one direction of a stream: a sender that serialises at
// the link's bandwidth, then a path that adds latency, jitter and
// retransmission delays without reordering. It does no I/O and reads no
// clock; the caller passes now.
type clock struct {
	sendEnd   time.Time // when the sender finishes putting the last chunk on the wire
	deliverAt time.Time // when the last chunk reaches the far side
}

// schedule returns when a chunk of size bytes, written at now, is delivered.
func (c *clock) schedule(now time.Time, size int, l Link, d draw) time.Time {
	start := now
	if c.sendEnd.After(start) {
		start = c.sendEnd
	}
	c.sendEnd = start.Add(l.serialise(size))
	at := c.sendEnd.Add(l.Latency + d.jitter)
	if d.lost {
		at = at.Add(l.RetransmitTimeout())
	}
	if c.deliverAt.After(at) {
		at = c.deliverAt
	}
	c.deliverAt = at
	return at
}

// packetDelay is how long a packet of size bytes takes across l.
func packetDelay(size int, l Link, d draw) time.Duration {
	return l.serialise(size) + l.Latency + d.jitter
}
