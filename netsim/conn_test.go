package netsim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

func TestEchoRoundTripTakesTwoLatencies(t *testing.T) {
	tests := []struct {
		name string
		link Link
	}{
		{"latency", Link{Latency: 50 * time.Millisecond}},
		{"latency and jitter", Link{Latency: 30 * time.Millisecond, Jitter: 20 * time.Millisecond}},
		{"latency and bandwidth", Link{Latency: 30 * time.Millisecond, Bandwidth: 1 << 20}},
		{"lossy", Link{Latency: 20 * time.Millisecond, Loss: 0.3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(7)
			n.SetLink("eu", "us", tt.link)
			addr := serve(t, echo)
			n.Register(addr, "us")

			start := time.Now()
			c := dial(t, n, "eu", addr)
			if got, want := time.Since(start), 2*tt.link.Latency; got < want {
				t.Errorf("dial took %v; want ≥ %v (one round trip)", got, want)
			}
			for i := range 3 {
				if got, want := roundTrip(t, c, []byte("ping")), 2*tt.link.Latency; got < want {
					t.Errorf("round trip %d took %v; want ≥ %v", i, got, want)
				}
			}
		})
	}
}

func TestBandwidthLimitsThroughput(t *testing.T) {
	const size = 1 << 20
	n := New(1)
	n.SetLink("eu", "us", Link{Bandwidth: 4 << 20})
	// The server reads everything, then answers with one byte.
	addr := serve(t, func(c net.Conn) {
		if _, err := io.CopyN(io.Discard, c, size); err == nil {
			_, _ = c.Write([]byte{1})
		}
	})
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)
	if err := c.SetDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if got, want := time.Since(start), 200*time.Millisecond; got < want {
		t.Errorf("1 MiB over 4 MiB/s took %v; want ≥ %v", got, want)
	}
}

func TestJitterKeepsStreamOrder(t *testing.T) {
	const count = 500
	n := New(3)
	n.SetLink("eu", "us", Link{Latency: 5 * time.Millisecond, Jitter: 20 * time.Millisecond})
	addr := serve(t, echo)
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)
	if err := c.SetDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}

	errc := make(chan error, 1)
	go func() {
		var b [4]byte
		for i := range uint32(count) {
			binary.BigEndian.PutUint32(b[:], i)
			if _, err := c.Write(b[:]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var b [4]byte
	for want := range uint32(count) {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("read chunk %d: %v", want, err)
		}
		if got := binary.BigEndian.Uint32(b[:]); got != want {
			t.Fatalf("chunk %d arrived in place %d", got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestLargeTransferArrivesIntact(t *testing.T) {
	const size = 6 << 20 // more than a lane holds, so Write must block and resume
	n := New(5)
	n.SetLink("eu", "us", Link{Latency: 2 * time.Millisecond, Jitter: 3 * time.Millisecond, Bandwidth: 64 << 20, Loss: 0.01})
	addr := serve(t, echo)
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)
	if err := c.SetDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}

	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed bytes differ from those sent")
	}
}

func TestReadDeadline(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 10 * time.Millisecond})
	addr := serve(t, echo)
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)

	const wait = 50 * time.Millisecond
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(wait)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if got := time.Since(start); got < wait {
		t.Errorf("Read returned after %v; want ≥ %v", got, wait)
	}
	assertTimeout(t, "Read", err)

	// A cleared deadline lets the connection carry on.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("still there"))
}

func TestDeadlineMovedWhileReading(t *testing.T) {
	n := New(1)
	addr := serve(t, echo)
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)
	if err := c.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errc <- err
	}()
	if err := c.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		assertTimeout(t, "Read", err)
	case <-time.After(patience):
		t.Fatal("Read still blocked after its deadline was moved to now")
	}
}

func TestWriteDeadline(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Bandwidth: 1 << 10}) // 1 KiB/s: the lane fills at once
	addr := serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)

	const wait = 50 * time.Millisecond
	start := time.Now()
	if err := c.SetWriteDeadline(start.Add(wait)); err != nil {
		t.Fatal(err)
	}
	written, err := c.Write(make([]byte, 2*laneLimit))
	if got := time.Since(start); got < wait {
		t.Errorf("Write returned after %v; want ≥ %v", got, wait)
	}
	assertTimeout(t, "Write", err)
	if written <= 0 || written > laneLimit {
		t.Errorf("Write wrote %d bytes before its deadline; want some, at most %d", written, laneLimit)
	}
}

func assertTimeout(t *testing.T, op string, err error) {
	t.Helper()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s error = %v; want os.ErrDeadlineExceeded", op, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s error = %v; want a net.Error with Timeout()", op, err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 10 * time.Millisecond})
	addr := serve(t, echo)
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)

	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v; want net.ErrClosed", err)
		}
	case <-time.After(patience):
		t.Fatal("Read still blocked after Close")
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v; want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v; want net.ErrClosed", err)
	}
}

func TestCloseDeliversWhatWasWritten(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 50 * time.Millisecond})
	got := make(chan []byte, 1)
	addr := serve(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- b
	})
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case b := <-got:
		if string(b) != "last words" {
			t.Errorf("server read %q; want %q", b, "last words")
		}
	case <-time.After(patience):
		t.Fatal("server never saw the end of the stream")
	}
}

func TestCloseWriteDeliversEOF(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 20 * time.Millisecond})
	addr := serve(t, echo)
	n.Register(addr, "us")
	c := dial(t, n, "eu", addr)
	if err := c.SetDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("half")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(closeWriter).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	b, err := io.ReadAll(c) // the echo server closes after our EOF
	if err != nil || string(b) != "half" {
		t.Errorf("ReadAll = %q, %v; want %q, nil", b, err, "half")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Errorf("Write after CloseWrite succeeded; want an error")
	}
}

func TestDialHonoursContext(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 5 * time.Second})
	addr := serve(t, echo)
	n.Register(addr, "us")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := n.Endpoint("eu").DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		t.Fatal("dial over a 10s handshake within 50ms succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial error = %v; want context.DeadlineExceeded", err)
	}
	if got := time.Since(start); got > 4*time.Second {
		t.Errorf("dial returned after %v; want it to stop at the context's deadline", got)
	}
}

func TestUnregisteredAddressIsNotShaped(t *testing.T) {
	n := New(1)
	n.SetDefault(Link{Latency: time.Hour})
	addr := serve(t, echo)
	c := dial(t, n, "eu", addr)
	if _, ok := c.(*shapedConn); ok {
		t.Fatalf("dial to an unregistered address returned a shaped connection")
	}
	roundTrip(t, c, []byte("plain"))
}

func TestUnsupportedNetwork(t *testing.T) {
	n := New(1)
	n.Register("127.0.0.1:9", "us")
	_, err := n.Endpoint("eu").DialContext(context.Background(), "udp", "127.0.0.1:9")
	if !errors.Is(err, ErrUnsupportedNetwork) {
		t.Errorf("dial udp = %v; want ErrUnsupportedNetwork", err)
	}
}
