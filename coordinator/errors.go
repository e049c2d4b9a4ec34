package coordinator

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/coordinator/peers"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	"github.com/accord-fl/accord/store"
)

// Errors returned by the coordinator. gRPC handlers map them to status codes
// in one place, toStatus.
var (
	// ErrNotLeader means the call needs the Raft leader and this node is not it.
	ErrNotLeader = errors.New("not the leader")
	// ErrUnknownModel means no stored model has the digest.
	ErrUnknownModel = errors.New("unknown model")
)

// toStatus maps an error to a gRPC status carrying its message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrStreamTimeout):
		code = codes.DeadlineExceeded
	case errors.Is(err, ErrNotLeader), errors.Is(err, peers.ErrUnreachable):
		code = codes.Unavailable
	case errors.Is(err, state.ErrUnknownJob), errors.Is(err, state.ErrUnknownRound), errors.Is(err, ErrUnknownModel), errors.Is(err, store.ErrNotFound),
		errors.Is(err, state.ErrUnknownProposal), errors.Is(err, state.ErrUnknownCertificate):
		code = codes.NotFound
	case errors.Is(err, state.ErrBadJobSpec), errors.Is(err, state.ErrBadUpdate), errors.Is(err, aggregate.ErrShape),
		errors.Is(err, aggregate.ErrNotFinite), errors.Is(err, protocol.ErrTensor), errors.Is(err, model.ErrBadSpec), errors.Is(err, state.ErrBadPolicy),
		errors.Is(err, state.ErrBadRequest), errors.Is(err, protocol.ErrParts):
		code = codes.InvalidArgument
	case errors.Is(err, state.ErrJobNotRunning), errors.Is(err, schedule.ErrWrongRound), errors.Is(err, schedule.ErrWrongPhase), errors.Is(err, state.ErrConflict),
		errors.Is(err, schedule.ErrRoundClosed):
		code = codes.FailedPrecondition
	case errors.Is(err, schedule.ErrNotInCohort), errors.Is(err, state.ErrForbidden), errors.Is(err, state.ErrReplay), errors.Is(err, state.ErrRevoked),
		errors.Is(err, adminauth.ErrBadSignature):
		code = codes.PermissionDenied
	case errors.Is(err, schedule.ErrDuplicate), errors.Is(err, state.ErrAlreadyApproved), errors.Is(err, protocol.ErrPartRepeated):
		code = codes.AlreadyExists
	case errors.Is(err, ErrRateLimited):
		code = codes.ResourceExhausted
	case errors.Is(err, pki.ErrNoIdentity), errors.Is(err, adminauth.ErrUnsigned):
		code = codes.Unauthenticated
	}
	return status.Error(code, err.Error())
}
