package state

import "errors"

// Errors of the replicated state: the FSM's refusals and the checks of
// what it holds (job specs, policies). The coordinator's services map them
// to gRPC status codes with its own (toStatus).
var (
	// ErrUnknownJob means no job has the given ID.
	ErrUnknownJob = errors.New("unknown job")
	// ErrUnknownRound means the job has no such committed round.
	ErrUnknownRound = errors.New("unknown round")
	// ErrBadJobSpec means a submitted job spec is invalid.
	ErrBadJobSpec = errors.New("invalid job spec")
	// ErrJobNotRunning means the job has finished or was cancelled.
	ErrJobNotRunning = errors.New("job is not running")
	// ErrBadUpdate means an update is malformed (header, length, values).
	ErrBadUpdate = errors.New("malformed update")
	// ErrForbidden means the caller's role may not make this call.
	ErrForbidden = errors.New("role not allowed")
	// ErrConflict means a command does not fit the FSM's state (for example,
	// committing a round that is not open).
	ErrConflict = errors.New("command conflicts with state")
	// ErrReplay means a signed admin request was already carried out.
	ErrReplay = errors.New("replayed admin request")
	// ErrBadRequest means a request field is invalid (a page token, say).
	ErrBadRequest = errors.New("invalid request")
	// ErrRevoked means a certificate has been revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrBadPolicy means a policy, member name or revocation is invalid.
	ErrBadPolicy = errors.New("invalid governance request")
	// ErrUnknownProposal means no proposal has the given ID.
	ErrUnknownProposal = errors.New("unknown proposal")
	// ErrAlreadyApproved means the approver's organisation already
	// approved the proposal (an organisation counts once).
	ErrAlreadyApproved = errors.New("already approved by this organisation")
	// ErrUnknownCertificate means no certificate of that name was seen.
	ErrUnknownCertificate = errors.New("unknown certificate")
)
