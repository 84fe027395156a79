package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/protocol"
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

// writeError answers a failed call in its protocol's shape (see shapes):
// AgentCore's error response the AWS SDKs decode, unless the call named a
// runtime whose protocol speaks errors its own way.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	lvl := s.log.Info
	if ae.typ == api.ErrInternalServer || errors.Is(err, errdefs.ErrDiskFull) {
		lvl = s.log.Error
	}
	lvl("request failed", "method", r.Method, "path", clip(r.URL.Path), "type", ae.typ, "err", clipN(err.Error(), 4<<10))
	wc := wireOf(r)
	if ow, ok := w.(*outcomeWriter); ok {
		ow.failed = ae.typ
	}
	h := w.Header()
	if ch := (*challenge)(nil); errors.As(err, &ch) {
		h.Set("WWW-Authenticate", `Bearer resource_metadata="`+ch.metadata+`"`)
	}
	if wc.sessionHeader != "" && wc.session != "" {
		h.Set(wc.sessionHeader, wc.session)
	}
	row, ok := shapes[ae.typ]
	switch {
	case !ok:
	case wc.shape == protocol.ShapeMCP && row.mcp != 0:
		writeRPCError(w, cmp.Or(row.mcpStatus, http.StatusOK), ae, row.mcp, wc.rpcID)
		return
	case wc.shape == protocol.ShapeA2A && row.a2a != 0:
		writeRPCError(w, cmp.Or(row.a2aStatus, ae.typ.StatusCode()), ae, row.a2a, wc.rpcID)
		return
	case wc.shape == protocol.ShapeAGUI && row.agui != "":
		writeRunError(w, cmp.Or(row.aguiStatus, ae.typ.StatusCode()), ae, row.agui)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set(api.HeaderErrorType, string(ae.typ))
	w.WriteHeader(ae.typ.StatusCode())
	body := api.ErrorBody{Message: clip(ae.msg), Reason: ae.reason}
	for _, f := range ae.fields {
		body.FieldList = append(body.FieldList, api.FieldError{Name: clip(f.Name), Message: clip(f.Message)})
	}
	json.NewEncoder(w).Encode(body)
}

// shapes is how each AgentCore error type reads on the protocols that speak
// errors their own way (AgentCore's "Server protocols" contract): MCP's
// JSON-RPC code and status (200 when none), A2A's JSON-RPC code and status,
// AG-UI's RUN_ERROR code and status (where none, the type's own status). A
// zero entry keeps AgentCore's error response: A2A's 401 and 403 are plain
// HTTP errors. A quota is 429 on every protocol's wire, 402 on AgentCore's.
var shapes = map[api.ErrorType]struct {
	mcp, mcpStatus int
	a2a, a2aStatus int
	agui           string
	aguiStatus     int
}{
	api.ErrUnauthorized:      {mcp: -32001, mcpStatus: 401, agui: "UNAUTHORIZED"},
	api.ErrAccessDenied:      {mcp: -32002, mcpStatus: 403, agui: "ACCESS_DENIED"},
	api.ErrThrottling:        {mcp: -32003, a2a: -32053, agui: "RATE_LIMIT_EXCEEDED"},
	api.ErrServiceQuota:      {mcp: -32003, a2a: -32053, a2aStatus: 429, agui: "SERVICE_QUOTA_EXCEEDED", aguiStatus: 429},
	api.ErrResourceNotFound:  {mcp: -32004, a2a: -32051, agui: "NOT_FOUND"},
	api.ErrConflict:          {mcp: -32005, a2a: -32054, agui: "SESSION_BUSY"},
	api.ErrRetryableConflict: {mcp: -32005, a2a: -32054, agui: "SESSION_BUSY"},
	api.ErrValidation:        {mcp: -32006, a2a: -32052, agui: "VALIDATION_ERROR"},
	api.ErrRuntimeClient:     {mcp: -32010, a2a: -32055, agui: "AGENT_ERROR", aguiStatus: 200},
	api.ErrMCPUnacceptable:   {mcp: -32011, mcpStatus: 406},
	api.ErrInternalServer:    {mcp: -32603, a2a: -32603, agui: "INTERNAL_ERROR"},
}

// writeRPCError answers a JSON-RPC request with an error for its id.
func writeRPCError(w http.ResponseWriter, status int, ae *apiError, code int, id json.RawMessage) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if status != http.StatusOK {
		h.Set(api.HeaderErrorType, string(ae.typ))
	}
	w.WriteHeader(status)
	w.Write(rpcError(ae, code, id))
}

// rpcError is a JSON-RPC error response; data names the AgentCore type
// (-32005 is both kinds of conflict).
func rpcError(ae *apiError, code int, id json.RawMessage) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(api.RPCErrorResponse{JSONRPC: "2.0", ID: id,
		Error: api.RPCError{Code: code, Message: clip(ae.msg), Data: &api.RPCErrorData{Type: string(ae.typ)}}})
	return b
}

// writeRunError answers an AG-UI call with a RUN_ERROR event.
func writeRunError(w http.ResponseWriter, status int, ae *apiError, code string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	if status != http.StatusOK {
		h.Set(api.HeaderErrorType, string(ae.typ))
	}
	w.WriteHeader(status)
	w.Write(runError(ae, code))
}

// runError is an SSE RUN_ERROR event.
func runError(ae *apiError, code string) []byte {
	b, _ := json.Marshal(api.RunErrorEvent{Type: "RUN_ERROR", Code: code, Message: clip(ae.msg)})
	return append(append([]byte("data: "), b...), '\n', '\n')
}

// streamBroke ends a stream the agent broke off, in the call's shape: an
// SSE stream of a protocol with error events gets a last event (a JSON-RPC
// error for the call's request, or RUN_ERROR AGENT_ERROR) and ends
// cleanly; anything else is cut, so the client sees a truncated answer.
func (s *Server) streamBroke(w http.ResponseWriter, r *http.Request, contentType string, err error) {
	ae := classify(err)
	s.log.Info("stream broke off", "path", clip(r.URL.Path), "type", ae.typ, "err", clipN(err.Error(), 4<<10))
	wc := wireOf(r)
	row := shapes[ae.typ]
	var event []byte
	if strings.HasPrefix(contentType, "text/event-stream") {
		switch {
		case (wc.shape == protocol.ShapeMCP && row.mcp != 0) || (wc.shape == protocol.ShapeA2A && row.a2a != 0):
			code := row.mcp
			if wc.shape == protocol.ShapeA2A {
				code = row.a2a
			}
			event = append(append([]byte("data: "), rpcError(ae, code, wc.rpcID)...), '\n', '\n')
		case wc.shape == protocol.ShapeAGUI && row.agui != "":
			event = runError(ae, row.agui)
		}
	}
	if event == nil {
		panic(http.ErrAbortHandler)
	}
	if ow, ok := w.(*outcomeWriter); ok {
		ow.failed = ae.typ
	}
	w.Write(event)
	http.NewResponseController(w).Flush()
}

// wire is what a call's error answers need to know of its protocol: set
// once the runtime resolved (before that, errors are AgentCore's).
type wire struct {
	proto         *protocol.Adapter // nil until the runtime resolved
	shape         protocol.Shape
	rpcID         json.RawMessage // the JSON-RPC request's id, if read
	sessionHeader string          // the protocol's session header, if any
	session       string          // its value for the client
}

type wireKey struct{}

// withWire returns r carrying wc, which later error answers read.
func withWire(r *http.Request, wc *wire) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), wireKey{}, wc))
}

func wireOf(r *http.Request) *wire {
	if wc, ok := r.Context().Value(wireKey{}).(*wire); ok {
		return wc
	}
	return &wire{}
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
