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
// binds both). A port is handed out once per process, and across the
// processes of a test run a lock file per port (released when the process
// ends) keeps two from picking the same one.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port picked.
const lowest = 10_000

var (
	mu     sync.Mutex
	handed = map[int]bool{} // ports this process handed out
)

// Loopback returns 127.0.0.1:PORT with a port that is free for TCP and UDP
// now, has not been handed out before, and lies below the ephemeral range.
// Where that range starts too low to leave room, or 200 picks found
// nothing, it falls back to ports the kernel picks (in the ephemeral
// range, so with the race above), still free for TCP and UDP.
func Loopback() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if top := ephemeralLow(); top-lowest >= 1000 {
		for range 200 {
			if port := lowest + rand.IntN(top-lowest); take(port) {
				return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
			}
		}
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("a free loopback port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if take(port) {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
		}
	}
	return "", fmt.Errorf("a free loopback port: none of 300 tried is free for TCP and UDP")
}

// take hands port out if it has not been, is free and can be locked
// (mu held).
func take(port int) bool {
	if handed[port] || !free(port) || !lock(port) {
		return false
	}
	handed[port] = true
	return true
}

// free reports whether port can be bound on 127.0.0.1 for TCP and UDP.
func free(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
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
