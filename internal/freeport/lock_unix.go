//go:build unix

package freeport

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lock takes the lock file of port for the rest of this process's life,
// so that no other process of the test run picks the port; false if
// another holds it. Without a folder for the locks, it takes nothing and
// says yes.
func lock(port int) bool {
	path := lockFile(port)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return true
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	// The descriptor stays open, and the lock held, until the process ends.
	return true
}

// lockFile is the path of port's lock file.
func lockFile(port int) string {
	return filepath.Join(os.TempDir(), "accord-freeport", strconv.Itoa(port))
}
