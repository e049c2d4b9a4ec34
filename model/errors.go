package model

import "errors"

// Errors returned by this package. Callers match them with errors.Is.
var (
	// ErrBadSpec means a model spec string could not be parsed.
	ErrBadSpec = errors.New("bad model spec")
	// ErrShape means parameters or examples do not have the size the model needs.
	ErrShape = errors.New("shape mismatch")
	// ErrNotFinite means an input or parameter is NaN or infinite.
	ErrNotFinite = errors.New("value is not finite")
	// ErrBadConfig means a training configuration is out of range.
	ErrBadConfig = errors.New("bad training config")
	// ErrDiverged means training produced a non-finite loss.
	ErrDiverged = errors.New("training diverged")
)
