package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxfake"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
)

// harness is a real Server over a real registry and session manager on
// SQLite. Sandboxes are sandboxfake's: the agent is an in-process HTTP
// handler that echoes what it was sent, so handler tests need no
// processes.
type harness struct {
	db    *store.DB
	reg   *registry.Registry
	srv   *Server
	agent *sandboxfake.Backend
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
	reg := registry.New(db, registry.Options{Rules: testRules, Region: "us-east-1", Account: "123456789012", Logger: discard()})
	agent := sandboxfake.New(sandboxfake.Options{})
	m := session.NewManager(db, map[string]sandbox.Backend{"fake": agent}, session.Options{
		LogDir:         t.TempDir(),
		StateDir:       t.TempDir(),
		DefaultBackend: "fake",
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

// calls counts the invocations agents answered.
func (h *harness) calls() int64 {
	var n int64
	for _, a := range h.agent.Handles() {
		n += a.Calls()
	}
	return n
}
