package netsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy starts a TCP proxy listening on 127.0.0.1:0 that forwards every
// connection it accepts to target, shaped as a connection from region from
// to region to, for processes that cannot take a dialer: point them at
// addr instead of target. The proxy's own leg, from the client to addr, is
// not shaped. closeFn stops the listener and closes every forwarded
// connection; it waits for the proxy's goroutines and is safe to call
// twice.
func (n *Network) Proxy(from, to, target string) (addr string, closeFn func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("proxy %s→%s to %s: %w", from, to, target, err)
	}
	p := &proxy{n: n, from: from, to: to, target: target, ln: ln, done: make(chan struct{}), live: map[*proxied]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return ln.Addr().String(), p.close, nil
}

// proxy forwards connections from its listener to target.
type proxy struct {
	n        *Network
	from, to string
	target   string
	ln       net.Listener
	done     chan struct{} // closed by close
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu   sync.Mutex // guards live
	live map[*proxied]struct{}
}

// proxied is one forwarded connection.
type proxied struct {
	client net.Conn
	cancel context.CancelFunc // stops the upstream dial

	mu       sync.Mutex // guards upstream
	upstream *shapedConn
}

// serve accepts connections until the proxy closes, backing off while
// accepting fails (out of file descriptors, say).
func (p *proxy) serve() {
	defer p.wg.Done()
	backoff := time.Duration(0)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-p.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		ctx, cancel := context.WithCancel(context.Background())
		pc := &proxied{client: c, cancel: cancel}
		if !p.add(pc) {
			cancel()
			_ = c.Close()
			return
		}
		p.wg.Add(1)
		go p.forward(ctx, pc)
	}
}

// add records pc as live; false once the proxy is closed.
func (p *proxy) add(pc *proxied) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if closed(p.done) {
		return false
	}
	p.live[pc] = struct{}{}
	return true
}

func (p *proxy) remove(pc *proxied) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, pc)
}

// forward dials target and copies both ways until both sides are done.
func (p *proxy) forward(ctx context.Context, pc *proxied) {
	defer p.wg.Done()
	defer p.remove(pc)
	defer pc.cancel()
	up, err := p.n.connect(ctx, p.from, p.to, p.target, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", p.target)
	})
	if err != nil {
		_ = pc.client.Close()
		return
	}
	pc.mu.Lock()
	pc.upstream = up
	pc.mu.Unlock()
	if ctx.Err() != nil { // closed while dialling
		up.abort(net.ErrClosed)
		_ = pc.client.Close()
		return
	}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() {
		defer copies.Done()
		pipe(up, pc.client)
	}()
	go func() {
		defer copies.Done()
		pipe(pc.client, up)
	}()
	copies.Wait()
	_ = pc.client.Close()
	_ = up.Close()
	up.pumps.Wait() // at most closeLinger, to deliver what the client sent last
}

// pipe copies src to dst. At the end of src it half-closes dst, so the
// other direction may go on; on an error it closes both.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// close stops the listener, closes every forwarded connection at once and
// waits for the proxy's goroutines.
func (p *proxy) close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		close(p.done)
		live := make([]*proxied, 0, len(p.live))
		for pc := range p.live {
			live = append(live, pc)
		}
		p.mu.Unlock()
		if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			p.closeErr = fmt.Errorf("close proxy %s→%s: %w", p.from, p.to, err)
		}
		for _, pc := range live {
			pc.cancel()
			_ = pc.client.Close()
			pc.mu.Lock()
			up := pc.upstream
			pc.mu.Unlock()
			if up != nil {
				up.abort(net.ErrClosed)
			}
		}
		p.wg.Wait()
	})
	return p.closeErr
}
