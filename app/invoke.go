package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
)

// HTTPError is a handler error with its own status, the counterpart of
// raising Starlette's HTTPException in a Python entrypoint. The client gets
// Status and {"error": Detail}. Handlers may wrap it; the app finds it with
// errors.As.
type HTTPError struct {
	// Status is the HTTP status, 400 to 599; anything else is sent as 500.
	Status int
	// Detail is the message sent to the client; empty means the status text.
	Detail string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("http %d: %s", e.Status, e.detail())
}

func (e *HTTPError) detail() string {
	if e.Detail != "" {
		return e.Detail
	}
	return http.StatusText(e.status())
}

func (e *HTTPError) status() int {
	if e.Status < 400 || e.Status > 599 {
		return http.StatusInternalServerError
	}
	return e.Status
}

// Response is a handler result written as is, the counterpart of returning a
// Starlette Response from a Python entrypoint. Use it for non-JSON bodies or
// a status other than 200.
type Response struct {
	// Status defaults to 200.
	Status int
	// Header is copied onto the response. Without a Content-Type, net/http
	// sniffs one from Body.
	Header http.Header
	Body   []byte
}

// errorBody is the app's JSON error shape, as the Python SDK sends it.
type errorBody struct {
	Error   string `json:"error"`
	Details string `json:"details,omitempty"`
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string     { return fmt.Sprintf("panic: %v", e.value) }
func (e *panicError) ErrorType() string { return "panic" }

func (a *App) serveInvocation(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := newRequestContext(r, a.logger)
	ctx := ContextWithRequest(r.Context(), rc)
	sw := &statusWriter{ResponseWriter: w}
	streamed := a.invoke(ctx, sw, r, rc)
	rc.Logger.Info("invocation",
		slog.Int("status", sw.status),
		slog.Bool("stream", streamed),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
}

// invoke runs one invocation and reports whether the answer was a stream.
func (a *App) invoke(ctx context.Context, w http.ResponseWriter, r *http.Request, rc *RequestContext) (streamed bool) {
	log := rc.Logger
	// MaxBytesReader gets the server's own writer so it can close the
	// connection after an oversized body.
	body, err := io.ReadAll(http.MaxBytesReader(unwrap(w), r.Body, a.maxPayload))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{
				Error:   "Payload too large",
				Details: fmt.Sprintf("payload exceeds %d bytes", tooBig.Limit),
			})
			return false
		}
		log.Warn("read payload", slog.Any("err", err))
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "Invalid request body", Details: err.Error()})
		return false
	}
	if !json.Valid(body) {
		detail := jsonSyntaxDetail(body)
		log.Warn("invalid JSON payload", slog.String("details", detail))
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "Invalid JSON", Details: detail})
		return false
	}
	if a.debugActions && a.serveDebugAction(w, body, log) {
		return false
	}
	h := a.handler.Load()
	if h == nil {
		log.Error("no entrypoint defined")
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "No entrypoint defined"})
		return false
	}

	result, err := callHandler(ctx, *h, body)
	if err != nil {
		a.writeError(w, err, log)
		return false
	}
	switch v := result.(type) {
	case Stream:
		a.writeStream(ctx, w, v, log)
		return true
	case *Response:
		if v == nil {
			writeEncoded(w, http.StatusOK, []byte("null"))
			return false
		}
		writeResponse(w, v)
	case Response:
		writeResponse(w, &v)
	case json.RawMessage:
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		if !json.Valid(v) {
			log.Error("handler returned invalid json.RawMessage")
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "handler returned invalid JSON"})
			return false
		}
		writeEncoded(w, http.StatusOK, v)
	default:
		b, err := encodeJSON(result)
		if err != nil {
			log.Error("encode response", slog.Any("err", err))
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "encode response: " + err.Error()})
			return false
		}
		writeEncoded(w, http.StatusOK, b)
	}
	return false
}

// callHandler runs h, turning a panic into an error so one bad invocation
// never takes the agent down.
func callHandler(ctx context.Context, h Handler, payload []byte) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			result, err = nil, &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return h(ctx, payload)
}

func (a *App) writeError(w http.ResponseWriter, err error, log *slog.Logger) {
	var pe *panicError
	if errors.As(err, &pe) {
		log.Error("handler panicked", slog.Any("panic", pe.value), slog.String("stack", string(pe.stack)))
	}
	var he *HTTPError
	if errors.As(err, &he) {
		if he.status() >= 500 {
			log.Error("invocation failed", slog.Any("err", err))
		} else {
			log.Warn("invocation rejected", slog.Any("err", err))
		}
		writeJSON(w, he.status(), errorBody{Error: he.detail()})
		return
	}
	if pe == nil {
		log.Error("invocation failed", slog.Any("err", err))
	}
	writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
}

func writeResponse(w http.ResponseWriter, resp *Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(resp.Body) // a failed write means the client is gone
}

// Debug action names, as the Python SDK spells them.
const (
	debugActionKey         = "_agent_core_app_action"
	debugPingStatus        = "ping_status"
	debugJobStatus         = "job_status"
	debugForceHealthy      = "force_healthy"
	debugForceBusy         = "force_busy"
	debugClearForcedStatus = "clear_forced_status"
)

// serveDebugAction answers a debug action payload and reports whether body
// was one.
func (a *App) serveDebugAction(w http.ResponseWriter, body []byte, log *slog.Logger) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil {
		return false // not an object
	}
	raw, ok := probe[debugActionKey]
	if !ok {
		return false
	}
	var action string
	if json.Unmarshal(raw, &action) != nil || action == "" {
		return false
	}
	type forcedBody struct {
		ForcedStatus string `json:"forced_status"`
	}
	log.Info("debug action", slog.String("action", action))
	switch action {
	case debugPingStatus:
		writeJSON(w, http.StatusOK, a.Ping())
	case debugJobStatus:
		writeJSON(w, http.StatusOK, a.AsyncTaskInfo())
	case debugForceHealthy:
		_ = a.ForcePingStatus(api.PingHealthy)
		writeJSON(w, http.StatusOK, forcedBody{ForcedStatus: string(api.PingHealthy)})
	case debugForceBusy:
		_ = a.ForcePingStatus(api.PingHealthyBusy)
		writeJSON(w, http.StatusOK, forcedBody{ForcedStatus: string(api.PingHealthyBusy)})
	case debugClearForcedStatus:
		a.ClearForcedPingStatus()
		writeJSON(w, http.StatusOK, forcedBody{ForcedStatus: "Cleared"})
	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "Unknown action: " + action})
	}
	return true
}

// encodeJSON encodes v compactly without HTML escaping (the Python SDK sends
// text as is) and without a trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeJSON writes v as the JSON body. v is always one of the app's own
// shapes, so encoding cannot fail.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := encodeJSON(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	writeEncoded(w, status, b)
}

func writeEncoded(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b) // a failed write means the client is gone
}

// jsonSyntaxDetail explains why body is not JSON.
func jsonSyntaxDetail(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "empty payload: expected a JSON value"
	}
	var v json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
		}
		return err.Error()
	}
	return "invalid JSON"
}

// statusWriter records the status for the invocation log line. Unwrap lets
// http.ResponseController reach the server's Flush.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func unwrap(w http.ResponseWriter) http.ResponseWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw.ResponseWriter
	}
	return w
}
