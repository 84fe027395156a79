// Package session is berth's session manager: it finds or creates the
// sandbox behind a session, admits calls into it, runs each session's ping
// loop and lifetime timers, and tears sandboxes down on idle timeout, max
// lifetime, stop, crash, failed health checks and shutdown.
//
// Placement is data: every live session has a store record carrying its
// lease, sandbox ID and address; the in-process map holds only the handles
// this node owns.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/google/uuid"
)

// Session errors. Each wraps an errdefs class, which the server maps to
// the wire; callers that must tell them apart use errors.Is.
var (
	// ErrStartFailed: the agent did not start or never became healthy.
	ErrStartFailed = fmt.Errorf("agent failed to start: %w", errdefs.ErrAgent)
	// ErrEnded: the session ended while the call was in flight.
	ErrEnded = fmt.Errorf("session ended: %w", errdefs.ErrAgent)
	// ErrShuttingDown: berth is draining and admits no new calls.
	ErrShuttingDown = fmt.Errorf("berth is shutting down; retry against another node: %w", errdefs.ErrUnavailable)
	// ErrBusy: the session's policy rejects a call while another runs.
	ErrBusy = fmt.Errorf("session busy: another call is in flight: %w", errdefs.ErrFailedPrecondition)
)

// Options configure a Manager. Zero values take the defaults noted.
type Options struct {
	// NodeID owns this node's leases. Default "local".
	NodeID string
	// LogDir holds per-session agent logs.
	LogDir string
	// StateDir holds durable sessions' state sockets.
	StateDir string
	// StateHandler builds the HTTP handler served on a durable session's
	// state socket (internal/server provides it).
	StateHandler func(StateAccess) http.Handler
	// Observer, if set, hears of session starts and ends (for metrics).
	Observer Observer
	// StartTimeout bounds sandbox start plus the first healthy ping. Default 30s.
	StartTimeout time.Duration
	// PingInterval is the health-check period. Default 2s.
	PingInterval time.Duration
	// PingFailures ends a session as unhealthy after that many failed pings
	// in a row. Default 3.
	PingFailures int
	// StopGrace is SIGTERM→SIGKILL. Default 5s.
	StopGrace time.Duration
	// DefaultBackend is used when a runtime says "auto" or nothing.
	DefaultBackend string
	// Region and Account go into the agent's OTEL resource attributes.
	RuntimeARN func(runtimeID string) string
	Logger     *slog.Logger
}

// Observer hears of sessions starting and ending.
type Observer interface {
	// SessionStarted: the sandbox answered its first ping after took;
	// warm says it came from a warm pool.
	SessionStarted(runtimeID, backend string, warm bool, took time.Duration)
	// SessionEnded: the session lived for lifetime.
	SessionEnded(runtimeID string, reason EndReason, lifetime time.Duration)
}

// Spec is what a new session runs: resolved by the caller from the registry.
type Spec struct {
	Key
	Version  int
	Settings registry.Settings
	UserID   string
}

// Manager owns every live session on this node.
//
// Lock order: Manager.mu, then Session.mu.
type Manager struct {
	store     Store
	backends  map[string]sandbox.Backend
	opts      Options
	log       *slog.Logger
	transport *http.Transport
	// state is the store's durable-state side, nil if it has none.
	state StateStore

	wg sync.WaitGroup // one per session runner

	// mu guards the fields that follow.
	mu       sync.Mutex
	sessions map[Key]*Session        // live and terminating sessions
	byHost   map[string]handleSource // synthetic URL host → session or pool member
	pools    map[string]*pool        // runtime ID → its warm pool
	closed   bool
}

// NewManager returns a manager over store and the named backends.
func NewManager(store Store, backends map[string]sandbox.Backend, opts Options) *Manager {
	if opts.NodeID == "" {
		opts.NodeID = "local"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 2 * time.Second
	}
	if opts.PingFailures <= 0 {
		opts.PingFailures = 3
	}
	if opts.StopGrace < 0 {
		opts.StopGrace = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RuntimeARN == nil {
		opts.RuntimeARN = func(id string) string { return id }
	}
	m := &Manager{
		store:    store,
		backends: backends,
		opts:     opts,
		log:      opts.Logger,
		sessions: map[Key]*Session{},
		byHost:   map[string]handleSource{},
		pools:    map[string]*pool{},
	}
	m.state, _ = store.(StateStore)
	m.transport = &http.Transport{
		DialContext:         m.dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return m
}

// Transport reaches sandboxes: URLs from Call.URL dial the right sandbox.
func (m *Manager) Transport() http.RoundTripper { return m.transport }

// dial maps a synthetic host back to its session's sandbox.
func (m *Manager) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	m.mu.Lock()
	s := m.byHost[host]
	m.mu.Unlock()
	var h sandbox.Handle
	if s != nil {
		h = s.getHandle()
	}
	if h == nil {
		return nil, fmt.Errorf("dial %s: %w", host, ErrEnded)
	}
	return h.DialContext(ctx, "tcp", h.Addr())
}

// handleSource is what a synthetic host resolves to.
type handleSource interface{ getHandle() sandbox.Handle }

// Recover ends the live records a previous berth process left and has every
// backend remove its leftovers. Call it once before serving.
func (m *Manager) Recover(ctx context.Context) error {
	ended, err := m.store.EndAllLive(ctx, m.opts.NodeID, EndShutdown, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("end stale sessions: %w", err)
	}
	for _, r := range ended {
		m.log.Info("session ended by restart", "runtime_id", r.RuntimeID, "session_id", r.SessionID, "record_id", r.ID)
	}
	m.removeStateDirs()
	for name, b := range m.backends {
		if err := b.Reap(ctx); err != nil {
			return fmt.Errorf("reap %s sandboxes: %w", name, err)
		}
	}
	return nil
}

// Acquire finds or starts the session for spec and admits one call into it.
// The caller must call Call.Done exactly once.
func (m *Manager) Acquire(ctx context.Context, spec Spec) (*Call, error) {
	pol := spec.Settings.Sessions
	var stateOwner *string // a durable session's bound user, read once if needed
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrShuttingDown
		}
		s := m.sessions[spec.Key]
		if s == nil {
			if pol.BindUser && pol.Durable() && stateOwner == nil {
				m.mu.Unlock()
				owner, err := m.stateOwner(ctx, spec.Key)
				if err != nil {
					return nil, err
				}
				stateOwner = &owner
				continue
			}
			owner := spec.UserID
			if stateOwner != nil && *stateOwner != "" {
				owner = *stateOwner
			}
			if pol.BindUser && owner != spec.UserID {
				m.mu.Unlock()
				return nil, fmt.Errorf("session %s: %w", spec.SessionID, errdefs.ErrPermissionDenied)
			}
			if n := pol.MaxSessionsPerUser; n > 0 && spec.UserID != "" && m.userSessionsLocked(spec.RuntimeID, spec.UserID) >= n {
				m.mu.Unlock()
				return nil, fmt.Errorf("user %s has %d live sessions of runtime %s: %w", spec.UserID, n, spec.RuntimeID, errdefs.ErrResourceExhausted)
			}
			var err error
			if s, err = m.newSessionLocked(spec, owner); err != nil {
				m.mu.Unlock()
				return nil, err
			}
		}
		s.mu.Lock()
		if s.killCtx.Err() != nil {
			// Ending: wait for its teardown, then start afresh.
			s.mu.Unlock()
			m.mu.Unlock()
			select {
			case <-s.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if pol.BindUser && !s.bindLocked(spec.UserID) {
			s.mu.Unlock()
			m.mu.Unlock()
			return nil, fmt.Errorf("session %s: %w", spec.SessionID, errdefs.ErrPermissionDenied)
		}
		s.inflight++
		s.lastActive = time.Now()
		s.mu.Unlock()
		m.mu.Unlock()

		c := &Call{s: s}
		select {
		case <-s.ready:
		case <-ctx.Done():
			c.Done()
			return nil, ctx.Err()
		}
		if s.startErr != nil {
			c.Done()
			return nil, s.startErr
		}
		if err := c.admit(ctx, pol); err != nil {
			c.Done()
			return nil, err
		}
		return c, nil
	}
}

// userSessionsLocked counts a user's live sessions of a runtime.
func (m *Manager) userSessionsLocked(runtimeID, user string) int {
	n := 0
	for k, s := range m.sessions {
		if k.RuntimeID != runtimeID || s.killCtx.Err() != nil {
			continue
		}
		s.mu.Lock()
		if s.owner == user {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

func (m *Manager) newSessionLocked(spec Spec, owner string) (*Session, error) {
	name := string(spec.Settings.Sandbox)
	if name == "" || name == "auto" {
		name = m.opts.DefaultBackend
	}
	b, ok := m.backends[name]
	if !ok {
		return nil, fmt.Errorf("runtime %s asks for sandbox backend %q, which this host cannot run: %w", spec.RuntimeID, name, errdefs.ErrAgent)
	}
	killCtx, kill := context.WithCancelCause(context.Background())
	s := &Session{
		m:       m,
		spec:    spec,
		backend: b,
		host:    strings.ReplaceAll(uuid.NewString(), "-", "") + ".sandbox",
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		killCtx: killCtx,
		kill:    kill,
		owner:   owner,
		log: m.log.With("runtime_id", spec.RuntimeID, "endpoint", spec.Endpoint,
			"session_id", spec.SessionID),
	}
	m.sessions[spec.Key] = s
	m.byHost[s.host] = s
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		s.run()
	}()
	return s, nil
}

// StopRequest names a session to stop and who asks.
type StopRequest struct {
	Key
	UserID string
	Policy registry.SessionPolicy
}

// Stop ends a session for good: a live sandbox is stopped at once,
// including calls in flight, and a durable session's saved state is
// deleted. It returns ErrNotFound if there was nothing to stop.
func (m *Manager) Stop(ctx context.Context, req StopRequest) error {
	m.mu.Lock()
	s := m.sessions[req.Key]
	m.mu.Unlock()
	if s != nil && req.Policy.BindUser {
		s.mu.Lock()
		owner := s.owner
		s.mu.Unlock()
		if owner != req.UserID {
			return fmt.Errorf("session %s: %w", req.SessionID, errdefs.ErrPermissionDenied)
		}
	}
	stopped := false
	if s != nil && s.end(EndStopped, "stopped by StopRuntimeSession") {
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		stopped = true
	}
	if ss, ok := m.state, m.state != nil; ok {
		_, owner, err := ss.LoadState(ctx, req.Key)
		switch {
		case err == nil:
			if req.Policy.BindUser && owner != "" && owner != req.UserID {
				return fmt.Errorf("session %s: %w", req.SessionID, errdefs.ErrPermissionDenied)
			}
			if err := ss.DeleteState(ctx, req.Key); err != nil {
				return fmt.Errorf("delete session state: %w", err)
			}
			stopped = true
		case !errors.Is(err, errdefs.ErrNotFound):
			return fmt.Errorf("load session state: %w", err)
		}
	}
	if !stopped {
		return fmt.Errorf("session %s: %w", req.SessionID, errdefs.ErrNotFound)
	}
	return nil
}

// stateOwner is the user a durable session's saved state is bound to.
func (m *Manager) stateOwner(ctx context.Context, k Key) (string, error) {
	ss, ok := m.state, m.state != nil
	if !ok {
		return "", nil
	}
	_, owner, err := ss.LoadState(ctx, k)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return "", fmt.Errorf("load session state: %w", err)
	}
	return owner, nil
}

// EndRuntime ends every live session of a runtime (deletes, version moves).
func (m *Manager) EndRuntime(ctx context.Context, runtimeID string, reason EndReason) {
	var victims []*Session
	m.mu.Lock()
	for k, s := range m.sessions {
		if k.RuntimeID == runtimeID {
			victims = append(victims, s)
		}
	}
	m.mu.Unlock()
	for _, s := range victims {
		s.end(reason, "runtime "+string(reason))
	}
	for _, s := range victims {
		select {
		case <-s.done:
		case <-ctx.Done():
			return
		}
	}
	if reason == EndDeleted {
		// A deleted runtime's durable sessions end for good.
		if ds, ok := m.state.(interface {
			DeleteStates(ctx context.Context, runtimeID string, before time.Time) (int64, error)
		}); ok {
			if _, err := ds.DeleteStates(ctx, runtimeID, time.Time{}); err != nil {
				m.log.Error("delete session states of a deleted runtime", "runtime_id", runtimeID, "err", err)
			}
		}
	}
}

// Shutdown stops admitting calls, ends every live session as shutdown and
// waits for all teardowns.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	pools := m.pools
	m.pools = map[string]*pool{}
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	for _, s := range all {
		s.end(EndShutdown, "berth shutting down")
	}
	for _, p := range pools {
		p.close()
	}
	waited := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		m.transport.CloseIdleConnections()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for sessions to end: %w", ctx.Err())
	}
}

// Live returns a snapshot of this node's live sessions.
func (m *Manager) Live() []Info {
	m.mu.Lock()
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	out := make([]Info, 0, len(all))
	for _, s := range all {
		out = append(out, s.info())
	}
	return out
}

// LogPath is where a session incarnation's agent output goes.
func (m *Manager) LogPath(runtimeID, recordID string) string {
	return filepath.Join(m.opts.LogDir, runtimeID, recordID+".log")
}

// PruneLogs removes session logs older than keep.
func (m *Manager) PruneLogs(keep time.Duration) error {
	cutoff := time.Now().Add(-keep)
	return filepath.WalkDir(m.opts.LogDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(path)
		}
		return nil
	})
}

func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	if m.sessions[s.spec.Key] == s {
		delete(m.sessions, s.spec.Key)
	}
	delete(m.byHost, s.host)
	m.mu.Unlock()
}
