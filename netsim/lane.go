package netsim

import (
	"sync"
	"time"
)

const (
	// chunkSize is the most a stream moves as one unit: a Write is split
	// into chunks of at most this size, and the receiving pump reads at most
	// this much at a time. Each chunk is scheduled on its own.
	chunkSize = 32 << 10
	// laneLimit is how many bytes one direction of a shaped connection holds
	// in flight, like a socket buffer: past it, Write blocks, and the
	// receiving pump stops reading from the underlying connection.
	laneLimit = 4 << 20
)

// chunk is a piece of a stream held until its delivery time.
type chunk struct {
	data []byte
	at   time.Time
	// err, inbound only, ends the stream (io.EOF, or the underlying read
	// error) once the chunks before it have been read.
	err error
	// closeWrite, outbound only, half-closes the underlying connection.
	closeWrite bool
}

// lane is one direction of a shaped connection: a FIFO of chunks in
// delivery order, and the clock that scheduled them.
type lane struct {
	from, to string // the direction of travel

	mu      sync.Mutex
	chunks  []chunk
	queued  int           // bytes in chunks
	changed chan struct{} // closed and replaced whenever chunks change
	clock   clock
	err     error // outbound: the underlying write failed
	shut    bool  // outbound: CloseWrite queued
}

func newLane(from, to string) *lane {
	return &lane{from: from, to: to, changed: make(chan struct{})}
}

// notify wakes whoever waits for the lane to change. l.mu must be held.
func (l *lane) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// hasRoom reports whether size more bytes fit. A lone chunk always fits.
// l.mu must be held.
func (l *lane) hasRoom(size int) bool {
	return l.queued == 0 || l.queued+size <= laneLimit
}

// push appends c. l.mu must be held.
func (l *lane) push(c chunk) {
	l.chunks = append(l.chunks, c)
	l.queued += len(c.data)
	l.notify()
}

// pop removes and returns the head chunk. l.mu must be held.
func (l *lane) pop() chunk {
	c := l.chunks[0]
	l.chunks[0] = chunk{}
	l.chunks = l.chunks[1:]
	l.queued -= len(c.data)
	l.notify()
	return c
}

// drop discards every chunk. l.mu must be held.
func (l *lane) drop() {
	clear(l.chunks)
	l.chunks = nil
	l.queued = 0
	l.notify()
}

// take copies into b the data due by now, in order. With nothing due it
// returns how long until the head chunk is due (0: the lane is empty), or
// the error that ends the stream. l.mu must be held.
func (l *lane) take(b []byte, now time.Time) (n int, wait time.Duration, err error) {
	for n < len(b) && len(l.chunks) > 0 {
		head := &l.chunks[0]
		if head.at.After(now) {
			if n == 0 {
				wait = head.at.Sub(now)
			}
			break
		}
		if len(head.data) == 0 {
			if head.err != nil {
				if n == 0 {
					err = head.err // left in place: every later Read sees it too
				}
				break
			}
			l.pop()
			continue
		}
		k := copy(b[n:], head.data)
		head.data = head.data[k:]
		l.queued -= k
		n += k
		if len(head.data) == 0 {
			l.pop()
		}
	}
	if n > 0 {
		l.notify()
	}
	return n, wait, err
}
