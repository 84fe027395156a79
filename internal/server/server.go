// Package server is berth's HTTP edge: the AgentCore data plane, the
// control plane and berth's own API. It is the only package that maps
// domain errors to HTTP status codes and X-Amzn-ErrorType.
package server

import (
	"cmp"
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
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/protocol"
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
	s.handle("POST /runtimes/{arn}/invocations/{$}", accessRuntime, s.measured(telemetry.OpInvoke, "invoke", s.invoke))
	s.handle("GET /runtimes/{arn}/invocations", accessOpen, onlyPost)
	s.handle("DELETE /runtimes/{arn}/invocations", accessOpen, onlyPost)
	s.handle("GET /runtimes/{arn}/invocations"+protocol.PathAgentCard, accessRuntime, s.measured(telemetry.OpGetAgentCard, "agent_card", s.agentCard))
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

// invoke is InvokeAgentRuntime: the body passes through to the path the
// runtime's protocol serves in the session's sandbox.
func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	t, r, err := s.target(w, r)
	if err != nil {
		if wc := wireOf(r); wc.proto != nil {
			// The error answers the request's id, and names an MCP
			// session as every answer does.
			if wc.proto.RPC {
				rpc, _, _ := protocol.PeekRPC(http.MaxBytesReader(w, r.Body, s.maxPayload))
				wc.rpcID = rpc.ID
			}
			if sess, err := wc.proto.Session(r.Header.Get(wc.sessionHeader), ""); err == nil {
				wc.session = sess.Wire
			}
		}
		s.writeError(w, r, err)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/") && !t.proto.BaseURL {
		s.writeError(w, r, &apiError{typ: api.ErrResourceNotFound, msg: "no route for " + r.Method + " " + clip(r.URL.Path) +
			": only A2A runtimes take invocations at their base URL"})
		return
	}
	wc := wireOf(r)
	if r.ContentLength > s.maxPayload {
		s.writeError(w, r, validation("payload", "payload of "+itoa64(r.ContentLength)+" bytes exceeds the limit of "+itoa64(s.maxPayload)+" bytes"))
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, s.maxPayload)
	var rpc protocol.RPCRequest
	if t.proto.RPC {
		// Read ahead for the request's id, which berth's errors answer.
		if rpc, body, err = protocol.PeekRPC(body); err != nil {
			s.writeError(w, r, cmp.Or(s.readError(r, err), err))
			return
		}
		wc.rpcID = rpc.ID
	}
	// The runtime session the client named, if any; the adapter decides
	// what a call without one reaches.
	var rsid string
	if r.Header.Get(api.HeaderSessionID) != "" {
		if rsid, err = sessionID(r, false); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	var wireID string
	if t.proto.SessionHeader != "" {
		wireID = r.Header.Get(t.proto.SessionHeader)
	}
	sess, err := t.proto.Session(wireID, rsid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wc.session = sess.Wire
	if !t.proto.Acceptable(r.Header) {
		s.writeError(w, r, &apiError{typ: api.ErrMCPUnacceptable, msg: "MCP protocol requires Accept header: application/json, text/event-stream"})
		return
	}
	call, out, err := s.admit(r, t, sess.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer call.Release()
	// The session the call reached: an alias leads to its own ID.
	sid := call.Session().Key.SessionID
	noteSession(w, sid)
	w.Header().Set(api.HeaderSessionID, sid)
	var forwarded string
	if t.proto.SessionHeader != "" {
		out.Del(t.proto.SessionHeader)
		if forwarded = t.proto.ForwardWire(sess, rpc.Method, call.AgentSessionID()); forwarded != "" {
			out.Set(t.proto.SessionHeader, forwarded)
		}
	}
	resp, done, err := s.send(r, call, http.MethodPost, t.proto.Path, body, out)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	if t.proto.SessionHeader != "" {
		// A stateful server mints its own ID. A client that came without
		// one adopts it, and berth routes by it; a client that has one
		// keeps it, and berth translates.
		if minted := resp.Header.Get(t.proto.SessionHeader); minted != "" && minted != forwarded {
			call.SetAgentSessionID(minted)
			if sess.Chosen {
				if err := call.Alias(protocol.Key(minted)); err != nil {
					s.writeError(w, r, err)
					return
				}
				wc.session = minted
			}
		}
		w.Header().Set(t.proto.SessionHeader, wc.session)
	}
	if resp.StatusCode >= 400 && !t.proto.RelayAgentErrors {
		s.writeError(w, r, agentError(resp))
		return
	}
	if err := relay(w, resp, t.proto.Headers...); err != nil {
		s.streamBroke(w, r, resp.Header.Get("Content-Type"), s.callError(r, call, err))
	}
}

// agentCard is GetAgentCard: the A2A agent's card, from its well-known
// route in the session's sandbox. It is AgentCore's own API, so its errors
// are AgentCore's whatever the protocol.
func (s *Server) agentCard(w http.ResponseWriter, r *http.Request) {
	t, r, err := s.target(w, r)
	r = withWire(r, &wire{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if t.proto.Card == "" {
		s.writeError(w, r, &apiError{typ: api.ErrResourceNotFound,
			msg: "runtime " + t.Runtime.Name + " serves " + string(t.proto.Protocol) + "; only A2A agents have an agent card"})
		return
	}
	sid, err := sessionID(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	noteSession(w, sid)
	call, out, err := s.admit(r, t, sid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer call.Release()
	out.Del("Content-Type")
	resp, done, err := s.send(r, call, http.MethodGet, t.proto.Card, nil, out)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	if resp.StatusCode >= 400 {
		s.writeError(w, r, agentError(resp))
		return
	}
	w.Header().Set(api.HeaderSessionID, sid)
	if err := relay(w, resp); err != nil {
		s.streamBroke(w, r, "", s.callError(r, call, err))
	}
}

// onlyPost answers the other methods on the invocation URL. MCP clients
// try GET for a server-to-client stream and DELETE to end their session;
// 405 tells them the endpoint offers neither, as AgentCore's does.
func onlyPost(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	w.WriteHeader(http.StatusMethodNotAllowed)
}

// callee is the runtime a call resolved to, the adapter of its protocol,
// and what the caller was granted on it.
type callee struct {
	registry.Resolved
	proto *protocol.Adapter
	grant auth.Grant
}

// target resolves the runtime and endpoint a call names, authorizes the
// caller, and marks r with the protocol's wire, so errors from then on
// take the protocol's shape. An endpoint that does not exist answers in
// the shape of its runtime's protocol (as the DEFAULT endpoint serves it);
// before berth knows the runtime, errors are AgentCore's.
func (s *Server) target(w http.ResponseWriter, r *http.Request) (*callee, *http.Request, error) {
	if uid := r.Header.Get(api.HeaderUserID); len(uid) > 1024 {
		return nil, r, validation("runtimeUserId", "runtimeUserId exceeds 1024 characters")
	}
	q, err := qualifier(r)
	if err != nil {
		return nil, r, err
	}
	res, err := s.reg.Resolve(r.Context(), r.PathValue("arn"), q)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) && q != api.DefaultQualifier {
			if def, derr := s.reg.Resolve(r.Context(), r.PathValue("arn"), api.DefaultQualifier); derr == nil {
				ad := protocol.For(def.Version.Settings.Protocol)
				r = withWire(r, &wire{proto: ad, shape: ad.Errors, sessionHeader: ad.SessionHeader})
			}
		}
		return nil, r, err
	}
	noteTarget(w, res)
	ad := protocol.For(res.Version.Settings.Protocol)
	r = withWire(r, &wire{proto: ad, shape: ad.Errors, sessionHeader: ad.SessionHeader})
	grant, err := s.authorizeCall(r, res, q)
	if err != nil {
		return nil, r, err
	}
	return &callee{Resolved: res, proto: ad, grant: grant}, r, nil
}

// admit builds the headers the agent will see and admits a call into the
// session sid of the runtime the call resolved to: the part of a call that
// invocations, agent cards and WebSockets share. The session belongs to
// the caller's identity (the grant's owner), not to a header.
func (s *Server) admit(r *http.Request, t *callee, sid string) (*session.Call, http.Header, error) {
	set := t.Version.Settings
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
	for _, k := range t.proto.Headers {
		if v, ok := r.Header[http.CanonicalHeaderKey(k)]; ok {
			out[http.CanonicalHeaderKey(k)] = v
		}
	}
	if t.grant.WorkloadToken != "" {
		out.Set(api.HeaderWorkloadAccessToken, t.grant.WorkloadToken)
		out.Set(api.HeaderIdentityWAT, t.grant.WorkloadToken)
	}
	res, grant := t.Resolved, t.grant
	call, err := s.sessions.Acquire(r.Context(), session.Spec{
		Key:      session.Key{RuntimeID: res.Runtime.ID, Endpoint: res.Endpoint.Name, SessionID: sid},
		Version:  res.Version.Version,
		Settings: set,
		UserID:   grant.Owner,
	})
	if err != nil {
		return nil, nil, err
	}
	out.Set(api.HeaderSessionID, call.Session().Key.SessionID)
	return call, out, nil
}

// send makes one request to the call's agent. The request ends with the
// client or with the session, whichever first; done releases it once the
// answer is relayed.
func (s *Server) send(r *http.Request, call *session.Call, method, path string, body io.Reader, h http.Header) (*http.Response, func(), error) {
	ctx, cancel := context.WithCancelCause(r.Context())
	stop := context.AfterFunc(call.KillContext(), func() { cancel(session.ErrEnded) })
	done := func() {
		stop()
		cancel(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		done()
		return nil, nil, err
	}
	if body != nil {
		req.ContentLength = r.ContentLength
	}
	req.Header = h
	_, span := s.tracing.StartProxy(ctx, h, method, path, call.Session().Key.SessionID)
	resp, err := call.RoundTrip(req)
	if err != nil {
		telemetry.EndProxy(span, 0, err)
		done()
		return nil, nil, s.callError(r, call, err)
	}
	// The span lasts until the answer is relayed, or its relay aborted.
	return resp, func() {
		telemetry.EndProxy(span, resp.StatusCode, nil)
		resp.Body.Close()
		done()
	}, nil
}

// agentError is an agent's error answer as berth reports it: a runtime
// client error quoting the agent.
func agentError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := "Received error (" + itoa(resp.StatusCode) + ") from runtime"
	if b := strings.TrimSpace(string(body)); b != "" {
		msg += ": " + b
	}
	return &apiError{typ: api.ErrRuntimeClient, msg: msg}
}

// readError explains a failed read of the request body as the caller's
// error, or returns nil when the caller is not to blame.
func (s *Server) readError(r *http.Request, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	if te := typedError(nil); errors.As(err, &te) {
		// The body failed its signed hash: the caller's error, not the
		// agent's.
		return err
	}
	if berr := s.bodyError(r, err); berr != err {
		return berr
	}
	if r.Context().Err() != nil {
		return &apiError{typ: api.ErrValidation, msg: "client closed the request", cause: err}
	}
	return nil
}

// callError explains a failed round trip to the agent.
func (s *Server) callError(r *http.Request, call *session.Call, err error) error {
	if rerr := s.readError(r, err); rerr != nil {
		return rerr
	}
	if reason, detail, ended := call.Ended(); ended {
		return &apiError{typ: api.ErrRuntimeClient, msg: "session ended during the call (" + string(reason) + "): " + detail, cause: err}
	}
	return &apiError{typ: api.ErrRuntimeClient, msg: "the agent failed to answer: it closed the connection or crashed; see the session log", cause: err}
}

var relayBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay copies the agent's answer to the client as it arrives. An error
// means the agent broke off after the answer began.
// extra names headers of the agent's answer to pass on besides the usual.
func relay(w http.ResponseWriter, resp *http.Response, extra ...string) error {
	h := w.Header()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	for _, k := range append([]string{api.HeaderTraceID, api.HeaderTraceParent, api.HeaderTraceState, api.HeaderBaggage, protocol.HeaderMCPVersion}, extra...) {
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
				return nil // the client left
			}
			if streaming {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// The agent died or the session was stopped mid-stream.
			return err
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
