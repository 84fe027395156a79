package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
	"github.com/coder/websocket"
)

// WebSocket and streaming parity, end to end: real berth, real sandboxes,
// an agent built on app/ (this test binary, re-executed), and clients the
// way users have them: coder/websocket with SigV4 headers or a presigned
// URL, the AWS SDK for SSE, and the berth CLI.

// wsAgentArg makes this test binary run as the WebSocket test agent.
const wsAgentArg = "berth-ws-test-agent"

func init() {
	if len(os.Args) > 1 && os.Args[1] == wsAgentArg {
		os.Exit(runWSAgent())
	}
}

// agentOp is a command to the test agent: an invocation payload, or a JSON
// text message on its socket. Other messages are echoed.
type agentOp struct {
	Op      string `json:"op"`
	N       int    `json:"n"`
	Size    int    `json:"size"`
	DelayMS int    `json:"delay_ms"`
	Close   bool   `json:"close"`
}

type agentStatus struct {
	PID          int   `json:"pid"`
	SSECancelled int64 `json:"sse_cancelled"`
	WSCancelled  int64 `json:"ws_cancelled"`
}

type agentHello struct {
	PID              int               `json:"pid"`
	SessionID        string            `json:"session_id"`
	UserID           string            `json:"user_id"`
	Custom           map[string]string `json:"custom"`
	Tenant           string            `json:"tenant"`
	HasAuthorization bool              `json:"has_authorization"`
}

type toolError struct{}

func (toolError) Error() string     { return "tool exploded" }
func (toolError) ErrorType() string { return "ToolError" }

// runWSAgent is the test agent: ops over /invocations and /ws, and counters
// of handlers that saw their caller go away.
func runWSAgent() int {
	var sseCancelled, wsCancelled atomic.Int64
	// waitCancelled counts a handler whose ctx ends within 10s of its
	// caller going away.
	waitCancelled := func(ctx context.Context, n *atomic.Int64) {
		select {
		case <-ctx.Done():
			n.Add(1)
		case <-time.After(10 * time.Second):
		}
	}
	a := app.New(app.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
		var op agentOp
		json.Unmarshal(payload, &op)
		switch op.Op {
		case "status":
			return agentStatus{PID: os.Getpid(), SSECancelled: sseCancelled.Load(), WSCancelled: wsCancelled.Load()}, nil
		case "sse-forever":
			return app.Stream(func(send func(any) error) error {
				for i := 0; ; i++ {
					if err := send(map[string]int{"seq": i}); err != nil {
						waitCancelled(ctx, &sseCancelled)
						return err
					}
					time.Sleep(5 * time.Millisecond)
				}
			}), nil
		case "sse-fail":
			return app.Stream(func(send func(any) error) error {
				for i := range op.N {
					if err := send(map[string]int{"seq": i}); err != nil {
						return err
					}
				}
				return toolError{}
			}), nil
		}
		return nil, &app.HTTPError{Status: http.StatusBadRequest, Detail: "unknown op " + op.Op}
	})
	a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
		rc := app.RequestFrom(ctx)
		conn.SetReadLimit(64 << 20)
		err := conn.WriteJSON(ctx, agentHello{
			PID: os.Getpid(), SessionID: rc.SessionID, UserID: rc.UserID, Custom: rc.CustomHeaders(),
			Tenant: rc.Headers.Get("X-Tenant-Id"), HasAuthorization: rc.Headers.Get("Authorization") != "",
		})
		for err == nil {
			var typ app.MessageType
			var data []byte
			if typ, data, err = conn.Read(ctx); err != nil {
				break
			}
			var op agentOp
			if typ != app.MessageText || json.Unmarshal(data, &op) != nil || op.Op == "" {
				err = conn.Write(ctx, typ, data)
				continue
			}
			switch op.Op {
			case "stream":
				pad := strings.Repeat("x", op.Size)
				for i := 0; i < op.N && err == nil; i++ {
					err = conn.WriteJSON(ctx, map[string]any{"seq": i, "pad": pad})
					time.Sleep(time.Duration(op.DelayMS) * time.Millisecond)
				}
				if err == nil {
					err = conn.WriteJSON(ctx, map[string]int{"done": op.N})
				}
				if op.Close {
					return err
				}
			case "forever":
				for i := 0; err == nil; i++ {
					err = conn.WriteJSON(ctx, map[string]int{"seq": i})
					time.Sleep(2 * time.Millisecond)
				}
				waitCancelled(ctx, &wsCancelled)
				return err
			case "fail":
				return errors.New("handler failed on purpose")
			}
		}
		if ce := (*app.CloseError)(nil); errors.As(err, &ce) {
			return nil
		}
		return err
	})
	if err := a.Run(); err != nil {
		return 1
	}
	return 0
}

// withWSAgent adds runtimes that run the test agent: "wsagent" and
// "wsidle" (1s idle timeout).
func withWSAgent(backend string) func(*config.Config) {
	return func(c *config.Config) {
		exe, err := os.Executable()
		if err != nil {
			panic(err)
		}
		env := map[string]string{"BERTH_WIRE_TOKEN": c.Runtimes[0].Env["BERTH_WIRE_TOKEN"]}
		// The agent is this race-instrumented test binary, which may take
		// more than the env's 3 s to start on a loaded machine.
		c.StartTimeout = config.Duration(config.DefaultStartTimeout)
		c.Runtimes = append(c.Runtimes,
			config.Runtime{Name: "wsagent", Settings: registry.Settings{Command: []string{exe, wsAgentArg}, Sandbox: registry.Backend(backend), Env: env, HeaderAllowlist: []string{"X-Tenant-Id"}}},
			config.Runtime{Name: "wsidle", Settings: registry.Settings{Command: []string{exe, wsAgentArg}, Sandbox: registry.Backend(backend), Env: env, IdleTimeout: config.Duration(time.Second), MaxLifetime: config.Duration(time.Minute)}},
		)
	}
}

// wsPath is a runtime's WebSocket URL as the Python SDK builds it: the ARN
// escaped into one segment, the qualifier in the query.
func (e *env) wsPath(runtime string, query url.Values) string {
	arn := strings.ReplaceAll(url.PathEscape(e.arn(runtime)), ":", "%3A")
	if query == nil {
		query = url.Values{}
	}
	query.Set("qualifier", "DEFAULT")
	return "/runtimes/" + arn + "/ws?" + query.Encode()
}

func wsScheme(u string) string { return "ws" + strings.TrimPrefix(u, "http") }

var testCreds = aws.Credentials{AccessKeyID: "AKIDBERTHTEST", SecretAccessKey: "secret"}

// emptySHA256 is the payload hash of a GET.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// dialSigned opens a socket the way AgentCoreRuntimeClient.generate_ws_connection
// does: SigV4 in the headers, the session ID as a header.
func (e *env) dialSigned(t *testing.T, runtime, sid string, extra http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	u := e.d.URL() + e.wsPath(runtime, nil)
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v4.NewSigner().SignHTTP(t.Context(), testCreds, req, emptySHA256, "bedrock-agentcore", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	h := req.Header.Clone()
	h.Set(api.HeaderSessionID, sid)
	for k, v := range extra {
		h[k] = v
	}
	return dialWS(t, wsScheme(u), h)
}

// dialWS opens a socket closed when the test ends. Socket calls in these
// tests take the test's context, without a deadline: the library closes the
// connection when a call's context ends, so a time budget breaks a slow
// transfer on a loaded machine ("use of closed network connection" in the
// middle of an 8 MiB message). A hang is caught by go test's -timeout.
func dialWS(t *testing.T, u string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	c, resp, err := websocket.Dial(t.Context(), u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

func readHello(t *testing.T, ctx context.Context, c *websocket.Conn) agentHello {
	t.Helper()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read hello: %v", err)
	}
	var h agentHello
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatalf("hello %q: %v", data, err)
	}
	return h
}

func writeOp(t *testing.T, ctx context.Context, c *websocket.Conn, op agentOp) {
	t.Helper()
	b, _ := json.Marshal(op)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("send %s: %v", op.Op, err)
	}
}

func (e *env) status(sid string) agentStatus {
	e.t.Helper()
	out, err := e.invoke(context.Background(), "wsagent", sid, agentOp{Op: "status"})
	if err != nil {
		e.t.Fatalf("status: %v", err)
	}
	defer out.Response.Close()
	var st agentStatus
	if err := json.NewDecoder(out.Response).Decode(&st); err != nil {
		e.t.Fatalf("decode status: %v", err)
	}
	return st
}

// waitStatus polls the session's agent until cond holds.
func (e *env) waitStatus(sid string, what string, cond func(agentStatus) bool) agentStatus {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := e.status(sid)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: agent status still %+v", what, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWebSocketThroughBerth(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withWSAgent(backend))
		ctx := t.Context()
		sid := newSessionID()
		c, resp := e.dialSigned(t, "wsagent", sid, http.Header{
			"X-Amzn-Bedrock-Agentcore-Runtime-Custom-Tier": {"gold"},
			"X-Tenant-Id":    {"acme"},
			api.HeaderUserID: {"user-7"},
		})
		if got := resp.Header.Get(api.HeaderSessionID); got != sid {
			t.Fatalf("101 carries session %q, want %q", got, sid)
		}

		// Same session and context headers as invocations; never the
		// caller's credentials.
		hello := readHello(t, ctx, c)
		if hello.SessionID != sid || hello.UserID != "user-7" || hello.Tenant != "acme" ||
			hello.Custom["X-Amzn-Bedrock-Agentcore-Runtime-Custom-Tier"] != "gold" || hello.HasAuthorization {
			t.Fatalf("agent saw %+v", hello)
		}
		// The socket and the session's invocations reach one sandbox.
		if st := e.status(sid); st.PID != hello.PID {
			t.Fatalf("invocation reached pid %d, socket pid %d", st.PID, hello.PID)
		}

		t.Run("many messages both ways", func(t *testing.T) {
			const n = 3000
			msg := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1+(i*37)%4000) }
			start := time.Now()
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
					t.Fatalf("echo %d: got %d bytes, want %d", i, len(got), len(msg(i)))
				}
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d echoed messages in %v (%.0f round trips/s, pipelined)", backend, n, time.Since(start), n/time.Since(start).Seconds())
		})

		t.Run("large messages both ways", func(t *testing.T) {
			start := time.Now()
			const size, n = 8 << 20, 4
			for i := range n {
				data := make([]byte, size)
				rand.Read(data)
				if err := c.Write(ctx, websocket.MessageBinary, data); err != nil {
					t.Fatal(err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, data) {
					t.Fatalf("message %d: %v, %d bytes, equal %v", i, err, len(got), bytes.Equal(got, data))
				}
			}
			mb := float64(2*n*size) / (1 << 20)
			t.Logf("%s: %.0f MiB through berth in %v (%.0f MiB/s)", backend, mb, time.Since(start), mb/time.Since(start).Seconds())
		})

		t.Run("long stream from the agent", func(t *testing.T) {
			const n = 20000
			start := time.Now()
			writeOp(t, ctx, c, agentOp{Op: "stream", N: n, Size: 64})
			for i := range n {
				_, data, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				var ev struct{ Seq int }
				if err := json.Unmarshal(data, &ev); err != nil || ev.Seq != i {
					t.Fatalf("message %d = %.40q", i, data)
				}
			}
			if _, data, err := c.Read(ctx); err != nil || string(data) != fmt.Sprintf(`{"done":%d}`, n) {
				t.Fatalf("end of stream: %q %v", data, err)
			}
			t.Logf("%s: %d streamed messages in %v (%.0f msgs/s)", backend, n, time.Since(start), n/time.Since(start).Seconds())
		})

		t.Run("frames arrive as sent", func(t *testing.T) {
			writeOp(t, ctx, c, agentOp{Op: "stream", N: 5, Size: 8, DelayMS: 150})
			start := time.Now()
			var arrivals []time.Duration
			for range 6 {
				if _, _, err := c.Read(ctx); err != nil {
					t.Fatal(err)
				}
				arrivals = append(arrivals, time.Since(start))
			}
			if spread := arrivals[4] - arrivals[0]; spread < 400*time.Millisecond {
				t.Fatalf("frames arrived together (%v): buffered, not relayed", arrivals)
			}
		})

		if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Fatalf("closing handshake through berth: %v", err)
		}
		// The session outlives its socket, like after an invocation.
		if st := e.status(sid); st.PID != hello.PID {
			t.Fatalf("session restarted after the socket closed: pid %d, was %d", st.PID, hello.PID)
		}
	})
}

// A presigned URL (AgentCoreRuntimeClient.generate_presigned_url) carries the
// credentials, the session ID and custom headers in its query, for clients
// that cannot set headers.
func TestWebSocketPresignedURL(t *testing.T) {
	e := newEnv(t, withWSAgent("process"))
	ctx := t.Context()
	sid := newSessionID()
	q := url.Values{}
	q.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", sid)
	q.Set("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tier", "silver")
	q.Set("X-Amz-Expires", "300")
	req, err := http.NewRequest(http.MethodGet, e.d.URL()+e.wsPath("wsagent", q), nil)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := v4.NewSigner().PresignHTTP(ctx, testCreds, req, emptySHA256, "bedrock-agentcore", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(signed, "X-Amz-Signature=") {
		t.Fatalf("not presigned: %s", signed)
	}
	c, resp := dialWS(t, wsScheme(signed), nil)
	hello := readHello(t, ctx, c)
	if hello.SessionID != sid || resp.Header.Get(api.HeaderSessionID) != sid {
		t.Fatalf("agent saw session %q, 101 said %q; want %q", hello.SessionID, resp.Header.Get(api.HeaderSessionID), sid)
	}
	if hello.Custom["X-Amzn-Bedrock-Agentcore-Runtime-Custom-Tier"] != "silver" {
		t.Fatalf("custom headers from the query: %v", hello.Custom)
	}
	c.Close(websocket.StatusNormalClosure, "")

	// Without any session ID berth makes one, as for invocations.
	c, resp = dialWS(t, wsScheme(e.d.URL()+e.wsPath("wsagent", nil)), nil)
	hello = readHello(t, ctx, c)
	if !api.ValidSessionID(hello.SessionID) || resp.Header.Get(api.HeaderSessionID) != hello.SessionID {
		t.Fatalf("generated session %q, 101 said %q", hello.SessionID, resp.Header.Get(api.HeaderSessionID))
	}
}

func TestWebSocketStopRuntimeSessionClosesSocket(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withWSAgent(backend))
		ctx := t.Context()
		sid := newSessionID()
		c, _ := e.dialSigned(t, "wsagent", sid, nil)
		readHello(t, ctx, c)
		writeOp(t, ctx, c, agentOp{Op: "forever"})
		for range 10 {
			if _, _, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.client.StopRuntimeSession(ctx, &bedrockagentcore.StopRuntimeSessionInput{
			AgentRuntimeArn: aws.String(e.arn("wsagent")), RuntimeSessionId: aws.String(sid)}); err != nil {
			t.Fatalf("stop: %v", err)
		}
		start := time.Now()
		var err error
		for err == nil {
			_, _, err = c.Read(ctx)
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !strings.Contains(ce.Reason, "stopped") {
			t.Fatalf("socket ended with %v, want close 1001 naming the stop", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("socket closed %v after the stop", d)
		}
		e.waitAgents(0)
	})
}

func TestWebSocketHoldsSessionPastIdleTimeout(t *testing.T) {
	e := newEnv(t, withWSAgent("process"))
	ctx := t.Context()
	sid := newSessionID()
	c, _ := e.dialSigned(t, "wsidle", sid, nil)
	hello := readHello(t, ctx, c)
	// The idle timeout is 1 s: the open socket holds the session past twice
	// that, by the session's own clock.
	waitLive(t, e, sid, "the session to stay live with its socket open, 2 s after its last activity", func(in session.Info) bool {
		return in.InFlight == 1 && time.Since(in.LastActiveAt) > 2*time.Second
	})
	if err := c.Write(ctx, websocket.MessageText, []byte("still there?")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "still there?" {
		t.Fatalf("after the idle timeout: %q %v", data, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	// Closed, the session idles out like any other.
	deadline := time.Now().Add(10 * time.Second)
	for liveRecordOK(e, sid) {
		if time.Now().After(deadline) {
			t.Fatalf("session %s (pid %d) still live 10s after its socket closed", sid, hello.PID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClientGoneCancelsAgentCall(t *testing.T) {
	e := newEnv(t, withWSAgent("process"))
	ctx := t.Context()

	t.Run("websocket", func(t *testing.T) {
		sid := newSessionID()
		c, _ := e.dialSigned(t, "wsagent", sid, nil)
		readHello(t, ctx, c)
		writeOp(t, ctx, c, agentOp{Op: "forever"})
		for range 50 {
			if _, _, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			}
		}
		c.CloseNow() // gone, without a close frame
		e.waitStatus(sid, "the agent's socket handler after its client vanished", func(st agentStatus) bool { return st.WSCancelled == 1 })
	})

	t.Run("sse", func(t *testing.T) {
		sid := newSessionID()
		callCtx, hangUp := context.WithCancel(ctx)
		out, err := e.invoke(callCtx, "wsagent", sid, agentOp{Op: "sse-forever"})
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out.Response)
		for events := 0; events < 20 && sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events++
			}
		}
		hangUp()
		out.Response.Close()
		e.waitStatus(sid, "the agent's stream after its client vanished", func(st agentStatus) bool { return st.SSECancelled == 1 })
	})
}

// A stream that fails midway ends as the Python SDK ends it: the events so
// far, then one error event, then a clean end of the body.
func TestSSEErrorMidStreamRelayedIntact(t *testing.T) {
	e := newEnv(t, withWSAgent("process"))
	out, err := e.invoke(context.Background(), "wsagent", newSessionID(), agentOp{Op: "sse-fail", N: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Response.Close()
	body, err := io.ReadAll(out.Response)
	if err != nil {
		t.Fatalf("stream did not end cleanly: %v (read %q)", err, body)
	}
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	want := []string{`{"seq":0}`, `{"seq":1}`, `{"seq":2}`}
	if len(events) != 4 || !slices.Equal(trimData(events[:3]), want) {
		t.Fatalf("events = %q", events)
	}
	var last map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(events[3], "data: ")), &last); err != nil {
		t.Fatalf("error event %q: %v", events[3], err)
	}
	if last["error"] != "tool exploded" || last["error_type"] != "ToolError" || last["message"] != "An error occurred during streaming" || len(last) != 3 {
		t.Fatalf("error event = %v", last)
	}
}

func trimData(events []string) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = strings.TrimPrefix(ev, "data: ")
	}
	return out
}

func TestWebSocketErrors(t *testing.T) {
	e := newEnv(t, withWSAgent("process"))
	ctx := t.Context()

	refused := func(t *testing.T, u string, h http.Header, wantType string, wantStatus int) {
		t.Helper()
		_, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			t.Fatal("upgrade accepted")
		}
		if resp == nil || resp.StatusCode != wantStatus || resp.Header.Get(api.HeaderErrorType) != wantType {
			t.Fatalf("got %v, want %d %s", resp, wantStatus, wantType)
		}
	}
	base := wsScheme(e.d.URL())
	t.Run("unknown runtime", func(t *testing.T) {
		refused(t, base+"/runtimes/nope-0123456789/ws", nil, "ResourceNotFoundException", 404)
	})
	t.Run("unknown qualifier", func(t *testing.T) {
		refused(t, base+strings.Replace(e.wsPath("wsagent", nil), "DEFAULT", "nope", 1), nil, "ResourceNotFoundException", 404)
	})
	t.Run("short session id", func(t *testing.T) {
		refused(t, base+e.wsPath("wsagent", nil), http.Header{api.HeaderSessionID: {"too-short"}}, "ValidationException", 400)
	})
	t.Run("agent without /ws", func(t *testing.T) {
		refused(t, base+e.wsPath("echo", nil), nil, "RuntimeClientError", 424)
	})
	t.Run("not an upgrade", func(t *testing.T) {
		resp, err := http.Get(e.d.URL() + e.wsPath("wsagent", nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get(api.HeaderErrorType) != "ValidationException" {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get(api.HeaderErrorType))
		}
	})
	t.Run("agent handler fails", func(t *testing.T) {
		c, _ := dialWS(t, base+e.wsPath("wsagent", nil), nil)
		readHello(t, ctx, c)
		writeOp(t, ctx, c, agentOp{Op: "fail"})
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusInternalError {
			t.Fatalf("read = %v, want the agent's close 1011", err)
		}
	})
}

// buildBerth compiles the berth CLI.
func buildBerth(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "berth")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/berth").CombinedOutput(); err != nil {
		t.Fatalf("go build berth: %v\n%s", err, out)
	}
	return bin
}

func TestInvokeCLIWebSocket(t *testing.T) {
	e := newEnv(t, withWSAgent("process"))
	bin := buildBerth(t)

	cmd := exec.CommandContext(t.Context(), bin, "invoke", "--ws", "--endpoint", e.d.URL(), "--runtime", "wsagent",
		"-H", "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tier: bronze",
		`{"op":"stream","n":4,"size":3,"delay_ms":200,"close":true}`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var lines []string
	var arrivals []time.Duration
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		arrivals = append(arrivals, time.Since(start))
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("berth invoke --ws: %v\n%s", err, stderr.String())
	}
	// The hello, four events, the end marker: printed as they came.
	if len(lines) != 6 || !strings.HasPrefix(lines[0], `{"pid":`) || lines[1] != `{"pad":"xxx","seq":0}` || lines[5] != `{"done":4}` {
		t.Fatalf("output:\n%s", strings.Join(lines, "\n"))
	}
	var hello agentHello
	json.Unmarshal([]byte(lines[0]), &hello)
	sid, _ := strings.CutPrefix(strings.TrimSpace(stderr.String()), "session: ")
	if hello.SessionID != sid || hello.Custom["X-Amzn-Bedrock-Agentcore-Runtime-Custom-Tier"] != "bronze" {
		t.Fatalf("agent saw %+v; stderr %q", hello, stderr.String())
	}
	if arrivals[4]-arrivals[1] < 450*time.Millisecond {
		t.Fatalf("lines arrived together (%v): buffered, not printed as they came", arrivals)
	}

	// A refused upgrade prints the AgentCore error and fails.
	out, err := exec.Command(bin, "invoke", "--ws", "--endpoint", e.d.URL(), "--runtime", "echo", `{}`).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "RuntimeClientError (424)") {
		t.Fatalf("invoke --ws on an agent without /ws: %v\n%s", err, out)
	}
}

// wsTimeout bounds a WebSocket exchange so a hang fails the test instead
// of the whole run.
func wsTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
