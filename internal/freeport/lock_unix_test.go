//go:build unix

package freeport

import (
	"net"
	"os/exec"
	"strconv"
	"testing"
)

// TestLockKeepsOtherProcessesOff: a port this process locked cannot be
// locked by another process.
func TestLockKeepsOtherProcessesOff(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1) to stand in for another process")
	}
	addr, err := Loopback()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	path := lockFile(n)
	if err := exec.Command("flock", "-n", path, "true").Run(); err == nil {
		t.Fatalf("another process locked %s, which this one holds", path)
	}
}
