package serve

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors returned by this package. Callers match them with errors.Is; the
// REST and gRPC handlers map them to status codes in code and grpcCode.
var (
	// ErrBadRequest means a request is malformed: wrong shape, datatype,
	// size, or a value that is not finite.
	ErrBadRequest = errors.New("bad request")
	// ErrUnknownModel means no served model has the requested name or
	// version.
	ErrUnknownModel = errors.New("unknown model")
	// ErrNotReady means a model has no committed round yet, or the server
	// has not yet learnt the federation's revocations.
	ErrNotReady = errors.New("not ready")
	// ErrForbidden means the caller's certificate is not a consumer's.
	ErrForbidden = errors.New("forbidden")
	// ErrRevoked means the caller's certificate is revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrDigest means a pulled model does not hash to its digest.
	ErrDigest = errors.New("model digest mismatch")
	// ErrClosed means the server is shutting down.
	ErrClosed = errors.New("server closed")
)

// httpCode is the HTTP status of an error.
func httpCode(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownModel):
		return http.StatusNotFound
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrRevoked):
		return http.StatusForbidden
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// grpcCode is the gRPC code of an error.
func grpcCode(err error) codes.Code {
	switch {
	case errors.Is(err, ErrBadRequest):
		return codes.InvalidArgument
	case errors.Is(err, ErrUnknownModel):
		return codes.NotFound
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrRevoked):
		return codes.PermissionDenied
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrClosed):
		return codes.Unavailable
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Internal
}

// toStatus is err as a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(grpcCode(err), err.Error())
}
