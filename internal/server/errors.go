package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
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

// classify maps a domain error to its AgentCore error type. It is the only
// place domain errors meet HTTP.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	var fe *registry.FieldError
	switch {
	case errors.As(err, &mbe):
		return &apiError{typ: api.ErrValidation, msg: "payload exceeds the limit of " + itoa64(mbe.Limit) + " bytes", cause: err}
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, session.ErrNotFound):
		return &apiError{typ: api.ErrResourceNotFound, msg: err.Error(), cause: err}
	case errors.As(err, &fe):
		return &apiError{typ: api.ErrValidation, msg: fe.Error(), reason: "FieldValidationFailed",
			fields: []api.FieldError{{Name: fe.Field, Message: fe.Message}}, cause: err}
	case errors.Is(err, registry.ErrValidation):
		return &apiError{typ: api.ErrValidation, msg: err.Error(), reason: "FieldValidationFailed", cause: err}
	case errors.Is(err, registry.ErrQuotaExceeded):
		return &apiError{typ: api.ErrServiceQuota, msg: err.Error(), cause: err}
	case errors.Is(err, registry.ErrConflict), errors.Is(err, session.ErrLive):
		return &apiError{typ: api.ErrConflict, msg: err.Error(), cause: err}
	case errors.Is(err, session.ErrStartFailed), errors.Is(err, session.ErrEnded), errors.Is(err, session.ErrBackend):
		return &apiError{typ: api.ErrRuntimeClient, msg: err.Error(), cause: err}
	case errors.Is(err, session.ErrBusy):
		return &apiError{typ: api.ErrRetryableConflict, msg: err.Error(), cause: err}
	case errors.Is(err, session.ErrQueueFull), errors.Is(err, session.ErrQueueTimeout):
		return &apiError{typ: api.ErrThrottling, msg: err.Error(), cause: err}
	case errors.Is(err, session.ErrAccessDenied):
		return &apiError{typ: api.ErrAccessDenied, msg: err.Error(), cause: err}
	case errors.Is(err, session.ErrQuota):
		return &apiError{typ: api.ErrServiceQuota, msg: err.Error(), cause: err}
	case errors.Is(err, session.ErrShuttingDown):
		return &apiError{typ: api.ErrThrottling, msg: "berth is shutting down; retry against another node", cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{typ: api.ErrRuntimeClient, msg: "the agent did not answer in time", cause: err}
	default:
		return &apiError{typ: api.ErrInternalServer, msg: "internal error", cause: err}
	}
}

// writeError sends an AgentCore error response the AWS SDKs decode.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	lvl := s.log.Info
	if ae.typ == api.ErrInternalServer {
		lvl = s.log.Error
	}
	lvl("request failed", "method", r.Method, "path", r.URL.Path, "type", ae.typ, "err", err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(api.HeaderErrorType, string(ae.typ))
	w.WriteHeader(ae.typ.StatusCode())
	json.NewEncoder(w).Encode(api.ErrorBody{Message: ae.msg, Reason: ae.reason, FieldList: ae.fields})
}
