package data

import "errors"

// Errors returned by this package. Callers match them with errors.Is.
var (
	// ErrFormat means a file is not in the format expected (IDX, CSV).
	ErrFormat = errors.New("bad data format")
	// ErrMNISTUnavailable means the MNIST files could not be found or fetched.
	ErrMNISTUnavailable = errors.New("MNIST is not available")
	// ErrPartition means a dataset cannot be split as asked.
	ErrPartition = errors.New("cannot partition")
)
