package netsim

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// dialPlain opens an unshaped loopback connection, closed when the test ends.
func dialPlain(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startProxy starts a proxy closed when the test ends.
func startProxy(t *testing.T, n *Network, from, to, target string) (string, func() error) {
	t.Helper()
	addr, closeFn, err := n.Proxy(from, to, target)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := closeFn(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	})
	return addr, closeFn
}

func TestProxyForwardsAndShapes(t *testing.T) {
	const latency = 40 * time.Millisecond
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: latency})
	target := serve(t, echo)
	addr, closeFn := startProxy(t, n, "eu", "us", target)

	c := dialPlain(t, addr)
	for i := range 2 {
		if got := roundTrip(t, c, []byte("via proxy")); got < 2*latency {
			t.Errorf("round trip %d took %v; want ≥ %v", i, got, 2*latency)
		}
	}
	waitFor(t, "proxied bytes to be counted", func() bool {
		b := n.Bytes()
		return b[[2]string{"eu", "us"}] == 18 && b[[2]string{"us", "eu"}] == 18
	})

	// A half-close travels through, and the answer still comes back.
	c2 := dialPlain(t, addr)
	if err := c2.SetDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c2.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c2); err != nil || string(b) != "bye" {
		t.Errorf("after half-close read %q, %v; want %q, nil", b, err, "bye")
	}

	// Closing the proxy closes what it forwards.
	if err := closeFn(); err != nil {
		t.Fatalf("close proxy: %v", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("Read through a closed proxy = %v; want EOF or a reset", err)
	}
}

func TestProxyObeysCut(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 5 * time.Millisecond})
	target := serve(t, echo)
	addr, _ := startProxy(t, n, "eu", "us", target)

	live := dialPlain(t, addr)
	roundTrip(t, live, []byte("before"))
	n.Cut("us")
	for name, c := range map[string]net.Conn{"live": live, "new": dialPlain(t, addr)} {
		if err := c.SetReadDeadline(time.Now().Add(patience)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("Read on a %s proxied connection across the cut = %v; want EOF or a reset", name, err)
		}
	}
	n.Heal("us")
	roundTrip(t, dialPlain(t, addr), []byte("healed"))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
