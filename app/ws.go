package app

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// The app's WebSocket endpoint (GET /ws) is written on the standard library
// so agents keep a dependency-free SDK. It implements RFC 6455 as a server:
// the opening handshake, framing, client-to-server masking, fragmented
// messages, ping/pong and the closing handshake. It negotiates no extensions
// and no subprotocol.

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
	MessageText MessageType = opText
	// MessageBinary is a binary message.
	MessageBinary MessageType = opBinary
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
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa

	// wsCloseTimeout bounds the closing handshake: how long a close frame
	// may take to write and the peer's answer to arrive.
	wsCloseTimeout = 5 * time.Second
	// wsInboxBytes is how much the reader queues ahead of Read before it
	// stops reading; one message is always let through whatever its size.
	wsInboxBytes = 1 << 20
	// maxCloseReason is what fits in a control frame after the code.
	maxCloseReason = 123
	wsGUID         = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
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
	conn      net.Conn
	br        *bufio.Reader
	readLimit atomic.Int64
	msgsIn    atomic.Int64
	msgsOut   atomic.Int64

	readDone chan struct{} // closed when the reader goroutine exits
	readErr  error         // why reading ended; written before readDone closes

	// inMu guards the fields that follow.
	inMu    sync.Mutex
	inbox   []wsMessage
	inBytes int
	inReady chan struct{} // cap 1: a message was queued
	inSpace chan struct{} // cap 1: a message was taken

	// wmu serialises frame writes and guards the fields that follow.
	wmu       sync.Mutex
	bw        *bufio.Writer
	wclosed   bool          // a close frame went out or a write failed
	closeSent chan struct{} // closed when wclosed is set
	sentCode  CloseCode     // the code of the close frame sent, if any
}

func newWSConn(conn net.Conn, rw *bufio.ReadWriter) *WSConn {
	c := &WSConn{
		conn:      conn,
		br:        rw.Reader,
		bw:        rw.Writer,
		readDone:  make(chan struct{}),
		inReady:   make(chan struct{}, 1),
		inSpace:   make(chan struct{}, 1),
		closeSent: make(chan struct{}),
	}
	c.readLimit.Store(DefaultWSReadLimit)
	return c
}

// SetReadLimit caps the size of an incoming message. A larger message closes
// the connection with 1009 (message too big).
func (c *WSConn) SetReadLimit(n int64) {
	c.readLimit.Store(n)
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
			return 0, nil, ctx.Err()
		}
	}
}

// Write sends one message in a single frame. If ctx ends while the frame is
// going out, the connection is closed, as a partial frame cannot be taken
// back.
func (c *WSConn) Write(ctx context.Context, typ MessageType, data []byte) error {
	if typ != MessageText && typ != MessageBinary {
		return fmt.Errorf("write websocket: invalid message type %d", typ)
	}
	if typ == MessageText && !utf8.Valid(data) {
		return errors.New("write websocket: text message is not valid UTF-8")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write websocket: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return ErrWSClosed
	}
	var err error
	if ctx.Done() == nil {
		err = c.writeFrameLocked(byte(typ), data)
	} else {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = c.conn.SetWriteDeadline(time.Unix(1, 0))
			close(fired)
		})
		err = c.writeFrameLocked(byte(typ), data)
		if !stop() {
			<-fired
			if err == nil {
				_ = c.conn.SetWriteDeadline(time.Time{})
			} else {
				err = ctx.Err()
			}
		}
	}
	if err != nil {
		c.breakLocked()
		return fmt.Errorf("write websocket: %w", err)
	}
	c.msgsOut.Add(1)
	return nil
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
	// Whoever sent the close frame, the peer's answer ends the reader,
	// which closes the connection; a broken connection ends it at once.
	err := c.writeClose(code, reason)
	t := time.NewTimer(wsCloseTimeout)
	select {
	case <-c.readDone:
	case <-t.C:
	}
	t.Stop()
	_ = c.conn.Close()
	if errors.Is(err, ErrWSClosed) {
		return nil
	}
	return err
}

// readLoop reads frames until the connection ends, then closes it.
func (c *WSConn) readLoop() {
	c.readErr = c.readFrames()
	_ = c.conn.Close()
	close(c.readDone)
}

func (c *WSConn) readFrames() error {
	var (
		hdr     [8]byte
		key     [4]byte
		msgType MessageType // of the message being assembled; 0 between messages
		msg     []byte
	)
	for {
		if _, err := io.ReadFull(c.br, hdr[:2]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // no close frame came first
			}
			return fmt.Errorf("read websocket: %w", err)
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		if hdr[0]&0x70 != 0 {
			return c.fail(CloseProtocolError, "reserved bits set, but no extension was negotiated")
		}
		masked := hdr[1]&0x80 != 0
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, hdr[:2]); err != nil {
				return fmt.Errorf("read websocket: %w", err)
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(c.br, hdr[:8]); err != nil {
				return fmt.Errorf("read websocket: %w", err)
			}
			n = binary.BigEndian.Uint64(hdr[:8])
			if n>>63 != 0 {
				return c.fail(CloseProtocolError, "frame length has its top bit set")
			}
		}
		if !masked {
			return c.fail(CloseProtocolError, "client frames must be masked")
		}
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return fmt.Errorf("read websocket: %w", err)
		}

		if op >= opClose {
			if !fin || n > 125 {
				return c.fail(CloseProtocolError, "control frames must be unfragmented and at most 125 bytes")
			}
			payload := make([]byte, n)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				return fmt.Errorf("read websocket: %w", err)
			}
			maskBytes(key, payload)
			switch op {
			case opClose:
				return c.onClose(payload)
			case opPing:
				c.writeControl(opPong, payload)
			case opPong:
			default:
				return c.fail(CloseProtocolError, fmt.Sprintf("unknown opcode %#x", op))
			}
			continue
		}

		switch op {
		case opContinuation:
			if msgType == 0 {
				return c.fail(CloseProtocolError, "continuation frame outside a fragmented message")
			}
		case opText, opBinary:
			if msgType != 0 {
				return c.fail(CloseProtocolError, "new message before the previous one's final fragment")
			}
			msgType = MessageType(op)
		default:
			return c.fail(CloseProtocolError, fmt.Sprintf("unknown opcode %#x", op))
		}
		if limit := c.readLimit.Load(); uint64(len(msg))+n > uint64(limit) {
			return c.fail(CloseMessageTooBig, fmt.Sprintf("message exceeds %d bytes", limit))
		}
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return fmt.Errorf("read websocket: %w", err)
		}
		maskBytes(key, msg[start:])
		if !fin {
			continue
		}
		if msgType == MessageText && !utf8.Valid(msg) {
			return c.fail(CloseInvalidPayload, "text message is not valid UTF-8")
		}
		if msg == nil {
			msg = []byte{}
		}
		c.deliver(wsMessage{typ: msgType, data: msg})
		msgType, msg = 0, nil
	}
}

// onClose answers the peer's close frame, unless it answers ours.
func (c *WSConn) onClose(p []byte) error {
	ce := &CloseError{Code: CloseNoStatus}
	switch {
	case len(p) == 1:
		return c.fail(CloseProtocolError, "close frame with a 1-byte payload")
	case len(p) >= 2:
		ce.Code = CloseCode(binary.BigEndian.Uint16(p))
		ce.Reason = string(p[2:])
		if !validCloseCode(ce.Code) {
			return c.fail(CloseProtocolError, fmt.Sprintf("invalid close code %d", ce.Code))
		}
		if !utf8.ValidString(ce.Reason) {
			return c.fail(CloseInvalidPayload, "close reason is not valid UTF-8")
		}
	}
	_ = c.writeClose(ce.Code, "") // ErrWSClosed: it was the answer to ours
	return ce
}

// fail closes the connection with code after a protocol violation by the peer.
func (c *WSConn) fail(code CloseCode, reason string) error {
	_ = c.writeClose(code, reason)
	return fmt.Errorf("read websocket: %s (closed with %d)", reason, code)
}

// deliver queues a message for Read, waiting while the queue is full.
// Messages that arrive after the app sent its close frame are dropped.
func (c *WSConn) deliver(m wsMessage) {
	c.inMu.Lock()
	for c.inBytes > 0 && c.inBytes+len(m.data) > wsInboxBytes {
		c.inMu.Unlock()
		select {
		case <-c.inSpace:
		case <-c.closeSent:
			return
		}
		c.inMu.Lock()
	}
	c.inbox = append(c.inbox, m)
	c.inBytes += len(m.data)
	c.inMu.Unlock()
	notify(c.inReady)
}

// writeClose sends a close frame, once.
func (c *WSConn) writeClose(code CloseCode, reason string) error {
	var p []byte
	if code != CloseNoStatus {
		if !validCloseCode(code) {
			return fmt.Errorf("close websocket: invalid close code %d", code)
		}
		reason = truncateUTF8(reason, maxCloseReason)
		p = binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
		p = append(p, reason...)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return ErrWSClosed
	}
	c.sentCode = code
	_ = c.conn.SetWriteDeadline(time.Now().Add(wsCloseTimeout))
	err := c.writeFrameLocked(opClose, p)
	c.breakLocked()
	if err != nil {
		_ = c.conn.Close()
		return fmt.Errorf("write close frame: %w", err)
	}
	return nil
}

// writeControl sends a ping or pong unless the connection is closing.
func (c *WSConn) writeControl(op byte, p []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return
	}
	if err := c.writeFrameLocked(op, p); err != nil {
		c.breakLocked()
		_ = c.conn.Close()
	}
}

// breakLocked marks the write side finished. After a failed data write the
// stream may hold half a frame, so the connection is closed too.
func (c *WSConn) breakLocked() {
	if c.wclosed {
		return
	}
	c.wclosed = true
	close(c.closeSent)
	if c.sentCode == 0 {
		_ = c.conn.Close()
	}
}

// writeFrameLocked writes one unmasked, final frame: servers never mask.
func (c *WSConn) writeFrameLocked(op byte, p []byte) error {
	var hdr [10]byte
	hdr[0] = 0x80 | op
	h := 2
	switch n := len(p); {
	case n <= 125:
		hdr[1] = byte(n)
	case n <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		h = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		h = 10
	}
	if _, err := c.bw.Write(hdr[:h]); err != nil {
		return err
	}
	if _, err := c.bw.Write(p); err != nil {
		return err
	}
	return c.bw.Flush()
}

// maskBytes applies a masking key to a frame's payload (RFC 6455 §5.3),
// eight bytes at a time.
func maskBytes(key [4]byte, b []byte) {
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= key[i&3]
	}
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

// serveWebSocket accepts a WebSocket on /ws and runs the handler on it.
func (a *App) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := newRequestContext(r, a.logger)
	log := rc.Logger
	key, status, err := checkUpgrade(r)
	if err != nil {
		log.Warn("websocket upgrade refused", slog.Any("err", err))
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Upgrade", "websocket")
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		writeJSON(w, status, errorBody{Error: err.Error()})
		return
	}
	netConn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		log.Error("websocket upgrade: take over the connection", slog.Any("err", err))
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "WebSocket unsupported on this connection"})
		return
	}
	// The server's deadlines do not apply to the upgraded connection.
	_ = netConn.SetDeadline(time.Time{})
	_, err = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n")
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		_ = netConn.Close()
		log.Warn("websocket upgrade: write handshake", slog.Any("err", err))
		return
	}
	c := newWSConn(netConn, rw)

	// Shutdown waits for the connection as for a background task.
	a.mu.Lock()
	a.bgRunning++
	a.mu.Unlock()
	defer a.bgDone()

	connCtx, cancel := context.WithCancel(r.Context())
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop()
		cancel()
	}()
	shutdownDone := make(chan struct{})
	stopShutdown := context.AfterFunc(a.bgCtx, func() {
		defer close(shutdownDone)
		cancel()
		_ = c.writeClose(CloseGoingAway, "agent shutting down")
	})

	ctx := ContextWithRequest(connCtx, rc)
	var herr error
	if h := a.wsHandler.Load(); h == nil {
		log.Error("no WebSocket handler defined")
		_ = c.Close(CloseInternalError, "no WebSocket handler defined")
	} else {
		herr = callWSHandler(ctx, *h, c)
	}
	var pe *panicError
	switch {
	case herr == nil:
		_ = c.Close(CloseNormal, "")
	case errors.As(herr, &pe):
		log.Error("websocket handler panicked", slog.Any("panic", pe.value), slog.String("stack", string(pe.stack)))
		_ = c.Close(CloseInternalError, "")
	case isClosed(c.readDone) || a.bgCtx.Err() != nil:
		// The handler failed because the connection was ending anyway.
		log.Info("websocket handler stopped: connection closing", slog.Any("err", herr))
		_ = c.Close(CloseNormal, "")
	default:
		log.Error("websocket handler failed", slog.Any("err", herr))
		_ = c.Close(CloseInternalError, "")
	}
	<-readerDone
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

// checkUpgrade validates an opening handshake and returns its key, or the
// status to refuse it with.
func checkUpgrade(r *http.Request) (key string, status int, err error) {
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", http.StatusUpgradeRequired, errors.New("WebSocket upgrade required")
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return "", http.StatusUpgradeRequired, fmt.Errorf("unsupported WebSocket version %q: want 13", v)
	}
	key = r.Header.Get("Sec-WebSocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", http.StatusBadRequest, errors.New("invalid Sec-WebSocket-Key")
	}
	return key, 0, nil
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

// acceptKey answers a Sec-WebSocket-Key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
