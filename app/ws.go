package app

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// The app's WebSocket endpoint (GET /ws) runs on github.com/coder/websocket,
// the one WebSocket implementation berth uses on both sides of its proxy.
// It negotiates no extensions and no subprotocol.

// WebSocketHandler handles one WebSocket connection on /ws, the counterpart of
// @app.websocket in the Python SDK. The app has already accepted the upgrade
// when it runs. [RequestFrom] gives the session ID and forwarded headers of
// the upgrade request, as for invocations.
//
// ctx is cancelled when the connection ends: the peer closed it or went away,
// or the app is shutting down. When the handler returns nil the app closes
// the connection with 1000 (normal closure); when it returns an error or
// panics, with 1011 (internal error), as the Python SDK does. A handler may
// close the connection itself with [WSConn.Close] and return.
type WebSocketHandler func(ctx context.Context, conn *WSConn) error

// WebSocket registers the WebSocket handler, replacing any earlier one.
// Without one, the app accepts connections on /ws and closes them at once
// with 1011, as the Python SDK does.
func (a *App) WebSocket(h WebSocketHandler) {
	a.wsHandler.Store(&h)
}

// MessageType is the type of a WebSocket data message.
type MessageType int

const (
	// MessageText is a text message; its payload is UTF-8.
	MessageText = MessageType(websocket.MessageText)
	// MessageBinary is a binary message.
	MessageBinary = MessageType(websocket.MessageBinary)
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// CloseCode is a WebSocket close status code (RFC 6455 §7.4).
type CloseCode int

// Close codes an agent sends or receives.
const (
	CloseNormal          CloseCode = 1000
	CloseGoingAway       CloseCode = 1001
	CloseProtocolError   CloseCode = 1002
	CloseUnsupportedData CloseCode = 1003
	// CloseNoStatus is reported when the peer's close frame carried no
	// code; sending it sends a close frame without one.
	CloseNoStatus        CloseCode = 1005
	CloseInvalidPayload  CloseCode = 1007
	ClosePolicyViolation CloseCode = 1008
	CloseMessageTooBig   CloseCode = 1009
	CloseInternalError   CloseCode = 1011
)

// CloseError is what [WSConn.Read] returns once the peer has closed the
// connection with a close frame.
type CloseError struct {
	Code   CloseCode
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("websocket closed by peer with %d", e.Code)
	}
	return fmt.Sprintf("websocket closed by peer with %d: %s", e.Code, e.Reason)
}

// ErrWSClosed is returned by writes once the connection is closing or
// closed, by either side.
var ErrWSClosed = errors.New("websocket connection closed")

// DefaultWSReadLimit caps an incoming message, as uvicorn's default does for
// Python agents. Change it per connection with [WSConn.SetReadLimit].
const DefaultWSReadLimit = 16 << 20

const (
	// wsInboxBytes is how much the reader queues ahead of Read before it
	// stops reading; one message is always let through whatever its size.
	wsInboxBytes = 1 << 20
	// wsFrameBytes is the largest frame Write sends; longer messages go out
	// in fragments. The library answers a ping, or sends a close frame,
	// only between two frames and gives up after 5 seconds, so one frame
	// must never take that long to send, even on a slow link.
	wsFrameBytes = 32 << 10
	// maxCloseReason is what fits in a control frame after the code.
	maxCloseReason = 123
	// shutdownReason goes with the 1001 an app sends when it stops.
	shutdownReason = "agent shutting down"
)

type wsMessage struct {
	typ  MessageType
	data []byte
}

// WSConn is one accepted WebSocket connection. A reader goroutine owned by
// the app reads frames all the time: it answers pings, completes the closing
// handshake and notices a vanished peer (cancelling the handler's ctx) even
// while the handler only writes. Data messages queue for [WSConn.Read].
//
// Write, WriteJSON and Close are safe for concurrent use; call Read from one
// goroutine at a time.
type WSConn struct {
	ws      *websocket.Conn
	netConn net.Conn // the upgraded connection, to stop reading when failing it
	msgsIn  atomic.Int64
	msgsOut atomic.Int64

	readDone chan struct{} // closed when the reader goroutine exits
	readErr  error         // why reading ended; written before readDone closes

	closingOnce sync.Once
	closing     chan struct{} // closed once the app starts closing

	// inMu guards the fields that follow.
	inMu    sync.Mutex
	inbox   []wsMessage
	inBytes int
	inReady chan struct{} // cap 1: a message was queued
	inSpace chan struct{} // cap 1: a message was taken
}

func newWSConn(ws *websocket.Conn, netConn net.Conn) *WSConn {
	c := &WSConn{
		ws:       ws,
		netConn:  netConn,
		readDone: make(chan struct{}),
		closing:  make(chan struct{}),
		inReady:  make(chan struct{}, 1),
		inSpace:  make(chan struct{}, 1),
	}
	ws.SetReadLimit(DefaultWSReadLimit)
	return c
}

// SetReadLimit caps the size of an incoming message. A larger message closes
// the connection with 1009 (message too big).
func (c *WSConn) SetReadLimit(n int64) {
	c.ws.SetReadLimit(n)
}

// Read returns the next data message: fragments are already joined and text
// is checked to be UTF-8. Pings are answered for you. Once the peer has
// closed the connection, Read returns the messages still queued and then a
// [*CloseError] with the peer's code; if the connection broke instead, some
// other error. When ctx ends first, Read returns ctx's error and the
// connection stays usable.
func (c *WSConn) Read(ctx context.Context) (MessageType, []byte, error) {
	for {
		c.inMu.Lock()
		if len(c.inbox) > 0 {
			m := c.inbox[0]
			c.inbox[0] = wsMessage{}
			c.inbox = c.inbox[1:]
			c.inBytes -= len(m.data)
			c.inMu.Unlock()
			notify(c.inSpace)
			c.msgsIn.Add(1)
			return m.typ, m.data, nil
		}
		c.inMu.Unlock()
		select {
		case <-c.inReady:
		case <-c.readDone:
			c.inMu.Lock()
			empty := len(c.inbox) == 0
			c.inMu.Unlock()
			if empty {
				return 0, nil, c.readErr
			}
		case <-ctx.Done():
			// The handler's ctx ends right after the reader: then the
			// reader's verdict is the answer.
			if !isClosed(c.readDone) {
				return 0, nil, ctx.Err()
			}
		}
	}
}

// Write sends one message, in fragments when it is long. If ctx ends while
// the message is going out, the connection is closed, as a partial message
// cannot be taken back.
func (c *WSConn) Write(ctx context.Context, typ MessageType, data []byte) error {
	if typ != MessageText && typ != MessageBinary {
		return fmt.Errorf("write websocket: invalid message type %d", typ)
	}
	if typ == MessageText && !utf8.Valid(data) {
		return errors.New("write websocket: text message is not valid UTF-8")
	}
	// The library closes the connection when ctx is done, even before the
	// first byte went out.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write websocket: %w", err)
	}
	if isClosed(c.closing) {
		return ErrWSClosed
	}
	if err := c.writeMessage(ctx, websocket.MessageType(typ), data); err != nil {
		if errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
			return ErrWSClosed
		}
		return fmt.Errorf("write websocket: %w", err)
	}
	c.msgsOut.Add(1)
	return nil
}

func (c *WSConn) writeMessage(ctx context.Context, typ websocket.MessageType, data []byte) error {
	if len(data) <= wsFrameBytes {
		return c.ws.Write(ctx, typ, data)
	}
	w, err := c.ws.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), wsFrameBytes)
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return w.Close()
}

// WriteJSON sends v, encoded as JSON without HTML escaping, as a text
// message, the counterpart of send_json in Starlette.
func (c *WSConn) WriteJSON(ctx context.Context, v any) error {
	b, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	return c.Write(ctx, MessageText, b)
}

// Close starts the closing handshake with code and reason (cut to 123
// bytes), waits a few seconds for the peer's close frame, then closes the
// connection. Closing a connection that is already closing is a no-op.
// code must be one a close frame may carry: 1000-1003, 1007-1014 or
// 3000-4999 (or CloseNoStatus, for a close frame without a code).
func (c *WSConn) Close(code CloseCode, reason string) error {
	if code != CloseNoStatus && !validCloseCode(code) {
		return fmt.Errorf("close websocket: invalid close code %d", code)
	}
	c.startClosing()
	err := c.ws.Close(websocket.StatusCode(code), truncateUTF8(reason, maxCloseReason))
	// Already closing, or the peer answered with another code: closed all
	// the same.
	var ce websocket.CloseError
	if err == nil || errors.Is(err, net.ErrClosed) || errors.As(err, &ce) {
		return nil
	}
	return fmt.Errorf("close websocket: %w", err)
}

func (c *WSConn) startClosing() {
	c.closingOnce.Do(func() { close(c.closing) })
}

// fail ends the connection after a protocol violation (RFC 6455 §7.1.7):
// a close frame with code, unless the library sent one already, and no wait
// for the peer's answer.
func (c *WSConn) fail(code CloseCode, reason string) {
	c.startClosing()
	_ = c.netConn.SetReadDeadline(time.Unix(1, 0))
	_ = c.ws.Close(websocket.StatusCode(code), reason)
}

// readLoop reads messages until the connection ends, which it leaves closed.
func (c *WSConn) readLoop() {
	c.readErr = c.readMessages()
	close(c.readDone)
}

func (c *WSConn) readMessages() error {
	for {
		typ, data, err := c.ws.Read(context.Background())
		var ce websocket.CloseError
		switch {
		case errors.As(err, &ce):
			return &CloseError{Code: CloseCode(ce.Code), Reason: ce.Reason}
		case err != nil:
			// The library has sent the close frame a violation calls for,
			// except for an unmasked frame; a broken connection gets none.
			c.fail(CloseProtocolError, "")
			return fmt.Errorf("read websocket: %w", err)
		case typ == websocket.MessageText && !utf8.Valid(data):
			c.fail(CloseInvalidPayload, "text message is not valid UTF-8")
			return fmt.Errorf("read websocket: text message is not valid UTF-8 (closed with %d)", CloseInvalidPayload)
		}
		c.deliver(wsMessage{typ: MessageType(typ), data: data})
	}
}

// deliver queues a message for Read, waiting while the queue is full.
// Messages that arrive after the app started closing are dropped.
func (c *WSConn) deliver(m wsMessage) {
	c.inMu.Lock()
	for c.inBytes > 0 && c.inBytes+len(m.data) > wsInboxBytes {
		c.inMu.Unlock()
		select {
		case <-c.inSpace:
		case <-c.closing:
			return
		}
		c.inMu.Lock()
	}
	c.inbox = append(c.inbox, m)
	c.inBytes += len(m.data)
	c.inMu.Unlock()
	notify(c.inReady)
}

// validCloseCode reports whether code may appear in a close frame.
func validCloseCode(code CloseCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// connKeeper hands the library the connection it hijacks and keeps it.
type connKeeper struct {
	http.ResponseWriter
	conn net.Conn
}

func (k *connKeeper) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(k.ResponseWriter).Hijack()
	k.conn = conn
	return conn, rw, err
}

// serveWebSocket accepts a WebSocket on /ws and runs the handler on it.
func (a *App) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := newRequestContext(r, a.logger)
	log := rc.Logger
	if status, err := checkUpgrade(r); err != nil {
		log.Warn("websocket upgrade refused", slog.Any("err", err))
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Upgrade", "websocket")
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		writeJSON(w, status, errorBody{Error: err.Error()})
		return
	}
	// The server's deadlines do not apply to the upgraded connection.
	ctl := http.NewResponseController(w)
	_ = ctl.SetReadDeadline(time.Time{})
	_ = ctl.SetWriteDeadline(time.Time{})
	keeper := &connKeeper{ResponseWriter: w}
	// No origin check: who may connect is the runtime's business (berth
	// authenticates callers), as it is for invocations.
	ws, err := websocket.Accept(keeper, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		log.Warn("websocket upgrade failed", slog.Any("err", err))
		return
	}
	c := newWSConn(ws, keeper.conn)

	// Shutdown waits for the connection as for a background task.
	a.mu.Lock()
	a.bgRunning++
	a.mu.Unlock()
	defer a.bgDone()

	connCtx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		c.readLoop()
		cancel()
	}()
	shutdownDone := make(chan struct{})
	stopShutdown := context.AfterFunc(a.bgCtx, func() {
		defer close(shutdownDone)
		cancel()
		_ = c.Close(CloseGoingAway, shutdownReason)
	})

	ctx := ContextWithRequest(connCtx, rc)
	var herr error
	if h := a.wsHandler.Load(); h == nil {
		log.Error("no WebSocket handler defined")
		_ = c.Close(CloseInternalError, "no WebSocket handler defined")
	} else {
		herr = callWSHandler(ctx, *h, c)
	}
	code := CloseNormal
	var pe *panicError
	switch {
	case herr == nil:
	case errors.As(herr, &pe):
		log.Error("websocket handler panicked", slog.Any("panic", pe.value), slog.String("stack", string(pe.stack)))
		code = CloseInternalError
	case isClosed(c.readDone) || a.bgCtx.Err() != nil:
		// The handler failed because the connection was ending anyway.
		log.Info("websocket handler stopped: connection closing", slog.Any("err", herr))
	default:
		log.Error("websocket handler failed", slog.Any("err", herr))
		code = CloseInternalError
	}
	if a.bgCtx.Err() != nil {
		// The close the shutdown sends, whichever of the two goes first.
		_ = c.Close(CloseGoingAway, shutdownReason)
	} else {
		_ = c.Close(code, "")
	}
	<-c.readDone
	if !stopShutdown() {
		<-shutdownDone
	}

	attrs := []any{
		slog.Int64("messages_in", c.msgsIn.Load()),
		slog.Int64("messages_out", c.msgsOut.Load()),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	var ce *CloseError
	if errors.As(c.readErr, &ce) {
		attrs = append(attrs, slog.Int("peer_close_code", int(ce.Code)))
	}
	log.Info("websocket closed", attrs...)
}

// callWSHandler runs h, turning a panic into an error.
func callWSHandler(ctx context.Context, h WebSocketHandler, c *WSConn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return h(ctx, c)
}

// checkUpgrade validates an opening handshake, or says which status to
// refuse it with; the library would answer 400 where the Python SDK answers
// 426, and not in JSON.
func checkUpgrade(r *http.Request) (status int, err error) {
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return http.StatusUpgradeRequired, errors.New("WebSocket upgrade required")
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return http.StatusUpgradeRequired, fmt.Errorf("unsupported WebSocket version %q: want 13", v)
	}
	if b, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key")); err != nil || len(b) != 16 {
		return http.StatusBadRequest, errors.New("invalid Sec-WebSocket-Key")
	}
	return 0, nil
}

// headerHasToken reports whether a comma-separated header lists token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
