// Package errdefs is the closed set of error classes every berth domain
// error wraps. Domain packages say what went wrong in their own words and
// wrap one class with %w; only internal/server turns a class into an HTTP
// status and an AgentCore error type, in one table.
//
//	return fmt.Errorf("runtime %q: %w", ref, errdefs.ErrNotFound)
//
// Callers test with errors.Is. The set is closed on purpose: a new class is
// a new row in the server's table, not a special case.
package errdefs

import (
	"errors"
	"fmt"
	"syscall"
)

// The classes.
var (
	// ErrNotFound: the named thing does not exist (or is not visible to
	// the caller).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the thing already exists, or the write conflicts with
	// the current state in a way retrying will not fix.
	ErrConflict = errors.New("conflict")
	// ErrInvalidArgument: the input is malformed or out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrResourceExhausted: a quota or cap is reached (live sessions,
	// endpoints, runtimes); waiting alone may not help.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrUnavailable: try again later. berth is throttling, draining or
	// out of disk, or a queue is full.
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied: the caller is known but may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: the caller could not be identified.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrFailedPrecondition: the target is in a state that refuses the
	// operation now (a session busy under the reject policy, or still
	// starting or stopping); a retry may succeed.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrAgent: the agent (the user's code) failed: it did not start,
	// crashed, timed out or its session ended under the call.
	ErrAgent = errors.New("agent failed")
)

// DiskFullMessage is what callers are told when berth's disk is full.
const DiskFullMessage = "berth's data disk is full"

// ErrDiskFull: a write failed because berth's data disk (or the quota of
// its user) is full. It is an ErrUnavailable: nothing stored was lost,
// and the same call succeeds once space is freed.
var ErrDiskFull = fmt.Errorf(DiskFullMessage+": %w", ErrUnavailable)

// NoSpace reports whether err is the operating system's "no space left on
// device" or "disk quota exceeded".
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// DiskFull marks err as ErrDiskFull when NoSpace says it is; it returns
// any other error unchanged.
func DiskFull(err error) error {
	if err == nil || errors.Is(err, ErrDiskFull) || !NoSpace(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDiskFull, err)
}

// FieldError is an ErrInvalidArgument about one input field. Field is the
// name the caller used for it ("lifecycleConfiguration.maxLifetime" on the
// control plane, "max_lifetime" in the config file).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Is makes every FieldError an ErrInvalidArgument.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidArgument }

// Field returns a FieldError for field with a formatted message.
func Field(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
