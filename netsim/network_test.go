package netsim

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCutAndHeal(t *testing.T) {
	n := New(1)
	n.SetDefault(Link{Latency: 5 * time.Millisecond})
	euAddr, usAddr := serve(t, echo), serve(t, echo)
	n.Register(euAddr, "eu")
	n.Register(usAddr, "us")

	across := dial(t, n, "eu", usAddr)
	inside := dial(t, n, "eu", euAddr)
	roundTrip(t, across, []byte("before"))

	n.Cut("us")

	if !n.IsCut("eu", "us") || !n.IsCut("us", "eu") {
		t.Errorf("IsCut between eu and us = false after Cut(us); want true")
	}
	if n.IsCut("us", "us") || n.IsCut("eu", "eu") {
		t.Errorf("IsCut inside a region = true; want false")
	}

	// The live connection across the cut is closed by the time Cut returns.
	if _, err := across.Read(make([]byte, 1)); !errors.Is(err, ErrPartitioned) {
		t.Errorf("Read on a cut connection = %v; want ErrPartitioned", err)
	}
	if _, err := across.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
		t.Errorf("Write on a cut connection = %v; want ErrPartitioned", err)
	}

	// New dials across the cut fail, both ways.
	for _, d := range []struct{ from, addr string }{{"eu", usAddr}, {"us", euAddr}} {
		c, err := n.Endpoint(d.from).DialContext(context.Background(), "tcp", d.addr)
		if err == nil {
			c.Close()
			t.Errorf("dial %s from %s across the cut succeeded", d.addr, d.from)
			continue
		}
		if !errors.Is(err, ErrPartitioned) || !strings.Contains(err.Error(), "partitioned") {
			t.Errorf("dial across the cut = %v; want ErrPartitioned", err)
		}
	}

	// Inside each region traffic flows.
	roundTrip(t, inside, []byte("eu to eu"))
	roundTrip(t, dial(t, n, "us", usAddr), []byte("us to us"))

	n.Heal("us")
	if n.IsCut("eu", "us") {
		t.Errorf("IsCut(eu, us) = true after Heal(us); want false")
	}
	roundTrip(t, dial(t, n, "eu", usAddr), []byte("healed"))
}

func TestBytesCountsEachDirection(t *testing.T) {
	n := New(1)
	n.SetLink("eu", "us", Link{Latency: 5 * time.Millisecond})
	usAddr, euAddr := serve(t, echo), serve(t, echo)
	n.Register(usAddr, "us")
	n.Register(euAddr, "eu")

	roundTrip(t, dial(t, n, "eu", usAddr), make([]byte, 1000))
	roundTrip(t, dial(t, n, "eu", euAddr), make([]byte, 300)) // inside eu, zero link
	// The server's half-close reaches the reader: it sends no bytes.
	c := dial(t, n, "us", usAddr)
	if _, err := c.Write(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.(closeWriter).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("read to EOF: %v", err)
	}

	want := map[[2]string]uint64{
		{"eu", "us"}: 1000,
		{"us", "eu"}: 1000,
		{"eu", "eu"}: 600,
		{"us", "us"}: 20,
	}
	waitFor(t, "byte counts to settle", func() bool {
		got := n.Bytes()
		for p, b := range want {
			if got[p] != b {
				return false
			}
		}
		return len(got) == len(want)
	})
}

func TestCutDuringDialFails(t *testing.T) {
	n := New(1)
	addr := serve(t, echo)
	_, err := n.connect(context.Background(), "eu", "us", addr, func(ctx context.Context) (net.Conn, error) {
		n.Cut("us") // after the handshake began, before the connection is live
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	if !errors.Is(err, ErrPartitioned) {
		t.Errorf("dial cut mid-handshake = %v; want ErrPartitioned", err)
	}
}
