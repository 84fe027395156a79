// Package server is berth's HTTP edge: the AgentCore data plane, the
// control plane and berth's own API. It is the only package that maps
// domain errors to HTTP status codes and X-Amzn-ErrorType.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/telemetry"
	"github.com/google/uuid"
)

// Options configure a Server.
type Options struct {
	Registry *registry.Registry
	Sessions *session.Manager
	// SessionStore backs berth's session API.
	SessionStore SessionStore
	// Images backs berth's image API; nil serves none.
	Images Images
	// Metrics, if set, is served on /metrics and gets the call metrics.
	Metrics *telemetry.Metrics
	// Tracing records data-plane spans and sets the trace context agents
	// receive. Default: off.
	Tracing *telemetry.Tracing
	// MaxPayloadBytes caps an invocation body. Default 100,000,000.
	MaxPayloadBytes int64
	// Guard is the edge policy: allowed hosts and origins, body pace.
	Guard Guard
	// Health, if set, reports berth's health on GET /berth/v1/health.
	Health func(context.Context) api.Health
	// Auth authenticates and authorizes callers; nil serves every caller
	// (authentication off).
	Auth   *auth.Authenticator
	Logger *slog.Logger
}

// Server serves the AgentCore APIs.
type Server struct {
	reg          *registry.Registry
	sessions     *session.Manager
	sessionStore SessionStore
	images       Images
	metrics      *telemetry.Metrics
	tracing      *telemetry.Tracing
	maxPayload   int64
	edge         Guard
	healthOf     func(context.Context) api.Health
	auth         *auth.Authenticator
	log          *slog.Logger
	mux          *http.ServeMux
	access       map[string]access // route pattern → what it asks of callers
}

// New builds the handler tree.
func New(opts Options) *Server {
	if opts.MaxPayloadBytes <= 0 {
		opts.MaxPayloadBytes = api.MaxPayloadBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Guard.BodyIdleTimeout <= 0 {
		opts.Guard.BodyIdleTimeout = 30 * time.Second
	}
	if opts.Auth == nil {
		opts.Auth, _ = auth.New(auth.Options{Mode: auth.ModeNone, Logger: opts.Logger})
	}
	if opts.Tracing == nil {
		opts.Tracing = telemetry.Off()
	}
	s := &Server{reg: opts.Registry, sessions: opts.Sessions, maxPayload: opts.MaxPayloadBytes,
		edge: opts.Guard, auth: opts.Auth, log: opts.Logger, mux: http.NewServeMux(), sessionStore: opts.SessionStore,
		metrics: opts.Metrics, images: opts.Images, tracing: opts.Tracing, access: map[string]access{}, healthOf: opts.Health}
	if opts.Metrics != nil {
		s.handle("GET /metrics", accessAdmin, opts.Metrics.Handler().ServeHTTP)
	}
	s.handle("POST /runtimes/{arn}/invocations", accessRuntime, s.measured(telemetry.OpInvoke, "invoke", s.invoke))
	s.handle("POST /runtimes/{arn}/"+api.PathCommands, accessRuntime, s.measured(telemetry.OpCommand, "command", s.command))
	s.handle("POST /runtimes/{arn}/stopruntimesession", accessRuntime, s.measured(telemetry.OpStop, "", s.stopSession))
	s.handle("GET /runtimes/{arn}/invocations"+metadataPath, accessOpen, s.protectedResource)
	s.registerControl()
	s.registerWebSocket()
	s.registerSessions()
	if opts.Health != nil {
		s.handle("GET "+api.PathHealth, accessOpen, s.health)
	}
	s.registerConsole()
	s.registerImages()
	s.handle("GET /ping", accessOpen, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"Healthy"}`)
	})
	s.handle("/", accessOpen, func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{typ: api.ErrResourceNotFound, msg: "no route for " + r.Method + " " + r.URL.Path})
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderAWSRequestID, uuid.NewString())
	r, done := s.guard(w, r)
	defer done()
	if r == nil {
		return
	}
	body := r.Body
	if r = s.authenticate(w, r); r == nil {
		return
	}
	if r.Body != body {
		// Authentication read the body to check its signature and
		// handed over a replay (perhaps a spooled file): release it.
		defer r.Body.Close()
	}
	s.mux.ServeHTTP(w, r)
}

// MetricsHandler serves /metrics with no authentication, for a separate
// listener (metrics_listen); nil without metrics.
func (s *Server) MetricsHandler() http.Handler {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.Handler()
}

// sessionID reads and validates the session header, generating one when
// absent as AgentCore does for raw HTTP callers.
func sessionID(r *http.Request, generate bool) (string, error) {
	id := r.Header.Get(api.HeaderSessionID)
	if id == "" && generate {
		return uuid.NewString(), nil
	}
	if !api.ValidSessionID(id) {
		if len(id) < api.MinSessionIDLen || len(id) > api.MaxSessionIDLen {
			return "", validation("runtimeSessionId",
				"Invalid length for parameter runtimeSessionId, value: "+itoa(len(id))+", valid min length: 33, valid max length: 256")
		}
		return "", validation("runtimeSessionId", "runtimeSessionId must match [a-zA-Z0-9][a-zA-Z0-9-_]*")
	}
	return id, nil
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	sid, err := sessionID(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	noteSession(w, sid)
	if r.ContentLength > s.maxPayload {
		s.writeError(w, r, validation("payload", "payload of "+itoa64(r.ContentLength)+" bytes exceeds the limit of "+itoa64(s.maxPayload)+" bytes"))
		return
	}
	call, out, err := s.admit(w, r, sid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer call.Release()
	w.Header().Set(api.HeaderSessionID, sid)

	// The call ends with the client or with the session, whichever first.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(call.KillContext(), func() { cancel(session.ErrEnded) })
	defer stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api.PathInvocations,
		http.MaxBytesReader(w, r.Body, s.maxPayload))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req.ContentLength = r.ContentLength
	req.Header = out
	_, span := s.tracing.StartProxy(ctx, out, http.MethodPost, api.PathInvocations, sid)
	resp, err := call.RoundTrip(req)
	if err != nil {
		telemetry.EndProxy(span, 0, err)
		s.writeError(w, r, s.callError(r, call, err))
		return
	}
	// The span lasts until the answer is relayed, or its relay aborted.
	defer telemetry.EndProxy(span, resp.StatusCode, nil)
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := "Received error (" + itoa(resp.StatusCode) + ") from runtime"
		if b := strings.TrimSpace(string(body)); b != "" {
			msg += ": " + b
		}
		s.writeError(w, r, &apiError{typ: api.ErrRuntimeClient, msg: msg})
		return
	}
	relay(w, resp)
}

// admit resolves the runtime and qualifier, authorizes the caller, builds
// the headers the agent will see, and admits a call into the session: the
// part of a call that invocations and WebSockets share. The session
// belongs to the caller's identity (the grant's owner), not to a header.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, sid string) (*session.Call, http.Header, error) {
	if uid := r.Header.Get(api.HeaderUserID); len(uid) > 1024 {
		return nil, nil, validation("runtimeUserId", "runtimeUserId exceeds 1024 characters")
	}
	q, err := qualifier(r)
	if err != nil {
		return nil, nil, err
	}
	res, err := s.reg.Resolve(r.Context(), r.PathValue("arn"), q)
	if err != nil {
		return nil, nil, err
	}
	noteTarget(w, res)
	grant, err := s.authorizeCall(r, res, q)
	if err != nil {
		return nil, nil, err
	}
	set := res.Version.Settings
	out, err := forwardHeaders(r, set.HeaderAllowlist, set.Authorizer.JWT != nil)
	if err != nil {
		return nil, nil, err
	}
	if tok := auth.FromContext(r.Context()).Bearer; set.Authorizer.JWT != nil && out.Get("Authorization") == "" &&
		allowListed(set.HeaderAllowlist, "Authorization") {
		// The token came in the WebSocket subprotocol: the agent gets it
		// where an allow-listed Authorization header would be.
		out.Set("Authorization", "Bearer "+tok)
	}
	out.Set(api.HeaderSessionID, sid)
	if grant.WorkloadToken != "" {
		out.Set(api.HeaderWorkloadAccessToken, grant.WorkloadToken)
		out.Set(api.HeaderIdentityWAT, grant.WorkloadToken)
	}
	call, err := s.sessions.Acquire(r.Context(), session.Spec{
		Key:      session.Key{RuntimeID: res.Runtime.ID, Endpoint: res.Endpoint.Name, SessionID: sid},
		Version:  res.Version.Version,
		Settings: set,
		UserID:   grant.Owner,
	})
	if err != nil {
		return nil, nil, err
	}
	return call, out, nil
}

// callError explains a failed round trip to the agent.
func (s *Server) callError(r *http.Request, call *session.Call, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	if te := typedError(nil); errors.As(err, &te) {
		// The body failed its signed hash: the caller's error, not the
		// agent's.
		return err
	}
	if errors.Is(context.Cause(r.Context()), errBodyStalled) {
		return &apiError{typ: api.ErrValidation, msg: "the request body stopped arriving: no byte for " + s.edge.BodyIdleTimeout.String(), cause: err}
	}
	if r.Context().Err() != nil {
		return &apiError{typ: api.ErrValidation, msg: "client closed the request", cause: err}
	}
	if reason, detail, ended := call.Ended(); ended {
		return &apiError{typ: api.ErrRuntimeClient, msg: "session ended during the call (" + string(reason) + "): " + detail, cause: err}
	}
	return &apiError{typ: api.ErrRuntimeClient, msg: "the agent failed to answer: it closed the connection or crashed; see the session log", cause: err}
}

var relayBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay copies the agent's answer to the client as it arrives.
func relay(w http.ResponseWriter, resp *http.Response) {
	h := w.Header()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	for _, k := range []string{api.HeaderTraceID, api.HeaderTraceParent, api.HeaderTraceState, api.HeaderBaggage, "Mcp-Session-Id", "Mcp-Protocol-Version"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", itoa64(resp.ContentLength))
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	// The answer is under way: the request body's pace no longer matters.
	rc.SetReadDeadline(time.Time{})
	streaming := strings.HasPrefix(ct, "text/event-stream") || resp.ContentLength < 0
	if streaming {
		// Streams may run for up to 60 minutes; lift the write deadline.
		rc.SetWriteDeadline(time.Time{})
	}
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if streaming {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			// The agent died or the session was stopped mid-stream: abort
			// so the client sees a truncated response, not a clean end.
			panic(http.ErrAbortHandler)
		}
	}
}

func (s *Server) stopSession(w http.ResponseWriter, r *http.Request) {
	sid, err := sessionID(r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	noteSession(w, sid)
	if err := decodeStopBody(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := qualifier(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.reg.Resolve(r.Context(), r.PathValue("arn"), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	noteTarget(w, res)
	grant, err := s.authorizeCall(r, res, q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := session.StopRequest{
		Key:    session.Key{RuntimeID: res.Runtime.ID, Endpoint: res.Endpoint.Name, SessionID: sid},
		UserID: grant.Owner,
		Policy: res.Version.Settings.Sessions,
	}
	if err := s.sessions.Stop(r.Context(), req); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set(api.HeaderSessionID, sid)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

// qualifier reads the endpoint a call names; a malformed query or name is
// refused, never taken for DEFAULT.
func qualifier(r *http.Request) (string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", validation("qualifier", "malformed query string")
	}
	name := q.Get("qualifier")
	if name == "" {
		return api.DefaultQualifier, nil
	}
	if err := registry.ValidateName("qualifier", name); err != nil {
		return "", err
	}
	return name, nil
}
