package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// apiError is an error on its way to the wire: a public type and message,
// and the private cause for the log.
type apiError struct {
	typ    api.ErrorType
	msg    string
	reason string
	fields []api.FieldError
	cause  error
}

func (e *apiError) Error() string { return string(e.typ) + ": " + e.msg }
func (e *apiError) Unwrap() error { return e.cause }

func validation(field, msg string) *apiError {
	return &apiError{typ: api.ErrValidation, msg: msg, reason: "FieldValidationFailed",
		fields: []api.FieldError{{Name: field, Message: msg}}}
}

// classes maps each error class to its AgentCore error type: the one
// table where domain errors meet the wire.
var classes = []struct {
	class error
	typ   api.ErrorType
}{
	{errdefs.ErrInvalidArgument, api.ErrValidation},
	{errdefs.ErrNotFound, api.ErrResourceNotFound},
	{errdefs.ErrConflict, api.ErrConflict},
	{errdefs.ErrFailedPrecondition, api.ErrRetryableConflict},
	{errdefs.ErrResourceExhausted, api.ErrServiceQuota},
	{errdefs.ErrUnavailable, api.ErrThrottling},
	{errdefs.ErrPermissionDenied, api.ErrAccessDenied},
	{errdefs.ErrUnauthenticated, api.ErrUnauthorized},
	{errdefs.ErrAgent, api.ErrRuntimeClient},
}

// typedError is an error that names its own AWS error type: internal/auth's
// SigV4 failures (UnrecognizedClientException, InvalidSignatureException,
// ...), which are AWS's, not errdefs classes.
type typedError interface {
	error
	ErrorType() api.ErrorType
}

// classify maps an error to what the caller sees: the type it names
// itself, or its class's AgentCore type, and a field list for a field
// error.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if te := typedError(nil); errors.As(err, &te) {
		return &apiError{typ: te.ErrorType(), msg: te.Error(), cause: err}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &apiError{typ: api.ErrValidation, msg: "payload exceeds the limit of " + itoa64(mbe.Limit) + " bytes", cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{typ: api.ErrRuntimeClient, msg: "the agent did not answer in time", cause: err}
	case errors.Is(err, errdefs.ErrDiskFull):
		// Whichever write hit it, the caller can only wait for space.
		return &apiError{typ: api.ErrThrottling, msg: errdefs.DiskFullMessage, cause: err}
	}
	for _, c := range classes {
		if !errors.Is(err, c.class) {
			continue
		}
		out := &apiError{typ: c.typ, msg: dropClass(err.Error(), c.class), cause: err}
		var fe *errdefs.FieldError
		if errors.As(err, &fe) {
			out.reason = "FieldValidationFailed"
			out.fields = []api.FieldError{{Name: fe.Field, Message: fe.Message}}
		} else if c.typ == api.ErrValidation {
			out.reason = "FieldValidationFailed"
		}
		return out
	}
	return &apiError{typ: api.ErrInternalServer, msg: "internal error", cause: err}
}

// dropClass removes the class's own words from a message: callers read
// "runtime \"x\": not found" fine, but not "busy: failed precondition".
func dropClass(msg string, class error) string {
	name := class.Error()
	if class == errdefs.ErrNotFound {
		return msg
	}
	msg = strings.ReplaceAll(msg, ": "+name+":", ":")
	return strings.TrimSuffix(msg, ": "+name)
}

// writeError sends an AgentCore error response the AWS SDKs decode.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	lvl := s.log.Info
	if ae.typ == api.ErrInternalServer || errors.Is(err, errdefs.ErrDiskFull) {
		lvl = s.log.Error
	}
	lvl("request failed", "method", r.Method, "path", clip(r.URL.Path), "type", ae.typ, "err", clipN(err.Error(), 4<<10))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(api.HeaderErrorType, string(ae.typ))
	if ch := (*challenge)(nil); errors.As(err, &ch) {
		h.Set("WWW-Authenticate", `Bearer resource_metadata="`+ch.metadata+`"`)
	}
	w.WriteHeader(ae.typ.StatusCode())
	body := api.ErrorBody{Message: clip(ae.msg), Reason: ae.reason}
	for _, f := range ae.fields {
		body.FieldList = append(body.FieldList, api.FieldError{Name: clip(f.Name), Message: clip(f.Message)})
	}
	json.NewEncoder(w).Encode(body)
}

// maxEcho caps how much of a message (which may quote the caller's input)
// an error answer or a log line repeats.
const maxEcho = 400

// clip shortens s to maxEcho bytes, on a rune boundary.
func clip(s string) string { return clipN(s, maxEcho) }

func clipN(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)-cut) + " more bytes)"
}
