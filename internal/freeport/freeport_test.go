package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestLoopbackIsFreeAndOutsideTheEphemeralRange: every address picked can
// be bound for TCP and UDP, lies below the ephemeral range, and is never
// handed out twice.
func TestLoopbackIsFreeAndOutsideTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[string]bool{}
	for range 50 {
		addr, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("%q: not a loopback address (%v)", addr, err)
		}
		if n, _ := strconv.Atoi(port); low-lowest >= 1000 && (n < lowest || n >= low) {
			t.Errorf("port %d is outside [%d, %d)", n, lowest, low)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		p, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("%s (udp): %v", addr, err)
		}
		p.Close()
		l.Close()
	}
}
