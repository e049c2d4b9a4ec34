package netsim

import (
	"bytes"
	"net"
	"os"
	"sync"
	"time"
)

// closeLinger bounds how long a closed connection keeps delivering the
// bytes it had queued, as a kernel does after close(2): chunks due later
// than this after Close are dropped.
const closeLinger = time.Second

// shapedConn is a net.Conn whose two directions travel modelled links.
// What it writes is queued in out and written to raw by the send pump at
// each chunk's delivery time; what raw receives is queued in in by the
// receive pump and handed to Read at each chunk's delivery time.
type shapedConn struct {
	n        *Network
	raw      net.Conn
	from, to string
	out, in  *lane
	rd, wd   *deadline

	readMu  sync.Mutex // one Read at a time
	writeMu sync.Mutex // Writes do not interleave

	mu          sync.Mutex
	reason      error     // why Read and Write fail once closing: net.ErrClosed or a partition
	lingerUntil time.Time // the send pump drops chunks due later
	hard        bool      // aborted

	closing chan struct{} // closed by Close and abort
	aborted chan struct{} // closed by abort
	pumps   sync.WaitGroup
}

// closeWriter is the half-close of *net.TCPConn and *tls.Conn.
type closeWriter interface {
	CloseWrite() error
}

func newShapedConn(n *Network, raw net.Conn, from, to string) *shapedConn {
	return &shapedConn{
		n:       n,
		raw:     raw,
		from:    from,
		to:      to,
		out:     newLane(from, to),
		in:      newLane(to, from),
		rd:      newDeadline(),
		wd:      newDeadline(),
		closing: make(chan struct{}),
		aborted: make(chan struct{}),
	}
}

// start runs the two pumps.
func (c *shapedConn) start() {
	c.pumps.Add(2)
	go c.sendLoop()
	go c.receiveLoop()
}

// Read returns the bytes whose modelled delivery time has come, waiting
// for them until the read deadline.
func (c *shapedConn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if err := c.closedErr(); err != nil {
			return 0, c.opError("read", err)
		}
		if c.rd.passed() {
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		if len(b) == 0 {
			return 0, nil
		}
		c.in.mu.Lock()
		n, wait, err := c.in.take(b, time.Now())
		if n > 0 {
			c.n.count(c.in.from, c.in.to, n)
		}
		changed := c.in.changed
		c.in.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
		var (
			timer *time.Timer
			due   <-chan time.Time
		)
		if wait > 0 {
			timer = time.NewTimer(wait)
			due = timer.C
		}
		select {
		case <-changed:
		case <-due:
		case <-c.closing:
		case <-c.rd.wait():
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// Write queues b for delivery over the link and returns without waiting
// for it; it blocks only while the lane is full, until the write deadline.
func (c *shapedConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	written := 0
	for {
		if err := c.closedErr(); err != nil {
			return written, c.opError("write", err)
		}
		if c.wd.passed() {
			return written, c.opError("write", os.ErrDeadlineExceeded)
		}
		if len(b) == 0 {
			return written, nil
		}
		size := min(len(b), chunkSize)
		c.out.mu.Lock()
		if err := c.out.err; err != nil {
			c.out.mu.Unlock()
			return written, err
		}
		if c.out.shut {
			c.out.mu.Unlock()
			return written, c.opError("write", errWriteClosed)
		}
		if c.out.hasRoom(size) {
			at := c.schedule(c.out, size)
			c.out.push(chunk{data: bytes.Clone(b[:size]), at: at})
			c.out.mu.Unlock()
			written += size
			b = b[size:]
			continue
		}
		changed := c.out.changed
		c.out.mu.Unlock()
		select {
		case <-changed:
		case <-c.closing:
		case <-c.wd.wait():
		}
	}
}

// CloseWrite half-closes the connection once the bytes already written
// have been delivered: the far side then reads io.EOF.
func (c *shapedConn) CloseWrite() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.closedErr(); err != nil {
		return c.opError("close", err)
	}
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if !c.out.shut {
		c.out.shut = true
		c.out.push(chunk{at: c.schedule(c.out, 0), closeWrite: true})
	}
	return nil
}

// schedule stamps a chunk of size bytes entering l now. l.mu must be held.
func (c *shapedConn) schedule(l *lane, size int) time.Time {
	link := c.n.Link(l.from, l.to)
	return l.clock.schedule(time.Now(), size, link, c.n.draw(link))
}

// Close closes the connection: Read and Write fail at once, and the bytes
// already written are still delivered in the background, for at most
// closeLinger, before the underlying connection closes.
func (c *shapedConn) Close() error {
	if !c.stop(net.ErrClosed) {
		return c.opError("close", net.ErrClosed)
	}
	return nil
}

// stop starts closing with reason; false if already closing.
func (c *shapedConn) stop(reason error) bool {
	c.mu.Lock()
	if c.reason != nil {
		c.mu.Unlock()
		return false
	}
	c.reason = reason
	c.lingerUntil = time.Now().Add(closeLinger)
	close(c.closing)
	c.mu.Unlock()
	_ = c.raw.SetWriteDeadline(c.lingerUntil)
	c.rd.stop()
	c.wd.stop()
	return true
}

// abort closes the connection at once, dropping what is queued, as a cut
// does, and waits for the pumps to finish.
func (c *shapedConn) abort(reason error) {
	c.stop(reason)
	c.mu.Lock()
	first := !c.hard
	c.hard = true
	c.mu.Unlock()
	if first {
		close(c.aborted)
		_ = c.raw.Close()
	}
	c.pumps.Wait()
}

// closedErr returns why the connection is closed, or nil.
func (c *shapedConn) closedErr() error {
	if !closed(c.closing) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

func (c *shapedConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.raw.LocalAddr().Network(), Source: c.raw.LocalAddr(), Addr: c.raw.RemoteAddr(), Err: err}
}

// LocalAddr returns the underlying connection's local address.
func (c *shapedConn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *shapedConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *shapedConn) SetDeadline(t time.Time) error {
	if err := c.closedErr(); err != nil {
		return c.opError("set deadline", err)
	}
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline sets the time after which a waiting Read fails with
// os.ErrDeadlineExceeded.
func (c *shapedConn) SetReadDeadline(t time.Time) error {
	if err := c.closedErr(); err != nil {
		return c.opError("set deadline", err)
	}
	c.rd.set(t)
	return nil
}

// SetWriteDeadline sets the time after which a Write blocked on a full
// lane fails with os.ErrDeadlineExceeded.
func (c *shapedConn) SetWriteDeadline(t time.Time) error {
	if err := c.closedErr(); err != nil {
		return c.opError("set deadline", err)
	}
	c.wd.set(t)
	return nil
}
