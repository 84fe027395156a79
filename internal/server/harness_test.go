package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
)

// harness is a real Server over a real registry and session manager on
// SQLite. Sandboxes come from agentBackend: the agent is an in-process
// HTTP server on loopback, so handler tests need no processes.
type harness struct {
	db    *store.DB
	reg   *registry.Registry
	srv   *Server
	agent *agentBackend
	// rt is a config runtime whose agent the backend serves.
	rt registry.Runtime
}

// testRules is the operator's policy in these tests; code may lie in any
// temporary directory.
var testRules = registry.Rulebook{
	CodeRoots:     []string{os.TempDir()},
	DefaultLimits: registry.Limits{Memory: 1 << 30, CPU: 1000, Pids: 256},
	APISandbox:    registry.BackendProcess,
	APIWarmPool:   2,
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newHarness builds the server; allowlist is the config runtime's header
// allowlist.
func newHarness(t testing.TB, allowlist ...string) *harness {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(db, testRules, "us-east-1", "123456789012", discard())
	agent := &agentBackend{}
	m := session.NewManager(db, map[string]sandbox.Backend{"process": agent}, session.Options{
		LogDir:         t.TempDir(),
		StateDir:       t.TempDir(),
		DefaultBackend: "process",
		StopGrace:      time.Second,
		Logger:         discard(),
	})
	reg.Watch(m)
	t.Cleanup(func() {
		m.Shutdown(context.Background())
		db.Close()
	})
	s := registry.Settings{Command: []string{"agent"}, HeaderAllowlist: allowlist}
	if err := testRules.Validate(registry.SourceConfig, &s); err != nil {
		t.Fatal(err)
	}
	rts, err := reg.Reconcile(ctx, []registry.Declared{{Name: "agent", Settings: s}})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Registry: reg, Sessions: m, SessionStore: db, Logger: discard()})
	return &harness{db: db, reg: reg, srv: srv, agent: agent, rt: rts[0]}
}

// do serves one request and returns the recorded answer.
func (h *harness) do(r *http.Request) *httptest.ResponseRecorder { return serve(h.srv, r) }

// newRequest is an incoming request addressed to localhost, as the edge
// guard accepts it.
func newRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "localhost"
	return r
}

func serve(s *Server, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// wireError is an AgentCore error as the server wrote it.
type wireError struct {
	status int
	typ    api.ErrorType
	body   api.ErrorBody
}

// readError decodes an error answer and checks its shape: the type header
// matches the status, and the body is AgentCore's JSON.
func readError(t testing.TB, w *httptest.ResponseRecorder) wireError {
	t.Helper()
	e := wireError{status: w.Code, typ: api.ErrorType(w.Header().Get(api.HeaderErrorType))}
	if e.typ == "" || e.typ.StatusCode() != w.Code || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d with error type %q and content type %q: %s", w.Code, e.typ, w.Header().Get("Content-Type"), w.Body)
	}
	dec := json.NewDecoder(strings.NewReader(w.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e.body); err != nil || e.body.Message == "" {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return e
}

// agentBackend starts "sandboxes" whose agent is an in-process HTTP server
// on loopback. It records what the agent was sent.
type agentBackend struct {
	mu       sync.Mutex
	requests []http.Header // the headers of every /invocations request agents saw
}

var _ sandbox.Backend = (*agentBackend)(nil)

func (b *agentBackend) Name() string                   { return "process" }
func (b *agentBackend) Reap(ctx context.Context) error { return nil }

func (b *agentBackend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.PingResponse{Status: api.PingHealthy})
	})
	mux.HandleFunc("POST /invocations", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.requests = append(b.requests, r.Header.Clone())
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"echo": string(body)})
	})
	h := &agentHandle{id: spec.Name, ln: ln, srv: &http.Server{Handler: mux}, done: make(chan struct{}), served: make(chan struct{})}
	go func() {
		defer close(h.served)
		h.srv.Serve(ln)
	}()
	return h, nil
}

// count is how many requests agents were sent.
func (b *agentBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

// last returns the headers of the last request an agent was sent.
func (b *agentBackend) last() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) == 0 {
		return nil
	}
	return b.requests[len(b.requests)-1]
}

type agentHandle struct {
	id     string
	ln     net.Listener
	srv    *http.Server
	once   sync.Once
	done   chan struct{}
	served chan struct{}
}

func (h *agentHandle) ID() string   { return h.id }
func (h *agentHandle) Addr() string { return h.ln.Addr().String() }
func (h *agentHandle) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", h.ln.Addr().String())
}
func (h *agentHandle) Done() <-chan struct{} { return h.done }
func (h *agentHandle) Exit() sandbox.ExitStatus {
	return sandbox.ExitStatus{Code: -1, Signal: "terminated"}
}
func (h *agentHandle) Stop(ctx context.Context, grace time.Duration) error {
	h.once.Do(func() {
		h.srv.Close()
		<-h.served
		close(h.done)
	})
	return nil
}
