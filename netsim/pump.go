package netsim

import (
	"bytes"
	"time"
)

// sendLoop writes the outbound chunks to the underlying connection as they
// fall due, then closes it once the connection is closed and drained.
func (c *shapedConn) sendLoop() {
	defer c.pumps.Done()
	defer c.n.untrack(c)
	if err := c.send(); err != nil {
		c.out.mu.Lock()
		c.out.err = err
		c.out.drop()
		c.out.mu.Unlock()
		<-c.closing // the receive side may still be read
	}
	_ = c.raw.Close()
}

// send delivers chunks until the connection is closed and drained or
// aborted (nil), or the underlying connection fails.
func (c *shapedConn) send() error {
	for {
		ch, ok := c.nextOut()
		if !ok {
			return nil
		}
		if ch.closeWrite {
			if cw, ok := c.raw.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil {
					return err
				}
			}
			continue
		}
		if _, err := c.raw.Write(ch.data); err != nil {
			return err
		}
		c.n.count(c.out.from, c.out.to, len(ch.data))
	}
}

// nextOut waits for the head outbound chunk to fall due and pops it; false
// once there is nothing more to deliver.
func (c *shapedConn) nextOut() (chunk, bool) {
	l := c.out
	for {
		if closed(c.aborted) {
			return chunk{}, false
		}
		closing := closed(c.closing)
		l.mu.Lock()
		if len(l.chunks) == 0 {
			changed := l.changed
			l.mu.Unlock()
			if closing {
				return chunk{}, false
			}
			select {
			case <-changed:
			case <-c.closing:
			}
			continue
		}
		head := l.chunks[0]
		if closing && head.at.After(c.lingerDeadline()) {
			l.drop()
			l.mu.Unlock()
			return chunk{}, false
		}
		wait := time.Until(head.at)
		if wait <= 0 {
			l.pop()
			l.mu.Unlock()
			return head, true
		}
		l.mu.Unlock()
		wake := c.closing // to apply the linger bound at once
		if closing {
			wake = nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-wake:
		case <-c.aborted:
		}
		timer.Stop()
	}
}

func (c *shapedConn) lingerDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lingerUntil
}

// receiveLoop reads the underlying connection and queues what arrives for
// delivery over the return link, ending the stream with the read error.
func (c *shapedConn) receiveLoop() {
	defer c.pumps.Done()
	buf := make([]byte, chunkSize)
	for {
		n, err := c.raw.Read(buf)
		if n > 0 && !c.admit(bytes.Clone(buf[:n])) {
			return
		}
		if err != nil {
			c.in.mu.Lock()
			c.in.push(chunk{at: c.schedule(c.in, 0), err: err})
			c.in.mu.Unlock()
			return
		}
	}
}

// admit queues data on the inbound lane, waiting for room; false if the
// connection closed first.
func (c *shapedConn) admit(data []byte) bool {
	l := c.in
	for {
		l.mu.Lock()
		if l.hasRoom(len(data)) {
			l.push(chunk{data: data, at: c.schedule(l, len(data))})
			l.mu.Unlock()
			return true
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-c.closing:
			return false
		}
	}
}
