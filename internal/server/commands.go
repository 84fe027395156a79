package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/session"
)

// InvokeAgentRuntimeCommand: a command runs in the session's sandbox and
// its output comes back as an AWS event stream (api/commands.go).

// maxCommandBody caps the request body: a command of MaxCommandLen
// characters, each escaped in JSON as a 12-byte surrogate pair at worst.
const maxCommandBody = 12*api.MaxCommandLen + 1024

// maxChunkPayload caps one chunk event's JSON, leaving room for its
// headers and framing under MaxCommandEventBytes.
const maxChunkPayload = api.MaxCommandEventBytes - 256

// errOutputCap stops a command whose output passed the stream's cap.
var errOutputCap = errors.New("command output exceeds the stream's limit")

func (s *Server) command(w http.ResponseWriter, r *http.Request) {
	sid, err := sessionID(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := decodeCommand(r, w)
	if err != nil {
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
	call, err := s.sessions.AcquireCommand(r.Context(), session.Spec{
		Key:      session.Key{RuntimeID: res.Runtime.ID, Endpoint: res.Endpoint.Name, SessionID: sid},
		Version:  res.Version.Version,
		Settings: res.Version.Settings,
		UserID:   grant.Owner,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer call.Release()

	h := w.Header()
	h.Set("Content-Type", api.ContentTypeEventStream)
	h.Set(api.HeaderSessionID, sid)
	for _, k := range []string{api.HeaderTraceID, api.HeaderTraceParent, api.HeaderTraceState, api.HeaderBaggage} {
		if v := r.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Commands run for up to an hour; neither deadline applies any more.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})

	// The command ends with the client, or when its output passes the cap.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	es := &eventStream{w: w, rc: rc, enc: eventstream.NewEncoder(), limit: api.MaxCommandStreamBytes,
		over: func() { cancel(errOutputCap) }}
	stdout, stderr := es.output(false), es.output(true)
	out, err := call.Exec(ctx, session.Command{
		Text:    req.Command,
		Timeout: time.Duration(*req.Timeout) * time.Second,
		Stdout:  stdout,
		Stderr:  stderr,
		Started: func() { es.chunk(api.CommandChunk{ContentStart: &api.ContentStart{}}) },
	})
	stdout.flush()
	stderr.flush()
	switch {
	case errors.Is(context.Cause(ctx), errOutputCap):
		es.exception(&apiError{typ: api.ErrServiceQuota, msg: "command output exceeds " + itoa(api.MaxCommandStreamBytes) + " bytes: the command was stopped"})
	case r.Context().Err() != nil:
		s.log.Info("command cancelled: the client went away", "runtime_id", res.Runtime.ID, "session_id", sid)
	case err != nil:
		ae := classify(err)
		s.log.Info("command failed", "runtime_id", res.Runtime.ID, "session_id", sid, "type", ae.typ, "err", err)
		es.exception(ae)
	default:
		status := api.CommandCompleted
		if out.TimedOut {
			status = api.CommandTimedOut
		}
		es.chunk(api.CommandChunk{ContentStop: &api.ContentStop{ExitCode: out.ExitCode, Status: status}})
	}
}

// decodeCommand reads and validates a command's body; the timeout it
// returns is set.
func decodeCommand(r *http.Request, w http.ResponseWriter) (api.CommandRequest, error) {
	var req api.CommandRequest
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCommandBody))
	if te := typedError(nil); errors.As(err, &te) {
		return req, err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return req, validation("command", "body exceeds "+itoa(maxCommandBody)+" bytes")
	}
	if err != nil {
		return req, validation("body", "read body: "+err.Error())
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return req, &apiError{typ: api.ErrValidation, msg: "malformed JSON body: " + err.Error(), reason: "CannotParse"}
	}
	if n := utf8.RuneCountInString(req.Command); n < 1 || n > api.MaxCommandLen {
		return req, validation("command", "Invalid length for parameter command, value: "+itoa(n)+
			", valid min length: 1, valid max length: "+itoa(api.MaxCommandLen))
	}
	if req.Timeout == nil {
		t := api.DefaultCommandTimeout
		req.Timeout = &t
	}
	if t := *req.Timeout; t < api.MinCommandTimeout || t > api.MaxCommandTimeout {
		return req, validation("timeout", "Invalid value for parameter timeout, value: "+itoa(t)+
			", valid min value: "+itoa(api.MinCommandTimeout)+", valid max value: "+itoa(api.MaxCommandTimeout))
	}
	return req, nil
}

// eventStream writes a command's events to the client, one whole message
// per write, flushed as it goes.
type eventStream struct {
	w     io.Writer
	rc    *http.ResponseController
	enc   *eventstream.Encoder
	limit int
	over  func() // called once output passes limit

	mu     sync.Mutex // guards what follows and serialises writes
	sent   int        // output bytes sent
	capped bool
	broken bool // a write failed: the client is gone
}

// chunk sends one chunk event.
func (e *eventStream) chunk(c api.CommandChunk) {
	payload, _ := json.Marshal(c)
	e.chunkJSON(payload)
}

// chunkJSON sends one chunk event whose payload is already encoded.
func (e *eventStream) chunkJSON(payload []byte) {
	var h eventstream.Headers
	h.Set(api.EventHeaderMessageType, eventstream.StringValue(api.MessageTypeEvent))
	h.Set(api.EventHeaderEventType, eventstream.StringValue(api.EventTypeChunk))
	h.Set(api.EventHeaderContentType, eventstream.StringValue("application/json"))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.writeLocked(eventstream.Message{Headers: h, Payload: payload})
}

// exception ends the stream with an error the SDKs raise.
func (e *eventStream) exception(ae *apiError) {
	payload, _ := json.Marshal(api.ErrorBody{Message: clip(ae.msg), Reason: ae.reason})
	var h eventstream.Headers
	h.Set(api.EventHeaderMessageType, eventstream.StringValue(api.MessageTypeException))
	h.Set(api.EventHeaderExceptionType, eventstream.StringValue(ae.typ.StreamName()))
	h.Set(api.EventHeaderContentType, eventstream.StringValue("application/json"))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.writeLocked(eventstream.Message{Headers: h, Payload: payload})
}

func (e *eventStream) writeLocked(m eventstream.Message) {
	if e.broken {
		return
	}
	if err := e.enc.Encode(e.w, m); err != nil {
		e.broken = true
		return
	}
	e.rc.Flush()
}

// output is a writer for one of the command's streams.
func (e *eventStream) output(stderr bool) *outputWriter {
	return &outputWriter{e: e, stderr: stderr}
}

// outputWriter turns one stream's writes into contentDelta events. It
// holds back a rune split across writes, so every event is valid UTF-8
// where the output is.
type outputWriter struct {
	e       *eventStream
	stderr  bool
	pending []byte // the start of a rune the next write completes
}

func (o *outputWriter) Write(p []byte) (int, error) {
	n := len(p)
	buf := append(o.pending, p...)
	o.pending = nil
	// Hold back a trailing incomplete rune (at most 3 bytes).
	for i := 1; i <= 3 && i <= len(buf); i++ {
		c := buf[len(buf)-i]
		if c < utf8.RuneSelf {
			break
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(buf[len(buf)-i:]) {
				o.pending = append([]byte(nil), buf[len(buf)-i:]...)
				buf = buf[:len(buf)-i]
			}
			break
		}
	}
	o.send(buf)
	return n, nil
}

// flush sends what is held back, once the command is done.
func (o *outputWriter) flush() {
	o.send(o.pending)
	o.pending = nil
}

// send sends b in as few contentDelta events as fit: a piece whose JSON
// would pass maxChunkPayload (output JSON escapes up to sixfold) is halved
// until it fits, never inside a rune.
func (o *outputWriter) send(b []byte) {
	for len(b) > 0 {
		n := len(b)
		var payload []byte
		for {
			n = runeCut(b, n)
			d := &api.ContentDelta{Stdout: string(b[:n])}
			if o.stderr {
				d = &api.ContentDelta{Stderr: string(b[:n])}
			}
			payload, _ = json.Marshal(api.CommandChunk{ContentDelta: d})
			if len(payload) <= maxChunkPayload || n == 1 {
				break
			}
			n /= 2
		}
		if !o.e.account(n) {
			return
		}
		o.e.chunkJSON(payload)
		b = b[n:]
	}
}

// runeCut moves n back to the start of a rune, unless that leaves nothing.
func runeCut(b []byte, n int) int {
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if i == len(b) || utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}

// account counts n more output bytes; false once the stream's cap is
// passed, the first time of which stops the command.
func (e *eventStream) account(n int) bool {
	e.mu.Lock()
	if e.capped {
		e.mu.Unlock()
		return false
	}
	e.sent += n
	if e.sent <= e.limit {
		e.mu.Unlock()
		return true
	}
	e.capped = true
	e.mu.Unlock()
	e.over()
	return false
}
