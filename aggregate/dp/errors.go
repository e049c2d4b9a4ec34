package dp

import "errors"

var (
	// ErrParams marks parameters outside what a mechanism, plan or
	// accountant accepts; the message names the parameter.
	ErrParams = errors.New("bad differential-privacy parameters")
	// ErrLength marks a vector whose length differs from the plan's.
	ErrLength = errors.New("wrong vector length")
	// ErrNotFinite marks an update with a NaN or infinite value, which
	// cannot be clipped.
	ErrNotFinite = errors.New("update is not finite")
)
