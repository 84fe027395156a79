package server

import (
	"net/http"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/telemetry"
)

// outcomeWriter notes the status and error type a handler answered with,
// and what the call named. It unwraps, so http.ResponseController still
// reaches Flush and Hijack.
type outcomeWriter struct {
	http.ResponseWriter
	code      int
	errorType string
	// failed is the AgentCore error berth answered with, whatever the
	// status its protocol's shape gave it (MCP's errors answer 200).
	failed    api.ErrorType
	target    telemetry.Target // set by admit once the runtime resolved
	arn       string           // likewise
	sessionID string
}

// noteTarget labels the call's metrics and span with the runtime and
// endpoint it resolved to.
func noteTarget(w http.ResponseWriter, res registry.Resolved) {
	if ow, ok := w.(*outcomeWriter); ok {
		ow.target = telemetry.Target{RuntimeID: res.Runtime.ID, Runtime: res.Runtime.Name, Endpoint: res.Endpoint.Name}
		ow.arn = res.Runtime.ARN
	}
}

// noteSession labels the call's span with its runtime session ID.
func noteSession(w http.ResponseWriter, sid string) {
	if ow, ok := w.(*outcomeWriter); ok {
		ow.sessionID = sid
	}
}

func (o *outcomeWriter) WriteHeader(code int) {
	if o.code == 0 {
		o.code = code
		if code >= 400 {
			o.errorType = o.Header().Get(api.HeaderErrorType)
		}
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *outcomeWriter) Write(b []byte) (int, error) {
	if o.code == 0 {
		o.code = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

func (o *outcomeWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// outcome sorts a status into AgentCore's error classes.
func outcome(code int) telemetry.Outcome {
	switch {
	case code == http.StatusTooManyRequests:
		return telemetry.Throttle
	case code >= 500:
		return telemetry.SystemError
	case code >= 400:
		return telemetry.UserError
	}
	return telemetry.OK
}

// measured wraps the handler of data-plane operation op (AgentCore's name)
// with its server span and, for calls of a kind ("invoke", "websocket"),
// the call metrics. The runtime labels are set only once the request's
// runtime resolved, so junk paths cannot grow the series without bound.
func (s *Server) measured(op, kind string, h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r, span := s.tracing.StartOperation(r, op)
		if (s.metrics == nil || kind == "") && span == nil {
			h(w, r)
			return
		}
		start := time.Now()
		ow := &outcomeWriter{ResponseWriter: w}
		h(ow, r)
		took := time.Since(start)
		o := outcome(ow.code)
		if ow.failed != "" {
			o, ow.errorType = outcome(ow.failed.StatusCode()), string(ow.failed)
		}
		if o != telemetry.OK && ow.errorType == "" {
			ow.errorType = http.StatusText(ow.code)
		}
		if s.metrics != nil && kind != "" {
			s.metrics.Call(kind, ow.target, o, ow.errorType, took)
		}
		s.tracing.EndOperation(span, telemetry.Operation{
			Target: ow.target, ARN: ow.arn, SessionID: ow.sessionID, RequestID: w.Header().Get(api.HeaderAWSRequestID),
			Status: ow.code, Outcome: o, ErrorType: ow.errorType, Took: took,
		})
	}
}
