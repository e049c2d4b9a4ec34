package netsim

import "errors"

var (
	// ErrPartitioned is the cause of a failed dial across a cut, and of the
	// errors that Read and Write return on a connection that a cut closed.
	ErrPartitioned = errors.New("netsim: partitioned")

	// ErrUnsupportedNetwork is returned by Endpoint.DialContext for a
	// network other than "tcp", "tcp4" or "tcp6" to a registered address.
	ErrUnsupportedNetwork = errors.New("netsim: unsupported network")

	// ErrTransportShutdown is returned by a wrapped memberlist transport
	// after its Shutdown.
	ErrTransportShutdown = errors.New("netsim: transport shut down")

	// errWriteClosed is returned by Write after CloseWrite.
	errWriteClosed = errors.New("netsim: write after CloseWrite")
)
