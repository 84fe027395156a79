package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/telemetry"
	"github.com/coder/websocket"
)

// AgentCore's WebSocket data plane: GET /runtimes/{arn}/ws?qualifier= is
// proxied to the agent's /ws in the session's sandbox. berth speaks
// WebSocket to each side (github.com/coder/websocket) and relays messages
// between them as they arrive: a long message goes on in fragments before
// its end has come in. Close codes and reasons pass through, a subprotocol
// is negotiated with the agent and passed on, pings are answered by berth
// on each side, and when the session ends under the socket berth tells the
// client why with a close frame of its own.

const (
	// Close codes berth sends (RFC 6455 §7.4.1).
	wsGoingAway     = websocket.StatusGoingAway
	wsInternalError = websocket.StatusInternalError
	// wsFrameBytes is the largest fragment berth sends. The library answers
	// a ping, or sends a close frame, only between two frames and gives up
	// after 5 seconds, so one frame must never take that long to send, even
	// on a slow link.
	wsFrameBytes = 32 << 10
)

// Query parameters a presigned WebSocket URL carries (the Python SDK's
// AgentCoreRuntimeClient.generate_presigned_url): the session ID and custom
// headers stand in for headers a browser cannot set.
const queryCustomPrefix = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-"

// registerWebSocket adds the WebSocket route.
func (s *Server) registerWebSocket() {
	s.handle("GET /runtimes/{arn}/ws", accessRuntime, s.measured(telemetry.OpWebSocket, "websocket", s.websocket))
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	if err := checkWSUpgrade(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The credentials (SigV4 headers, a presigned query, a bearer token in
	// Authorization or the subprotocol) were verified like an
	// invocation's; headers carried in the query join the real ones.
	promoteQueryHeaders(r)
	// A refused handshake is an HTTP answer: AgentCore's, whatever the
	// protocol.
	target, r, err := s.target(w, r)
	r = withWire(r, &wire{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !target.proto.WebSocket {
		s.writeError(w, r, validation("protocol", "runtime "+target.Runtime.Name+" serves "+string(target.proto.Protocol)+", which has no WebSocket"))
		return
	}
	sid, err := sessionID(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	noteSession(w, sid)
	// The socket holds a call slot for its whole life, so the idle reaper
	// leaves the session alone while it is open.
	call, out, err := s.admit(r, target, sid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer call.Release()
	// The agent chooses among the subprotocols the client offered, never
	// seeing the bearer-token ones.
	sentinel := auth.SentinelOffered(r.Header)

	key := call.Session().Key
	log := s.log.With("runtime_id", key.RuntimeID, "endpoint", key.Endpoint, "session_id", sid)

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(call.KillContext(), func() { cancel(session.ErrEnded) })
	_, span := s.tracing.StartProxy(ctx, out, http.MethodGet, api.PathWebSocket, sid)
	// The call is the transport: it sends the handshake to the session's
	// sandbox, whatever host the URL names.
	agent, resp, err := websocket.Dial(ctx, "http://agent"+api.PathWebSocket, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: call},
		HTTPHeader:   out,
		Subprotocols: auth.OtherSubprotocols(r.Header),
	})
	stop()
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	telemetry.EndProxy(span, status, err)
	if err != nil {
		if resp == nil {
			s.writeError(w, r, s.callError(r, call, err))
			return
		}
		msg := "the agent refused the WebSocket upgrade (" + itoa(resp.StatusCode) + ")"
		if resp.StatusCode == http.StatusSwitchingProtocols {
			msg += ": " + err.Error()
		} else if body, _ := io.ReadAll(resp.Body); len(strings.TrimSpace(string(body))) > 0 {
			msg += ": " + strings.TrimSpace(string(body))
		}
		s.writeError(w, r, &apiError{typ: api.ErrRuntimeClient, msg: msg})
		return
	}
	defer agent.CloseNow()

	w.Header().Set(api.HeaderSessionID, sid)
	// The server's deadlines do not apply to the upgraded connection.
	ctl := http.NewResponseController(w)
	_ = ctl.SetReadDeadline(time.Time{})
	_ = ctl.SetWriteDeadline(time.Time{})
	// The edge guard has checked Origin against allowed_origins already.
	opts := &websocket.AcceptOptions{InsecureSkipVerify: true}
	if p := agent.Subprotocol(); p != "" {
		opts.Subprotocols = []string{p}
	} else if sentinel {
		// A browser that sent its token as a subprotocol gets the
		// sentinel back, as AgentCore answers.
		opts.Subprotocols = []string{auth.BearerSubprotocol}
	}
	client, err := websocket.Accept(w, r, opts)
	if err != nil {
		log.Info("websocket client gone during the handshake", "err", err)
		return
	}
	defer client.CloseNow()

	start := time.Now()
	log.Info("websocket opened")
	t := &wsTunnel{client: client, agent: agent, kill: call.KillContext(), sessionDone: call.Ended}
	st := t.run()
	log.Info("websocket closed", "duration_ms", time.Since(start).Milliseconds(),
		"messages_in", st.up.messages, "messages_out", st.down.messages,
		"bytes_in", st.up.bytes, "bytes_out", st.down.bytes, "end", st.end)
}

// checkWSUpgrade refuses requests that are not WebSocket opening handshakes.
func checkWSUpgrade(r *http.Request) error {
	if !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket") {
		return &apiError{typ: api.ErrValidation, msg: "this path takes a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)"}
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return validation("Sec-WebSocket-Version", "unsupported WebSocket version "+strings.TrimSpace(v)+": want 13")
	}
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))); err != nil || len(b) != 16 {
		return validation("Sec-WebSocket-Key", "missing or invalid Sec-WebSocket-Key")
	}
	return nil
}

func hasToken(h http.Header, name, token string) bool {
	for _, t := range headerTokens(h, name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// headerTokens lists the comma-separated values of a header.
func headerTokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// promoteQueryHeaders copies the session ID and custom headers a presigned
// URL carries in its query into the request headers, where the real headers
// win. Query names match case-insensitively.
func promoteQueryHeaders(r *http.Request) {
	for k, v := range r.URL.Query() {
		if len(v) == 0 {
			continue
		}
		name := http.CanonicalHeaderKey(k)
		if name != api.HeaderSessionID && !strings.HasPrefix(strings.ToLower(k), strings.ToLower(queryCustomPrefix)) {
			continue
		}
		if r.Header.Get(name) == "" {
			r.Header.Set(name, v[0])
		}
	}
}

// wsTunnel relays messages between a client's socket and the agent's.
type wsTunnel struct {
	client, agent *websocket.Conn
	kill          context.Context
	sessionDone   func() (session.EndReason, string, bool)
}

type tunnelStats struct {
	up, down relayResult
	end      string
}

// run relays until both directions are done and says how the socket ended.
// It owns the two relay goroutines and waits for both.
//
// A close frame from one side is passed to the other, whose answer the
// library waits for (5 seconds at most). A side that hangs up without one
// is dropped on the other side too, so an agent sees a vanished client as a
// dropped connection. When the session ends, berth drops the agent side and
// closes the client's with 1001 and the end reason.
func (t *wsTunnel) run() tunnelStats {
	upc, downc := make(chan relayResult, 1), make(chan relayResult, 1)
	go func() { upc <- relayMessages(t.agent, t.client, nil) }()
	// Once the session has ended, nothing more from the agent goes out,
	// its goodbye included: berth tells the client why.
	go func() { downc <- relayMessages(t.client, t.agent, t.kill) }()

	var st tunnelStats
	ending := func(end string) {
		if st.end == "" {
			st.end = end
		}
	}
	kill := t.kill.Done()
	for upc != nil || downc != nil {
		select {
		case st.up = <-upc:
			upc = nil
			ending("client " + st.up.describe())
			var ce websocket.CloseError
			switch {
			case st.up.writeFailed:
				t.agent.CloseNow() // the down relay then tells the client
			case errors.As(st.up.err, &ce):
				_ = t.agent.Close(ce.Code, ce.Reason)
			default:
				t.client.CloseNow()
				t.agent.CloseNow()
			}
		case st.down = <-downc:
			downc = nil
			ending("agent " + st.down.describe())
			if st.down.writeFailed {
				t.client.CloseNow()
				t.agent.CloseNow()
				continue
			}
			code, reason := wsInternalError, "the agent connection ended without a close frame"
			var ce websocket.CloseError
			if r, _, ended := t.sessionDone(); ended {
				code, reason = wsGoingAway, "session ended: "+string(r)
			} else if errors.As(st.down.err, &ce) {
				code, reason = ce.Code, ce.Reason
			}
			_ = t.client.Close(code, reason)
		case <-kill:
			kill = nil
			if r, _, ended := t.sessionDone(); ended {
				ending("session ended: " + string(r))
			}
			t.agent.CloseNow()
		}
	}
	return st
}

// errRelayStopped ends a relay whose session ended.
var errRelayStopped = errors.New("stopped: the session ended")

// relayResult is how one direction of a tunnel ended.
type relayResult struct {
	err         error // a websocket.CloseError when src sent a close frame
	messages    int64
	bytes       int64
	writeFailed bool // dst failed, rather than src
}

func (r relayResult) describe() string {
	var ce websocket.CloseError
	switch {
	case errors.As(r.err, &ce):
		return fmt.Sprintf("closed with %d", ce.Code)
	case r.writeFailed:
		return "unreachable: " + r.err.Error()
	default:
		return "hung up: " + r.err.Error()
	}
}

// relayMessages copies messages from src to dst until either fails, src
// sends a close frame or, between messages, stop is done. Neither side's
// read limit applies here: berth never holds a whole message, and the
// receiving end enforces its own.
func relayMessages(dst, src *websocket.Conn, stop context.Context) (res relayResult) {
	ctx := context.Background()
	src.SetReadLimit(-1)
	buf := make([]byte, wsFrameBytes)
	for {
		typ, r, err := src.Reader(ctx)
		if err != nil {
			res.err = err
			return res
		}
		if stop != nil && stop.Err() != nil {
			res.err = errRelayStopped
			return res
		}
		n, err := relayMessage(ctx, dst, typ, r, buf, &res.writeFailed)
		res.bytes += n
		if err != nil {
			res.err = err
			return res
		}
		res.messages++
	}
}

// relayMessage sends one message on: as one frame when it fits in buf,
// otherwise in fragments as it arrives.
func relayMessage(ctx context.Context, dst *websocket.Conn, typ websocket.MessageType, r io.Reader, buf []byte, writeFailed *bool) (int64, error) {
	n, err := io.ReadFull(r, buf)
	switch err {
	case io.EOF, io.ErrUnexpectedEOF:
		if err := dst.Write(ctx, typ, buf[:n]); err != nil {
			*writeFailed = true
			return 0, err
		}
		return int64(n), nil
	case nil:
	default:
		return 0, err
	}
	w, err := dst.Writer(ctx, typ)
	if err != nil {
		*writeFailed = true
		return 0, err
	}
	out := &errWriter{w: w, failed: writeFailed}
	if _, err := out.Write(buf); err != nil {
		return 0, err
	}
	more, err := io.CopyBuffer(out, r, buf)
	if err != nil {
		return int64(n) + more, err
	}
	if err := w.Close(); err != nil {
		*writeFailed = true
		return int64(n) + more, err
	}
	return int64(n) + more, nil
}

// errWriter records that its writer failed, to tell a dead destination
// from a dead source.
type errWriter struct {
	w      io.Writer
	failed *bool
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		*e.failed = true
	}
	return n, err
}
