// Package app is berth's SDK for agent authors: the Go twin of the Python
// bedrock-agentcore SDK's BedrockAgentCoreApp. An App serves the AgentCore
// agent contract (POST /invocations, GET /ping and the WebSocket on GET /ws),
// so the same binary runs under berth or under Amazon Bedrock AgentCore
// Runtime.
//
//	a := app.New()
//	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
//		var in struct {
//			Prompt string `json:"prompt"`
//		}
//		if err := json.Unmarshal(payload, &in); err != nil {
//			return nil, &app.HTTPError{Status: http.StatusBadRequest, Detail: err.Error()}
//		}
//		return "you said: " + in.Prompt, nil
//	})
//	if err := a.Run(); err != nil {
//		log.Fatal(err)
//	}
//
// A handler's result is JSON-encoded; a [Stream] result is sent as
// Server-Sent Events. [App.WebSocket] handles bidirectional streams on /ws.
// /ping reports HealthyBusy while async tasks run (see [App.AddAsyncTask]
// and [App.StartAsyncTask]).
//
// The package imports only the standard library, berth's api package and
// github.com/coder/websocket (which has no dependencies of its own), so an
// agent never pulls in the daemon.
package app

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/api"
)

// Handler handles one invocation. payload is the raw request body, already
// checked to be valid JSON. [RequestFrom] gives the session and request IDs
// and the forwarded headers. ctx is cancelled when the caller goes away.
//
// The result is sent as follows:
//   - a [Stream]: Server-Sent Events, one `data: <json>` event per value;
//   - a [*Response] or [Response]: written as is (status, headers, body);
//   - a [json.RawMessage]: written as is, after checking it is valid JSON;
//   - anything else, nil included: JSON-encoded by encoding/json, so a string
//     becomes "text" and a []byte becomes a base64 string.
//
// A non-nil error becomes a 500 with {"error": err.Error()}, or, when the
// error wraps an [*HTTPError], that status with {"error": detail}. A panic is
// recovered and answered like an error.
type Handler func(ctx context.Context, payload []byte) (any, error)

// Environment variables Run reads to pick its listen address.
const (
	// EnvPort is the TCP port to listen on; AgentCore's contract is 8080.
	EnvPort = api.EnvPort
	// EnvHost is the address to bind; berth's process backend sets
	// 127.0.0.1, containers default to all interfaces.
	EnvHost = api.EnvAgentHost
)

const (
	defaultPort            = "8080"
	defaultHost            = "0.0.0.0"
	defaultShutdownTimeout = 10 * time.Second
)

// App is an AgentCore agent server. Create one with [New]; its methods are
// safe for concurrent use. An App serves once: after [App.Shutdown] (which
// [App.Serve] calls on its way out) background tasks see a cancelled context.
type App struct {
	logger          *slog.Logger
	debugActions    bool
	shutdownTimeout time.Duration
	maxPayload      int64
	mux             *http.ServeMux

	handler   atomic.Pointer[Handler]
	wsHandler atomic.Pointer[WebSocketHandler]

	// bgCtx is the context of tasks started with StartAsyncTask; Shutdown
	// cancels it.
	bgCtx    context.Context
	bgCancel context.CancelFunc

	// mu guards the fields that follow. No user code (handlers, ping funcs,
	// task funcs) runs while mu is held.
	mu         sync.Mutex
	pingFunc   PingFunc
	forced     api.PingStatus // "" when no status is forced
	tasks      map[int64]*asyncTask
	nextTaskID int64
	lastStatus api.PingStatus // the status /ping last reported or knew
	lastChange time.Time      // when lastStatus last changed
	bgRunning  int            // StartAsyncTask goroutines not yet returned
	bgChanged  chan struct{}  // closed and replaced whenever bgRunning drops
}

// Option configures an App.
type Option func(*App)

// WithLogger sets the logger. The default writes JSON lines to stderr.
// Invocation logs carry session_id and request_id attributes.
func WithLogger(l *slog.Logger) Option {
	return func(a *App) { a.logger = l }
}

// WithPingFunc sets a custom ping status function, like @app.ping in the
// Python SDK. See [PingFunc] for the priority rules.
func WithPingFunc(f PingFunc) Option {
	return func(a *App) { a.pingFunc = f }
}

// WithDebugActions enables the Python SDK's debug actions: a payload
// {"_agent_core_app_action": "ping_status" | "job_status" | "force_healthy" |
// "force_busy" | "clear_forced_status"} is answered by the app itself instead
// of the handler. Off by default, as in the Python SDK.
func WithDebugActions() Option {
	return func(a *App) { a.debugActions = true }
}

// WithShutdownTimeout bounds graceful shutdown: draining in-flight
// invocations and then waiting for async tasks. The default is 10s, inside
// the 15s AgentCore allows between SIGTERM and SIGKILL.
func WithShutdownTimeout(d time.Duration) Option {
	return func(a *App) { a.shutdownTimeout = d }
}

// WithMaxPayloadBytes caps the request body; larger payloads get 413. The
// default is AgentCore's limit, [api.MaxPayloadBytes].
func WithMaxPayloadBytes(n int64) Option {
	return func(a *App) { a.maxPayload = n }
}

// New returns an App with no entrypoint; register one with [App.Entrypoint].
func New(opts ...Option) *App {
	a := &App{
		logger:          slog.New(slog.NewJSONHandler(os.Stderr, nil)),
		shutdownTimeout: defaultShutdownTimeout,
		maxPayload:      api.MaxPayloadBytes,
		tasks:           make(map[int64]*asyncTask),
		lastStatus:      api.PingHealthy,
		lastChange:      time.Now(),
		bgChanged:       make(chan struct{}),
	}
	for _, opt := range opts {
		opt(a)
	}
	a.bgCtx, a.bgCancel = context.WithCancel(context.Background())

	// Every route the agent contract defines is registered here.
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("POST "+api.PathInvocations, a.serveInvocation)
	a.mux.HandleFunc("GET "+api.PathPing, a.servePing)
	a.mux.HandleFunc("GET "+api.PathWebSocket, a.serveWebSocket)
	return a
}

// Entrypoint registers the invocation handler, replacing any earlier one.
func (a *App) Entrypoint(h Handler) {
	a.handler.Store(&h)
}

// Handler returns the app's HTTP handler, for embedding it in another server
// or mounting more routes beside it.
func (a *App) Handler() http.Handler {
	return a.mux
}

// Logger returns the app's logger.
func (a *App) Logger() *slog.Logger {
	return a.logger
}
