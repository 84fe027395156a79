package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth/authtest"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

var (
	mcpAgentOnce sync.Once
	mcpAgentBin  string
	mcpAgentErr  error
)

// buildMCPAgent builds examples/mcp, the Go SDK MCP server, once.
func buildMCPAgent(t *testing.T) string {
	t.Helper()
	mcpAgentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-mcp-")
		if err != nil {
			mcpAgentErr = err
			return
		}
		mcpAgentBin = filepath.Join(dir, "mcp-agent")
		if out, err := exec.Command("go", "build", "-o", mcpAgentBin, "../../examples/mcp").CombinedOutput(); err != nil {
			mcpAgentErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if mcpAgentErr != nil {
		t.Fatal(mcpAgentErr)
	}
	return mcpAgentBin
}

// mcpEnv is a real berth on loopback serving examples/mcp under several
// MCP runtimes.
type mcpEnv struct {
	d    *daemon.Daemon
	gate string // the agents' MCP_GATE_DIR
	arns map[string]string
}

func newMCPEnv(t *testing.T, backend string, mutate ...func(*config.Config)) *mcpEnv {
	t.Helper()
	agent := buildMCPAgent(t)
	e := &mcpEnv{gate: t.TempDir(), arns: map[string]string{}}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.StartTimeout = config.Duration(10 * time.Second)
	cfg.PingInterval = config.Duration(100 * time.Millisecond)
	cfg.StopGrace = config.Duration(500 * time.Millisecond)
	rt := func(name string, env map[string]string, pol registry.SessionPolicy) config.Runtime {
		env["MCP_GATE_DIR"] = e.gate
		return config.Runtime{Name: name, Settings: registry.Settings{Command: []string{agent}, Protocol: registry.ProtocolMCP,
			Sandbox: registry.Backend(backend), Env: env, Sessions: pol}}
	}
	cfg.Runtimes = []config.Runtime{
		rt("mcpstateful", map[string]string{}, registry.SessionPolicy{}),
		rt("mcpstateless", map[string]string{"MCP_STATELESS": "1"}, registry.SessionPolicy{}),
		rt("mcpreject", map[string]string{"MCP_STATELESS": "1"}, registry.SessionPolicy{Concurrency: registry.ConcurrencyReject}),
		rt("mcpone", map[string]string{"MCP_STATELESS": "1"}, registry.SessionPolicy{MaxSessions: 1}),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start berth: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("close berth: %v", err)
		}
	})
	e.d = d
	for _, r := range d.Runtimes() {
		e.arns[r.Name] = r.ARN
	}
	return e
}

// url is the one thing an MCP client is told: the runtime's invocation URL.
func (e *mcpEnv) url(runtime string) string { return api.InvocationURL(e.d.URL(), e.arns[runtime]) }

// connect opens an MCP client session through berth with the Go SDK. An
// empty version is the SDK's default (2026-07-28, server/discover).
func (e *mcpEnv) connect(t *testing.T, runtime, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "berth-test", Version: "1"}, opts)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.url(runtime), MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect to %s through berth: %v", runtime, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func callCount(t *testing.T, cs *mcp.ClientSession) (n int64, instance string) {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "count"})
	if err != nil || res.IsError {
		t.Fatalf("count: %v %+v", err, res)
	}
	var out struct {
		Count int64  `json:"count"`
		PID   string `json:"instance"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("count's output %s: %v", b, err)
	}
	return out.Count, out.PID
}

// The Go SDK's client drives the Go SDK's server through berth: the
// handshake, tools/list, tools/call, a streamed tool, and one sandbox per
// MCP session, stateful (the server mints the ID) or stateless (berth
// does), on the SDK's newest protocol and on 2025-11-25's initialize.
func TestMCPGoSDK(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newMCPEnv(t, backend)
		for _, tc := range []struct{ runtime, version string }{
			{"mcpstateful", "2025-11-25"},
			{"mcpstateful", ""},
			{"mcpstateless", "2025-11-25"},
			{"mcpstateless", ""},
		} {
			t.Run(tc.runtime+"/"+cmpOr(tc.version, "default"), func(t *testing.T) {
				a := e.connect(t, tc.runtime, tc.version, nil)
				if a.ID() == "" {
					t.Fatal("berth returned no Mcp-Session-Id")
				}
				tools, err := a.ListTools(t.Context(), nil)
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
				var names []string
				for _, tl := range tools.Tools {
					names = append(names, tl.Name)
				}
				if got := strings.Join(names, ","); !strings.Contains(got, "add") || !strings.Contains(got, "countdown") {
					t.Fatalf("tools/list: %s", got)
				}
				res, err := a.CallTool(t.Context(), &mcp.CallToolParams{Name: "add", Arguments: map[string]int{"a": 2, "b": 40}})
				if err != nil || res.IsError {
					t.Fatalf("tools/call add: %v %+v", err, res)
				}
				if b, _ := json.Marshal(res.StructuredContent); string(b) != `{"sum":42}` {
					t.Fatalf("add answered %s", b)
				}

				// Two clients, two sessions, two sandboxes: state does not leak.
				b := e.connect(t, tc.runtime, tc.version, nil)
				if b.ID() == a.ID() {
					t.Fatalf("two clients share Mcp-Session-Id %s", a.ID())
				}
				n1, pidA := callCount(t, a)
				n2, _ := callCount(t, a)
				m1, pidB := callCount(t, b)
				if n1 != 1 || n2 != 2 || m1 != 1 || pidA == pidB {
					t.Fatalf("counts a=%d,%d b=%d, instances a=%s b=%s: sessions not isolated", n1, n2, m1, pidA, pidB)
				}
				if n3, pid := callCount(t, a); n3 != 3 || pid != pidA {
					t.Fatalf("a's third count %d in instance %s, want 3 in %s: not sticky", n3, pid, pidA)
				}
			})
		}
	})
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// A tool's progress notifications reach the client while the call runs:
// the server waits after each one until the client has seen it.
func TestMCPStreamingTool(t *testing.T) {
	e := newMCPEnv(t, "process")
	for _, rt := range []string{"mcpstateful", "mcpstateless"} {
		t.Run(rt, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			cs := e.connect(t, rt, "2025-11-25", &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
					mu.Lock()
					seen = append(seen, req.Params.Message)
					mu.Unlock()
					// Open the gate for the next step only now.
					os.WriteFile(filepath.Join(e.gate, fmt.Sprint(req.Params.Progress)), nil, 0o644)
				},
			})
			p := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]int{"n": 3}}
			p.SetProgressToken("countdown-" + rt)
			res, err := cs.CallTool(t.Context(), p)
			if err != nil || res.IsError {
				t.Fatalf("countdown: %v %+v", err, res)
			}
			if txt := res.Content[0].(*mcp.TextContent).Text; txt != "liftoff" {
				t.Fatalf("countdown answered %q", txt)
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(seen, "|") != "step 1 of 3|step 2 of 3|step 3 of 3" {
				t.Fatalf("progress seen: %q", seen)
			}
			for i := 1; i <= 3; i++ {
				os.Remove(filepath.Join(e.gate, fmt.Sprint(i)))
			}
		})
	}
}

// rpcCode is the JSON-RPC error code err carries.
func rpcCode(err error) int64 {
	var werr *jsonrpc.Error
	if errors.As(err, &werr) {
		return werr.Code
	}
	return 0
}

// A server that dies mid-call: the client gets a JSON-RPC error for its
// call (AgentCore's runtime client error, -32010), not a hang or a torn
// stream, and berth ends the session.
func TestMCPServerCrashesMidCall(t *testing.T) {
	e := newMCPEnv(t, "process")
	cs := e.connect(t, "mcpstateless", "2025-11-25", &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {},
	})
	p := &mcp.CallToolParams{Name: "crash"}
	p.SetProgressToken("crash")
	_, err := cs.CallTool(t.Context(), p)
	if code := rpcCode(err); code != -32010 {
		t.Fatalf("crash mid-call: %v (code %d), want JSON-RPC -32010", err, code)
	}
	// The session died with its server; once berth has seen it end, the
	// same Mcp-Session-Id starts a new sandbox (the stateless server does
	// not care).
	deadline := time.Now().Add(10 * time.Second)
	for live := true; live; {
		live = false
		for _, s := range e.d.Sessions().Live() {
			live = live || (s.Key.SessionID == cs.ID() && s.State != session.StateTerminated)
		}
		if time.Now().After(deadline) {
			t.Fatal("berth did not end the crashed session")
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
	if n, _ := callCount(t, cs); n != 1 {
		t.Fatalf("after the crash count = %d, want 1 (a new sandbox)", n)
	}
}

// rawMCP posts one JSON-RPC request to a runtime as an MCP client would.
func (e *mcpEnv) rawMCP(t *testing.T, runtime, query string, h http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := e.post(runtime, query, h, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (e *mcpEnv) post(runtime, query string, h http.Header, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, e.url(runtime)+query, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

type rpcAnswer struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Type string `json:"type"`
		} `json:"data"`
	} `json:"error"`
}

// berth's own errors on an MCP runtime are JSON-RPC errors for the
// request's id with AgentCore's codes, HTTP 200 but for the 406.
func TestMCPErrorCodes(t *testing.T) {
	e := newMCPEnv(t, "process")
	list := `{"jsonrpc":"2.0","id":"L1","method":"tools/list"}`
	check := func(t *testing.T, resp *http.Response, body []byte, status, code int, id, typ string) {
		t.Helper()
		var a rpcAnswer
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			// An answer the agent began: berth's error is its last event.
			lines := strings.Split(strings.TrimSpace(string(body)), "\n")
			body = []byte(strings.TrimPrefix(lines[len(lines)-1], "data: "))
		}
		if err := json.Unmarshal(body, &a); err != nil || a.Error == nil {
			t.Fatalf("%d %s: not a JSON-RPC error (%v)", resp.StatusCode, body, err)
		}
		if resp.StatusCode != status || a.Error.Code != code || string(a.ID) != id || a.JSONRPC != "2.0" || a.Error.Data.Type != typ {
			t.Fatalf("got %d %s, want %d code %d id %s type %s", resp.StatusCode, body, status, code, id, typ)
		}
		if resp.Header.Get("Mcp-Session-Id") == "" && code != -32006 {
			t.Errorf("no Mcp-Session-Id on the error answer")
		}
	}
	t.Run("406", func(t *testing.T) {
		resp, body := e.rawMCP(t, "mcpstateless", "", http.Header{"Accept": {"application/json"}}, list)
		check(t, resp, body, 406, -32011, `"L1"`, "McpRequestUnacceptable")
		if !strings.Contains(string(body), "application/json, text/event-stream") {
			t.Errorf("406 message: %s", body)
		}
	})
	t.Run("not found", func(t *testing.T) {
		resp, body := e.rawMCP(t, "mcpstateless", "?qualifier=nosuch", nil, list)
		check(t, resp, body, 200, -32004, `"L1"`, "ResourceNotFoundException")
	})
	t.Run("validation", func(t *testing.T) {
		resp, body := e.rawMCP(t, "mcpstateless", "", http.Header{"Mcp-Session-Id": {strings.Repeat("x", 1025)}}, list)
		check(t, resp, body, 200, -32006, `"L1"`, "ValidationException")
	})
	t.Run("conflict", func(t *testing.T) {
		// A call holds the session: its first progress event has arrived
		// and it waits at the gate. A second call in that session conflicts.
		sid := "conflict-session-0123456789-0123456789"
		held := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"countdown","arguments":{"n":1},"_meta":{"progressToken":"p"}}}`
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url("mcpreject"), strings.NewReader(held))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		hresp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer hresp.Body.Close()
		events := bufio.NewReader(hresp.Body)
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("the held call ended: %v", err)
			}
			if strings.Contains(line, "notifications/progress") {
				break
			}
		}
		resp, body := e.rawMCP(t, "mcpreject", "", http.Header{"Mcp-Session-Id": {sid}}, list)
		check(t, resp, body, 200, -32005, `"L1"`, "RetryableConflictException")
		os.WriteFile(filepath.Join(e.gate, "1"), nil, 0o644)
		defer os.Remove(filepath.Join(e.gate, "1"))
		if rest, _ := io.ReadAll(events); !strings.Contains(string(rest), `"result"`) {
			t.Fatalf("the held call's end: %s", rest)
		}
	})
	t.Run("quota", func(t *testing.T) {
		resp, body := e.rawMCP(t, "mcpone", "", http.Header{"Mcp-Session-Id": {"quota-a"}}, list)
		if resp.StatusCode != 200 || strings.Contains(string(body), `"error"`) {
			t.Fatalf("first session: %d %s", resp.StatusCode, body)
		}
		resp, body = e.rawMCP(t, "mcpone", "", http.Header{"Mcp-Session-Id": {"quota-b"}}, list)
		check(t, resp, body, 200, -32003, `"L1"`, "ServiceQuotaExceededException")
	})
	t.Run("runtime client error", func(t *testing.T) {
		resp, body := e.rawMCP(t, "mcpstateless", "", nil,
			`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"crash","arguments":{}}}`)
		check(t, resp, body, 200, -32010, `9`, "RuntimeClientError")
	})
}

// Under authentication the Go SDK's MCP client needs berth's URL and its
// credentials only, SigV4 or a bearer token; berth's refusals are
// JSON-RPC errors with AgentCore's codes and real statuses: -32001 with
// 401 (and the challenge that tells an MCP client where to get a token),
// -32002 with 403.
func TestMCPAuth(t *testing.T) {
	agent := buildMCPAgent(t)
	a := newAuthEnv(t, func(c *config.Config) {
		mcpRT := func(name string, s registry.Settings) config.Runtime {
			s.Command, s.Protocol, s.Sandbox = []string{agent}, registry.ProtocolMCP, registry.BackendProcess
			s.Env = map[string]string{"MCP_STATELESS": "1"}
			return config.Runtime{Name: name, Settings: s}
		}
		var jwt registry.Authorizer
		for _, rt := range c.Runtimes {
			if rt.Name == "jwt" {
				jwt = rt.Authorizer
			}
		}
		c.Runtimes = append(c.Runtimes,
			mcpRT("mcpjwt", registry.Settings{Authorizer: jwt}),
			mcpRT("mcpprivate", registry.Settings{Invokers: []string{"alice"}}))
	})
	tok := a.issuer.Token(t, authtest.Claims{"sub": "user-1", "client_id": "web"})
	bearer := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
		return http.DefaultTransport.RoundTrip(r)
	})}
	for _, tc := range []struct {
		runtime string
		client  *http.Client
	}{{"mcpjwt", bearer}, {"mcpprivate", signingClient(a.keys["alice"])}} {
		client := mcp.NewClient(&mcp.Implementation{Name: "berth-test", Version: "1"}, nil)
		cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: api.InvocationURL(a.d.URL(), a.arn(tc.runtime)),
			HTTPClient: tc.client, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatalf("%s: connect: %v", tc.runtime, err)
		}
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "add", Arguments: map[string]int{"a": 1, "b": 2}})
		if raw, _ := json.Marshal(res.StructuredContent); err != nil || string(raw) != `{"sum":3}` {
			t.Fatalf("%s: add: %v %s", tc.runtime, err, raw)
		}
		cs.Close()
	}

	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	refused := func(name string, c *http.Client, runtime string, status, code int) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, api.InvocationURL(a.d.URL(), a.arn(runtime)), strings.NewReader(list))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans rpcAnswer
		body, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(body, &ans) != nil || ans.Error == nil || resp.StatusCode != status || ans.Error.Code != code || string(ans.ID) != "3" {
			t.Fatalf("%s: %d %s, want %d with JSON-RPC %d", name, resp.StatusCode, body, status, code)
		}
		return resp
	}
	resp := refused("no token", http.DefaultClient, "mcpjwt", 401, -32001)
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Errorf("no token: WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
	}
	refused("not an invoker", signingClient(a.keys["bob"]), "mcpprivate", 403, -32002)
}
