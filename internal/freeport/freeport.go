// Package freeport picks loopback addresses for the processes that tests
// and the scenario runner start, which must be told their addresses
// before they listen.
//
// The usual way, listening on port 0 and closing the listener, races: the
// kernel hands the same port to the next listener on port 0 or to the next
// outgoing connection, and when tests run in parallel one of them takes it
// before the child process binds it ("address already in use"). Loopback
// picks instead from the ports below the kernel's ephemeral range, which
// neither of those draw from, one that is free for TCP and UDP (gossip
// binds both).
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port picked.
const lowest = 10_000

// Loopback returns 127.0.0.1:PORT with a port that is free for TCP and UDP
// now and lies below the ephemeral range. Where that range starts too low
// to leave room, it falls back to a port the kernel picks.
func Loopback() (string, error) {
	top := ephemeralLow()
	if top-lowest >= 1000 {
		for range 200 {
			port := lowest + rand.IntN(top-lowest)
			if addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port)); free(addr) {
				return addr, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// free reports whether addr can be bound for TCP and for UDP.
func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	p, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	p.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range
// (net.ipv4.ip_local_port_range; Linux's default start where unreadable).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 32768
}
