package netsim

import (
	"io"
	"log"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// netTransport starts a memberlist transport on a free loopback port, shut
// down when the test ends, and returns it with its address.
func netTransport(t *testing.T) (*memberlist.NetTransport, string) {
	t.Helper()
	tr, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatalf("new transport: %v", err)
	}
	t.Cleanup(func() { shutdownDraining(t, tr) })
	return tr, net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.GetAutoBindPort()))
}

// shutdownDraining shuts tr down while draining its unbuffered channels,
// on which its listeners may be blocked.
func shutdownDraining(t *testing.T, tr memberlist.Transport) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-tr.PacketCh():
			case c := <-tr.StreamCh():
				_ = c.Close()
			case <-done:
				return
			}
		}
	}()
	if err := tr.Shutdown(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	close(done)
}

// expectPacket waits for one packet on tr and returns it.
func expectPacket(t *testing.T, tr memberlist.Transport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(patience):
		t.Fatal("no packet arrived")
		return nil
	}
}

// expectNoPacket fails if a packet arrives on tr within wait.
func expectNoPacket(t *testing.T, tr memberlist.Transport, wait time.Duration) {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		t.Errorf("packet %q arrived; want it dropped", p.Buf)
	case <-time.After(wait):
	}
}

func TestWrappedTransportPackets(t *testing.T) {
	const latency = 50 * time.Millisecond
	a, _ := netTransport(t)
	b, bAddr := netTransport(t)
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: latency})
	n.Register(bAddr, "us")
	w := n.Endpoint("eu").WrapTransport(a)

	start := time.Now()
	buf := []byte("ping")
	if _, err := w.WriteTo(buf, bAddr); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	copy(buf, "XXXX") // the caller owns buf again once WriteTo returns
	if p := expectPacket(t, b); string(p.Buf) != "ping" {
		t.Errorf("received %q; want %q", p.Buf, "ping")
	}
	if got := time.Since(start); got < latency {
		t.Errorf("packet took %v; want ≥ %v", got, latency)
	}
	waitFor(t, "the packet to be counted", func() bool { return n.Bytes()[[2]string{"eu", "us"}] == 4 })

	if _, err := w.WriteToAddress([]byte("by name"), memberlist.Address{Addr: bAddr, Name: "b"}); err != nil {
		t.Fatalf("WriteToAddress: %v", err)
	}
	if p := expectPacket(t, b); string(p.Buf) != "by name" {
		t.Errorf("received %q; want %q", p.Buf, "by name")
	}

	n.Cut("us")
	if _, err := w.WriteTo([]byte("cut"), bAddr); err != nil {
		t.Fatalf("WriteTo across a cut: %v; want a silent drop", err)
	}
	expectNoPacket(t, b, 300*time.Millisecond)
	n.Heal("us")

	// A packet in flight when the cut comes is lost too.
	n.SetLink("eu", "us", Link{Latency: 500 * time.Millisecond})
	if _, err := w.WriteTo([]byte("in flight"), bAddr); err != nil {
		t.Fatal(err)
	}
	n.Cut("us")
	expectNoPacket(t, b, 800*time.Millisecond)
	n.Heal("us")
}

func TestWrappedTransportLoss(t *testing.T) {
	a, _ := netTransport(t)
	b, bAddr := netTransport(t)
	n := New(1)
	n.SetLink("eu", "us", Link{Loss: 0.999999})
	n.Register(bAddr, "us")
	w := n.Endpoint("eu").WrapTransport(a)
	for range 10 {
		if _, err := w.WriteTo([]byte("lost"), bAddr); err != nil {
			t.Fatal(err)
		}
	}
	expectNoPacket(t, b, 300*time.Millisecond)
}

func TestWrappedTransportPassesUnregisteredThrough(t *testing.T) {
	a, _ := netTransport(t)
	b, bAddr := netTransport(t)
	n := New(1)
	n.SetDefault(Link{Latency: time.Hour})
	w := n.Endpoint("eu").WrapTransport(a)
	if _, err := w.WriteTo([]byte("plain"), bAddr); err != nil {
		t.Fatal(err)
	}
	if p := expectPacket(t, b); string(p.Buf) != "plain" {
		t.Errorf("received %q; want %q", p.Buf, "plain")
	}
}

func TestWrappedTransportStream(t *testing.T) {
	const latency = 30 * time.Millisecond
	a, _ := netTransport(t)
	b, bAddr := netTransport(t)
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: latency})
	n.Register(bAddr, "us")
	w := n.Endpoint("eu").WrapTransport(a)

	c, err := w.DialTimeout(bAddr, patience)
	if err != nil {
		t.Fatalf("DialTimeout: %v", err)
	}
	defer c.Close()
	var server net.Conn
	select {
	case server = <-b.StreamCh():
	case <-time.After(patience):
		t.Fatal("no stream arrived")
	}
	defer server.Close()
	go echo(server)

	if got := roundTrip(t, c, []byte("push pull")); got < 2*latency {
		t.Errorf("stream round trip took %v; want ≥ %v", got, 2*latency)
	}
	if _, ok := c.(*shapedConn); !ok {
		t.Errorf("DialTimeout returned %T; want a shaped connection", c)
	}

	n.Cut("us")
	if _, err := w.DialAddressTimeout(memberlist.Address{Addr: bAddr}, patience); err == nil {
		t.Error("DialAddressTimeout across a cut succeeded")
	}
}

func TestWrappedTransportShutdown(t *testing.T) {
	a, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, bAddr := netTransport(t)
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: time.Hour})
	n.Register(bAddr, "us")
	w := n.Endpoint("eu").WrapTransport(a)
	if _, err := w.WriteTo([]byte("never"), bAddr); err != nil {
		t.Fatal(err)
	}
	shutdownDraining(t, w) // drops the packet in flight, stops its timer
	if _, err := w.WriteTo([]byte("late"), bAddr); err == nil {
		t.Error("WriteTo after Shutdown succeeded")
	}
	expectNoPacket(t, b, 100*time.Millisecond)
}
