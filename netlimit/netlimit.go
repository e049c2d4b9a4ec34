// Package netlimit bounds what one source address can hold open on a
// listener: a coordinator on the open internet must not let one host use up
// its connections, file descriptors or handshake slots.
package netlimit

import (
	"net"
	"sync"
)

// Listener wraps a net.Listener so that each source IP address holds at
// most PerIP connections at once; a connection past the limit is closed as
// soon as it is accepted. Connections are counted until they are closed.
type Listener struct {
	net.Listener
	perIP int

	mu   sync.Mutex
	open map[string]int
}

// Listen wraps ln with a limit of perIP connections per source address
// (perIP ≤ 0: no limit).
func Listen(ln net.Listener, perIP int) *Listener {
	return &Listener{Listener: ln, perIP: perIP, open: map[string]int{}}
}

// Accept returns the next connection within the limit.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc, ok := l.admit(c); ok {
			return lc, nil
		}
		c.Close()
	}
}

// admit counts c against its source address; false if that address is at
// its limit.
func (l *Listener) admit(c net.Conn) (net.Conn, bool) {
	ip := SourceIP(c)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP > 0 && l.open[ip] >= l.perIP {
		return nil, false
	}
	l.open[ip]++
	return &conn{Conn: c, release: func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.open[ip]--; l.open[ip] <= 0 {
			delete(l.open, ip)
		}
	}}, true
}

// SourceIP is the IP address a connection comes from ("" if unknown).
func SourceIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return ""
	}
	return host
}

// conn releases its slot once, when closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the connection this one wraps.
func (c *conn) Unwrap() net.Conn { return c.Conn }
