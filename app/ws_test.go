package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
	"github.com/coder/websocket"
)

// The app's WebSocket server is tested against coder/websocket as the
// client, and against a raw TCP client for the protocol violations a
// well-behaved library never sends.

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// dial opens a WebSocket to the app at base, closed when the test ends.
//
// Socket calls in these tests take the test's context, without a deadline:
// the library closes the connection when a call's context ends, so a time
// budget would break a slow transfer on a loaded machine. A hang is caught
// by go test's -timeout, with every goroutine's stack.
func dial(t *testing.T, base string, h http.Header) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(t.Context(), wsURL(base), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// echo is a handler that greets with the request context, then sends every
// message back with its type. It reports how it ended on done.
func echo(done chan<- error) app.WebSocketHandler {
	return func(ctx context.Context, conn *app.WSConn) error {
		rc := app.RequestFrom(ctx)
		err := conn.WriteJSON(ctx, map[string]any{
			"session_id": rc.SessionID, "request_id": rc.RequestID, "custom": rc.CustomHeaders(),
		})
		for err == nil {
			var typ app.MessageType
			var data []byte
			if typ, data, err = conn.Read(ctx); err == nil {
				err = conn.Write(ctx, typ, data)
			}
		}
		if done != nil {
			done <- err
		}
		return nil
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestWebSocketEcho(t *testing.T) {
	done := make(chan error, 1)
	a := app.New(quiet())
	a.WebSocket(echo(done))
	sid := "ws-echo-session-" + strings.Repeat("x", 20)
	h := http.Header{}
	h.Set(api.HeaderSessionID, sid)
	h.Set(api.HeaderCustomPrefix+"Tier", "gold")
	c := dial(t, serve(t, a), h)
	c.SetReadLimit(64 << 20)
	ctx := t.Context()

	typ, hello, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var greet struct {
		SessionID string            `json:"session_id"`
		RequestID string            `json:"request_id"`
		Custom    map[string]string `json:"custom"`
	}
	if err := json.Unmarshal(hello, &greet); err != nil || typ != websocket.MessageText {
		t.Fatalf("hello %v %q: %v", typ, hello, err)
	}
	if greet.SessionID != sid || greet.RequestID == "" || greet.Custom[api.HeaderCustomPrefix+"Tier"] != "gold" {
		t.Fatalf("request context = %+v", greet)
	}

	roundTrip := func(name string, typ websocket.MessageType, data []byte) {
		t.Helper()
		if err := c.Write(ctx, typ, data); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("%s: read: %v", name, err)
		}
		if gotTyp != typ || !bytes.Equal(got, data) {
			t.Fatalf("%s: echoed %v of %d bytes, want %v of %d bytes", name, gotTyp, len(got), typ, len(data))
		}
	}
	roundTrip("text", websocket.MessageText, []byte("héllo, wörld"))
	roundTrip("empty text", websocket.MessageText, []byte{})
	roundTrip("binary", websocket.MessageBinary, randomBytes(t, 300))
	roundTrip("16-bit length", websocket.MessageBinary, randomBytes(t, 70_000))
	roundTrip("64-bit length, 8 MiB", websocket.MessageBinary, randomBytes(t, 8<<20))

	// Fragmented: every Write of the client's writer is one frame.
	var whole []byte
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		part := []byte(fmt.Sprintf("fragment %02d ✓;", i))
		whole = append(whole, part...)
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("fragmented message echoed as %q (%v), want %q", got, err, whole)
	}

	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-done:
		var ce *app.CloseError
		if !errors.As(err, &ce) || ce.Code != app.CloseNormal || ce.Reason != "bye" {
			t.Fatalf("handler's Read ended with %v, want the client's close 1000 bye", err)
		}
	case <-ctx.Done():
		t.Fatal("handler never saw the close")
	}
}

func TestWebSocketManyMessagesBothWays(t *testing.T) {
	const n = 5000
	a := app.New(quiet())
	a.WebSocket(echo(nil))
	c := dial(t, serve(t, a), nil)
	ctx := t.Context()
	if _, _, err := c.Read(ctx); err != nil { // hello
		t.Fatal(err)
	}
	msg := func(i int) []byte {
		return bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%2000)
	}
	// The client writes while it reads: both directions are in flight at
	// once, and the app's reader pushes back when the handler lags.
	werr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, msg(i)); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	for i := range n {
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(got, msg(i)) {
			t.Fatalf("message %d: got %d bytes %.10q, want %d bytes", i, len(got), got, len(msg(i)))
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

func TestWebSocketServerStream(t *testing.T) {
	const n = 20000
	a := app.New(quiet())
	a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
		for i := range n {
			if err := conn.WriteJSON(ctx, map[string]int{"seq": i}); err != nil {
				return err
			}
		}
		return nil
	})
	c := dial(t, serve(t, a), nil)
	ctx := t.Context()
	for i := range n {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		var ev struct{ Seq int }
		if err := json.Unmarshal(data, &ev); err != nil || ev.Seq != i {
			t.Fatalf("message %d = %q", i, data)
		}
	}
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Fatalf("after the stream: %v, want close 1000", err)
	}
}

func TestWebSocketCloseCodes(t *testing.T) {
	tests := []struct {
		name    string
		handler app.WebSocketHandler // nil: none registered
		code    websocket.StatusCode
		reason  string
	}{
		{"no handler", nil, websocket.StatusInternalError, "no WebSocket handler defined"},
		{"handler returns nil", func(context.Context, *app.WSConn) error { return nil }, websocket.StatusNormalClosure, ""},
		{"handler fails", func(context.Context, *app.WSConn) error { return errors.New("boom") }, websocket.StatusInternalError, ""},
		{"handler panics", func(context.Context, *app.WSConn) error { panic("kaboom") }, websocket.StatusInternalError, ""},
		{"handler closes", func(ctx context.Context, c *app.WSConn) error {
			return c.Close(4001, strings.Repeat("é", 100)) // cut to 123 bytes on a rune boundary
		}, 4001, strings.Repeat("é", 61)},
		{"handler tries a reserved code", func(ctx context.Context, c *app.WSConn) error {
			if err := c.Close(1006, ""); err == nil {
				return c.Close(4003, "1006 accepted")
			}
			return c.Close(4002, "refused")
		}, 4002, "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := app.New(quiet())
			if tc.handler != nil {
				a.WebSocket(tc.handler)
			}
			base := serve(t, a)
			c := dial(t, base, nil)
			_, _, err := c.Read(t.Context())
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code || ce.Reason != tc.reason {
				t.Fatalf("read = %v, want close %d %q", err, tc.code, tc.reason)
			}
			// The app survives and still answers.
			if resp := post(t, base, `{}`, nil); resp.status != http.StatusInternalServerError {
				t.Fatalf("after the socket: invocation answered %d", resp.status)
			}
		})
	}
}

func TestWebSocketClientGoneCancelsHandler(t *testing.T) {
	for _, mode := range []string{"writing", "reading"} {
		t.Run(mode, func(t *testing.T) {
			ended := make(chan error, 1)
			a := app.New(quiet())
			a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
				var err error
				for err == nil {
					if mode == "writing" {
						err = conn.Write(ctx, app.MessageText, []byte("tick"))
					} else {
						_, _, err = conn.Read(ctx)
					}
				}
				select {
				case <-ctx.Done():
					ended <- err
				case <-time.After(5 * time.Second):
					ended <- fmt.Errorf("ctx still live after %w", err)
				}
				return err
			})
			c := dial(t, serve(t, a), nil)
			ctx := t.Context()
			if mode == "writing" {
				for range 100 {
					if _, _, err := c.Read(ctx); err != nil {
						t.Fatal(err)
					}
				}
			} else if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			c.CloseNow() // no close frame: the peer just goes away
			select {
			case err := <-ended:
				var ce *app.CloseError
				if err == nil || errors.As(err, &ce) || strings.HasPrefix(err.Error(), "ctx still live") {
					t.Fatalf("handler ended with %v, want a broken-connection error and a cancelled ctx", err)
				}
			case <-ctx.Done():
				t.Fatal("handler still running after the client went away")
			}
		})
	}
}

func TestWebSocketPingPong(t *testing.T) {
	a := app.New(quiet())
	a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
		_, _, err := conn.Read(ctx) // idle: the reader answers pings on its own
		return err
	})
	c := dial(t, serve(t, a), nil)
	ctx := t.Context()
	go c.Read(ctx) // coder/websocket needs a reader to see pongs
	for i := range 3 {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
}

func TestWebSocketReadLimit(t *testing.T) {
	a := app.New(quiet())
	a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
		conn.SetReadLimit(1024)
		if err := conn.Write(ctx, app.MessageText, []byte("ready")); err != nil {
			return err
		}
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				return err
			}
		}
	})
	c := dial(t, serve(t, a), nil)
	ctx := t.Context()
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1025)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("read = %v, want close 1009", err)
	}
}

func TestWebSocketShutdownClosesWithGoingAway(t *testing.T) {
	a := app.New(quiet())
	a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
		<-ctx.Done()
		return ctx.Err()
	})
	ln := listen(t)
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	c := dial(t, "http://"+ln.Addr().String(), nil)
	stop()
	_, _, err := c.Read(t.Context())
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("read = %v, want close 1001", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the socket closed")
	}
}

func TestWebSocketHandshakeRefused(t *testing.T) {
	a := app.New(quiet())
	a.WebSocket(echo(nil))
	base := serve(t, a)
	key := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"plain GET", nil, http.StatusUpgradeRequired},
		{"old version", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": key}, http.StatusUpgradeRequired},
		{"bad key", map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "short"}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/ws", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || errorField(t, body) == "" {
				t.Fatalf("got %d %s, want %d with an error body", resp.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusUpgradeRequired && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("426 without Sec-WebSocket-Version: 13")
			}
		})
	}
}

// rawConn is a hand-driven client for frames coder/websocket never sends.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, base string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	key := base64.StdEncoding.EncodeToString(randomBytes(t, 16))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") == "" {
		t.Fatalf("handshake answered %d %v", resp.StatusCode, resp.Header)
	}
	return &rawConn{t: t, conn: conn, br: br}
}

// frame writes one frame; masked frames get a random key.
func (r *rawConn) frame(b0 byte, masked bool, payload []byte) {
	r.t.Helper()
	out := []byte{b0}
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, mbit|byte(n))
	default:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	}
	p := bytes.Clone(payload)
	if masked {
		key := randomBytes(r.t, 4)
		out = append(out, key...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	if _, err := r.conn.Write(append(out, p...)); err != nil {
		r.t.Fatal(err)
	}
}

// closeCode reads frames until the server's close frame and returns its code.
func (r *rawConn) closeCode() int {
	r.t.Helper()
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
			r.t.Fatalf("no close frame: %v", err)
		}
		if hdr[1]&0x80 != 0 {
			r.t.Fatal("server frame is masked")
		}
		n := int(hdr[1] & 0x7f)
		if n == 126 {
			var ext [2]byte
			io.ReadFull(r.br, ext[:])
			n = int(binary.BigEndian.Uint16(ext[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r.br, p); err != nil {
			r.t.Fatal(err)
		}
		if hdr[0]&0x0f == 0x8 {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

func TestWebSocketProtocolViolations(t *testing.T) {
	closePayload := func(code uint16) []byte { return binary.BigEndian.AppendUint16(nil, code) }
	tests := []struct {
		name  string
		send  func(r *rawConn)
		close int
	}{
		{"unmasked frame", func(r *rawConn) { r.frame(0x81, false, []byte("hi")) }, 1002},
		{"reserved bit", func(r *rawConn) { r.frame(0xc1, true, []byte("hi")) }, 1002},
		{"unknown opcode", func(r *rawConn) { r.frame(0x83, true, nil) }, 1002},
		{"continuation first", func(r *rawConn) { r.frame(0x80, true, []byte("x")) }, 1002},
		{"new message mid-fragment", func(r *rawConn) {
			r.frame(0x01, true, []byte("a"))
			r.frame(0x81, true, []byte("b"))
		}, 1002},
		{"fragmented ping", func(r *rawConn) { r.frame(0x09, true, nil) }, 1002},
		{"oversize control frame", func(r *rawConn) { r.frame(0x89, true, make([]byte, 126)) }, 1002},
		{"invalid UTF-8 text", func(r *rawConn) { r.frame(0x81, true, []byte{0xff, 0xfe}) }, 1007},
		{"invalid UTF-8 across fragments", func(r *rawConn) {
			r.frame(0x01, true, []byte{0xe2, 0x82})
			r.frame(0x80, true, []byte{0x28})
		}, 1007},
		{"1-byte close", func(r *rawConn) { r.frame(0x88, true, []byte{3}) }, 1002},
		{"close with reserved code 1005", func(r *rawConn) { r.frame(0x88, true, closePayload(1005)) }, 1002},
		{"close with code 999", func(r *rawConn) { r.frame(0x88, true, closePayload(999)) }, 1002},
		{"close without code", func(r *rawConn) { r.frame(0x88, true, nil) }, 1005},
		{"close 4000 echoed", func(r *rawConn) { r.frame(0x88, true, closePayload(4000)) }, 4000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := app.New(quiet())
			a.WebSocket(echo(nil))
			r := dialRaw(t, serve(t, a))
			tc.send(r)
			if got := r.closeCode(); got != tc.close {
				t.Fatalf("server closed with %d, want %d", got, tc.close)
			}
			// After its close frame the server ends the TCP connection.
			if _, err := io.ReadAll(r.br); err != nil {
				t.Fatalf("connection not closed cleanly: %v", err)
			}
		})
	}
}

func TestWebSocketInterleavedControlFrames(t *testing.T) {
	a := app.New(quiet())
	a.WebSocket(echo(nil))
	r := dialRaw(t, serve(t, a))
	// A ping between two fragments is answered, and the message still
	// arrives whole.
	r.frame(0x01, true, []byte("hel"))
	r.frame(0x89, true, []byte("p1"))
	r.frame(0x80, true, []byte("lo"))
	var got []string
	for len(got) < 3 {
		var hdr [2]byte
		if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, hdr[1]&0x7f)
		io.ReadFull(r.br, p)
		got = append(got, fmt.Sprintf("%x:%s", hdr[0], p))
	}
	// The hello may go out before or after the pong, but the pong comes
	// before the echo: the ping was answered mid-message.
	pong, echoed := slices.Index(got, "8a:p1"), slices.Index(got, "81:hello")
	if pong < 0 || echoed < pong || !slices.ContainsFunc(got, func(f string) bool { return strings.HasPrefix(f, "81:{") }) {
		t.Fatalf("frames = %q", got)
	}
}
