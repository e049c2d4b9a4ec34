package processes

import (
	"testing"

	"github.com/accord-fl/accord/participant/data/datatest"
)

// needMNIST skips the test when MNIST cannot be had (datatest.NeedMNIST).
func needMNIST(tb testing.TB) {
	tb.Helper()
	datatest.NeedMNIST(tb)
}
