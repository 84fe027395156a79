package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxfake"
	"github.com/berth-dev/berth/internal/server"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// edge is a server over a real store and registry whose sessions run on
// sandboxfake: the whole invocation path in one process, without sockets.
type edge struct {
	srv *server.Server
	arn string
	reg *registry.Registry
	m   *session.Manager
}

func newEdge(tb testing.TB, opts server.Options, sopts session.Options) *edge {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "berth.db"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	// The sandbox is left to the manager's default: sandboxfake.
	cfg.Runtimes = []config.Runtime{{Name: "echo", Settings: registry.Settings{Command: []string{"agent"}}}}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	reg := registry.New(db, registry.Options{Rules: cfg.Rules(), Region: cfg.Region, Account: cfg.Account,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rts, err := reg.Reconcile(ctx, cfg.Runtimes)
	if err != nil {
		tb.Fatal(err)
	}
	sopts.LogDir = filepath.Join(dir, "logs")
	sopts.DefaultBackend = "fake"
	sopts.RuntimeARN = reg.RuntimeARN
	sopts.StopGrace = time.Second
	if sopts.Logger == nil {
		sopts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := session.NewManager(db, map[string]sandbox.Backend{"fake": sandboxfake.New(sandboxfake.Options{})}, sopts)
	opts.Registry, opts.Sessions, opts.SessionStore = reg, m, db
	if opts.Logger == nil {
		opts.Logger = sopts.Logger
	}
	e := &edge{srv: server.New(opts), arn: rts[0].ARN, reg: reg, m: m}
	tb.Cleanup(func() {
		m.Shutdown(context.Background())
		db.Close()
	})
	return e
}

func (e *edge) invokeRequest(sid, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/runtimes/"+url.PathEscape(e.arn)+"/invocations", strings.NewReader(body))
	r.Host = "127.0.0.1:8787"
	r.Header.Set(api.HeaderSessionID, sid)
	r.Header.Set("Content-Type", "application/json")
	return r
}

// discard is a span exporter that drops what it gets: the cost of
// recording and batching spans, without a collector's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkInvoke is the path of one call into a live session, from the
// edge's handler to the agent and back: what tracing, when it is off, must
// not make dearer. "traced-caller" sends a traceparent and baggage, as
// instrumented callers do; "tracing-on" also records and exports spans.
func BenchmarkInvoke(b *testing.B) {
	traced := map[string]string{
		api.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		api.HeaderBaggage:     "user.tier=gold",
	}
	for _, c := range []struct {
		name    string
		headers map[string]string
		tracing bool
	}{
		{"plain", nil, false},
		{"traced-caller", traced, false},
		{"tracing-on", traced, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			opts := server.Options{Metrics: telemetry.New(telemetry.Options{})}
			var sopts session.Options
			if c.tracing {
				tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingOptions{
					Getenv: func(string) string { return "" }, Exporter: discard{}})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { tr.Shutdown(context.Background()) })
				opts.Tracing = tr
				sopts.Tracer = tr.TracerProvider().Tracer("bench")
				sopts.AgentEnv = tr.AgentEnv
			}
			e := newEdge(b, opts, sopts)
			const sid = "bench-session-0123456789abcdef0123456789"
			call := func() {
				r := e.invokeRequest(sid, `{"op":"echo"}`)
				for k, v := range c.headers {
					r.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				e.srv.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			call() // start the session
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				call()
			}
		})
	}
}
