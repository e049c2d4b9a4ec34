//go:build !linux

package scenarios

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/accord-fl/accord/netsim"
)

// nsNetwork is Linux's network namespaces; elsewhere the processes runner
// falls back to proxies.
type nsNetwork struct{ prefix string }

func newNSNetwork(context.Context, []string, *netsim.Network) (*nsNetwork, error) {
	return nil, errors.New("network namespaces are Linux only")
}

func (*nsNetwork) host(string) string                             { return "" }
func (*nsNetwork) command(string) []string                        { return nil }
func (*nsNetwork) setCut(string, bool) error                      { return nil }
func (*nsNetwork) dial(context.Context, string) (net.Conn, error) { return nil, errors.ErrUnsupported }
func (*nsNetwork) bytes() map[string]uint64                       { return nil }
func (*nsNetwork) close() error                                   { return nil }

// childProcAttr: only Linux can tie a child's life to the runner's.
func childProcAttr() *syscall.SysProcAttr { return nil }
