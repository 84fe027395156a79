package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/session"
)

// AgentCore's WebSocket data plane: GET /runtimes/{arn}/ws?qualifier= is
// proxied to the agent's /ws in the session's sandbox. berth relays the
// frames unchanged (extensions and subprotocols are the agent's business)
// but reads their headers, so it knows where frames begin: that lets it send
// the client a close frame of its own when the session ends under the socket.

const (
	// wsCloseGrace is how long one side may take to finish the closing
	// handshake after the other side has closed.
	wsCloseGrace = 5 * time.Second
	// Close codes berth sends (RFC 6455 §7.4.1).
	wsGoingAway     = 1001
	wsInternalError = 1011
)

// Query parameters a presigned WebSocket URL carries (the Python SDK's
// AgentCoreRuntimeClient.generate_presigned_url): the session ID and custom
// headers stand in for headers a browser cannot set.
const queryCustomPrefix = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-"

// registerWebSocket adds the WebSocket route.
func (s *Server) registerWebSocket() {
	s.handle("GET /runtimes/{arn}/ws", accessRuntime, s.measured("websocket", s.websocket))
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
	sid, err := sessionID(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The socket holds a call slot for its whole life, so the idle reaper
	// leaves the session alone while it is open.
	call, out, err := s.admit(w, r, sid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer call.Release()
	out.Set("Connection", "Upgrade")
	out.Set("Upgrade", "websocket")
	for _, k := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions"} {
		if v, ok := r.Header[k]; ok {
			out[k] = v
		}
	}
	// The agent chooses among the subprotocols the client offered, never
	// seeing the bearer-token ones.
	if offered := auth.OtherSubprotocols(r.Header); len(offered) > 0 {
		out.Set("Sec-Websocket-Protocol", strings.Join(offered, ", "))
	}
	sentinel := auth.SentinelOffered(r.Header)

	key := call.Session().Key
	log := s.log.With("runtime_id", key.RuntimeID, "endpoint", key.Endpoint, "session_id", sid)

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(call.KillContext(), func() { cancel(session.ErrEnded) })
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.PathWebSocket, nil)
	if err != nil {
		stop()
		s.writeError(w, r, err)
		return
	}
	req.Header = out
	resp, err := call.RoundTrip(req)
	stop()
	if err != nil {
		s.writeError(w, r, s.callError(r, call, err))
		return
	}
	agent, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		msg := "the agent refused the WebSocket upgrade (" + itoa(resp.StatusCode) + ")"
		if b := strings.TrimSpace(string(body)); b != "" {
			msg += ": " + b
		}
		s.writeError(w, r, &apiError{typ: api.ErrRuntimeClient, msg: msg})
		return
	}
	defer agent.Close()

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.writeError(w, r, fmt.Errorf("take over the client connection: %w", err))
		return
	}
	defer client.Close()
	// The server's deadlines do not apply to the upgraded connection.
	_ = client.SetDeadline(time.Time{})
	if sentinel && resp.Header.Get("Sec-Websocket-Protocol") == "" {
		// A browser that sent its token as a subprotocol gets the
		// sentinel back, as AgentCore answers.
		resp.Header.Set("Sec-Websocket-Protocol", auth.BearerSubprotocol)
	}
	if err := writeSwitch(brw.Writer, resp.Header, w.Header(), sid); err != nil {
		log.Info("websocket client gone during the handshake", "err", err)
		return
	}

	start := time.Now()
	log.Info("websocket opened")
	t := &wsTunnel{
		client:      client,
		clientR:     brw.Reader,
		agent:       agent,
		agentR:      bufio.NewReaderSize(agent, 32<<10),
		kill:        call.KillContext(),
		sessionDone: call.Ended,
	}
	st := t.run()
	log.Info("websocket closed", "duration_ms", time.Since(start).Milliseconds(),
		"frames_in", st.up.frames, "frames_out", st.down.frames,
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
	if r.Header.Get("Sec-WebSocket-Key") == "" {
		return validation("Sec-WebSocket-Key", "missing Sec-WebSocket-Key")
	}
	return nil
}

func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
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

// writeSwitch sends the 101 answer: the agent's handshake headers and
// berth's own.
func writeSwitch(w *bufio.Writer, agent, own http.Header, sid string) error {
	h := http.Header{}
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	for _, k := range []string{"Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		if v, ok := agent[k]; ok {
			h[k] = v
		}
	}
	h.Set(api.HeaderSessionID, sid)
	if v := own.Get(api.HeaderAWSRequestID); v != "" {
		h.Set(api.HeaderAWSRequestID, v)
	}
	if _, err := io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return err
	}
	if err := h.Write(w); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return err
	}
	return w.Flush()
}

// wsTunnel relays one upgraded connection between a client and an agent.
type wsTunnel struct {
	client      net.Conn
	clientR     *bufio.Reader
	agent       io.ReadWriteCloser
	agentR      *bufio.Reader
	kill        context.Context
	sessionDone func() (session.EndReason, string, bool)
}

type tunnelStats struct {
	up, down relayResult
	end      string
}

// run relays until both directions are done and says how the socket ended.
// It owns the two relay goroutines and waits for both.
//
// A side that hangs up without a close frame ends the other side at once, so
// an agent sees a vanished client as a dropped connection. After a close
// frame, from either side or from berth, the other side gets wsCloseGrace to
// answer. When the session ends, berth closes the agent side and tells the
// client with a close frame (1001) if it can.
func (t *wsTunnel) run() tunnelStats {
	upc, downc := make(chan relayResult, 1), make(chan relayResult, 1)
	go func() {
		upc <- relayFrames(t.agent, t.clientR, t.clientR, nil)
	}()
	go func() {
		// Once the session has ended, nothing more from the agent goes
		// out, its goodbye included: berth tells the client why.
		res := relayFrames(t.client, t.agentR, t.agentR, t.kill)
		res.injected = t.closeClient(res)
		downc <- res
	}()

	var st tunnelStats
	upDone, downDone := false, false
	kill := t.kill.Done()
	var grace <-chan time.Time
	startGrace := func() {
		if grace == nil {
			grace = time.After(wsCloseGrace)
		}
	}
	for !upDone || !downDone {
		select {
		case st.up = <-upc:
			upDone = true
			if st.end == "" {
				st.end = "client " + st.up.describe()
			}
			if st.up.sawClose {
				startGrace() // for the agent's answer
			} else {
				t.agent.Close()
			}
		case st.down = <-downc:
			downDone = true
			if st.end == "" {
				st.end = "agent " + st.down.describe()
			}
			if st.down.sawClose || st.down.injected {
				startGrace() // for the client's answer
			} else {
				t.client.Close()
			}
		case <-kill:
			kill = nil
			if reason, _, ok := t.sessionDone(); ok && st.end == "" {
				st.end = "session ended: " + string(reason)
			}
			t.agent.Close() // the down relay then sends the client its close frame
			startGrace()
		case <-grace:
			t.agent.Close()
			t.client.Close()
		}
	}
	return st
}

// closeClient tells the client why its socket is ending when the agent side
// ended without a close frame, if the relay stopped between frames and the
// client still takes writes. It reports whether the frame went out.
func (t *wsTunnel) closeClient(res relayResult) bool {
	if res.sawClose || res.midFrame || res.writeFailed {
		return false
	}
	code, reason := wsInternalError, "the agent connection ended without a close frame"
	if r, _, ended := t.sessionDone(); ended {
		code, reason = wsGoingAway, "session ended: "+string(r)
	}
	_ = t.client.SetWriteDeadline(time.Now().Add(time.Second))
	frame := []byte{0x80 | 0x8, byte(2 + len(reason))}
	frame = binary.BigEndian.AppendUint16(frame, uint16(code))
	frame = append(frame, reason...)
	_, err := t.client.Write(frame)
	return err == nil
}

// errRelayStopped ends a relay whose session ended.
var errRelayStopped = errors.New("stopped: the session ended")

// relayResult is how one direction of a tunnel ended.
type relayResult struct {
	err         error
	frames      int64
	bytes       int64
	sawClose    bool // a close frame went through
	midFrame    bool // it stopped inside a frame
	writeFailed bool // dst failed, rather than src
	injected    bool // berth sent the client a close frame of its own
}

func (r relayResult) describe() string {
	switch {
	case r.sawClose:
		return "closed"
	case r.err == nil || errors.Is(r.err, io.EOF):
		return "hung up without a close frame"
	default:
		return r.err.Error()
	}
}

// relayFrames copies WebSocket frames from src to dst unchanged until src
// ends, a write fails, a close frame has gone through or, between frames,
// stop is done. It parses only frame headers; payloads, masked or not, pass
// as they are. It flushes whenever src has nothing more buffered, so no
// frame is held back.
func relayFrames(dst io.Writer, src *bufio.Reader, buffered interface{ Buffered() int }, stop context.Context) (res relayResult) {
	bw := bufio.NewWriterSize(&errWriter{w: dst, failed: &res.writeFailed}, 32<<10)
	var hdr [14]byte
	for {
		if buffered.Buffered() == 0 {
			if res.err = bw.Flush(); res.err != nil {
				return res
			}
		}
		if _, res.err = io.ReadFull(src, hdr[:2]); res.err != nil {
			return res
		}
		if stop != nil && stop.Err() != nil {
			if res.err = bw.Flush(); res.err == nil {
				res.err = errRelayStopped
			}
			return res
		}
		n := int64(hdr[1] & 0x7f)
		ext := 0
		switch n {
		case 126:
			ext = 2
		case 127:
			ext = 8
		}
		if hdr[1]&0x80 != 0 {
			ext += 4 // masking key
		}
		if _, res.err = io.ReadFull(src, hdr[2:2+ext]); res.err != nil {
			return res
		}
		switch n {
		case 126:
			n = int64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			n = int64(binary.BigEndian.Uint64(hdr[2:10]) & (1<<63 - 1))
		}
		res.midFrame = true
		if _, res.err = bw.Write(hdr[:2+ext]); res.err != nil {
			return res
		}
		var copied int64
		copied, res.err = io.CopyN(bw, src, n)
		res.bytes += copied
		if res.err != nil {
			return res
		}
		res.midFrame = false
		res.frames++
		if hdr[0]&0x0f == 0x8 {
			res.sawClose = true
			res.err = bw.Flush()
			return res
		}
	}
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
