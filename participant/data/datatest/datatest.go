// Package datatest helps tests that need the MNIST files: only tests
// import it, so the accord binary never links the testing package.
package datatest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/accord-fl/accord/participant/data"
)

var (
	mnistOnce sync.Once
	mnistErr  error
)

// NeedMNIST skips the test, in every mode, when MNIST cannot be had
// (data.LocateMNIST fails with data.ErrMNISTUnavailable: the GoMNIST
// module is not in the module cache and the module proxy cannot be
// reached, or ACCORD_MNIST_DIR names a folder without the files), and
// says how to provide it. It looks once per test binary.
func NeedMNIST(tb testing.TB) {
	tb.Helper()
	mnistOnce.Do(func() { _, mnistErr = data.LocateMNIST(context.Background()) })
	switch {
	case errors.Is(mnistErr, data.ErrMNISTUnavailable):
		tb.Skipf("needs MNIST, unavailable here; set %s to a folder with the four MNIST .gz files, or let the go command fetch %s (GOPROXY): %v",
			data.MNISTDirEnv, data.MNISTModule, mnistErr)
	case mnistErr != nil:
		tb.Fatalf("locating MNIST: %v", mnistErr)
	}
}
