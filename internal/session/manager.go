// Package session is berth's session manager: it claims the session behind
// a call in the store, starts its sandbox, admits calls into it, runs each
// session's ping loop and lifetime timers, and tears sandboxes down on idle
// timeout, max lifetime, stop, crash, failed health checks and shutdown. It
// also owns what outlives a sandbox: per-session logs, durable state, warm
// pools, and the janitor that expires them.
//
// Placement is data: every live session has a store record carrying its
// lease, sandbox ID and address; the in-process map holds only the sessions
// this node owns, and a record is claimed in the store before anything is
// started for it.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session/agentlog"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
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
	// ErrElsewhere: another node holds the session's live lease.
	ErrElsewhere = fmt.Errorf("session is live on another berth node: %w", errdefs.ErrUnavailable)
	// ErrSettling: the session is being started by another call, or is
	// stopping; a retry will find it settled.
	ErrSettling = fmt.Errorf("session operation in progress, please retry: %w", errdefs.ErrFailedPrecondition)
)

// endRuntimeTimeout bounds how long a runtime's deletion waits for its
// live sessions to end.
const endRuntimeTimeout = time.Minute

// storeTimeout bounds every store write the manager makes on its own
// behalf (placement, activity, the final record).
const storeTimeout = 10 * time.Second

// Options configure a Manager. Zero values take the defaults noted.
type Options struct {
	// NodeID owns this node's leases. Default "local".
	NodeID string
	// Runtimes resolves a runtime's DEFAULT version when its warm pool
	// must follow a registry change.
	Runtimes Resolver
	// LogDir holds per-session agent logs (none: agents' output is
	// discarded); LogRetention is how long a log outlives its session.
	// Default 24h.
	LogDir       string
	LogRetention time.Duration
	// LogLimits cap each session's log. Default 10 MiB × 2 files.
	LogLimits agentlog.Limits
	// StateDir holds durable sessions' state sockets; StateRetention is
	// how long saved state outlives its last save (0: forever).
	StateDir       string
	StateRetention time.Duration
	// Storage keeps sessions' persistent filesystems (session storage);
	// nil where the host cannot. StorageRetention wipes one unused that
	// long (0: never).
	Storage          *storage.Store
	StorageRetention time.Duration
	// Observer, if set, hears of session starts and ends (for metrics).
	Observer Observer
	// Images holds the images image runtimes run; nil refuses them.
	Images Images
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
	// MaxSessions caps this node's live sessions (0: no cap); a new
	// session past it is refused, and live ones go on.
	MaxSessions int
	// NewSessionsPerSecond paces new sessions (0: no pace), with bursts of
	// up to twice that.
	NewSessionsPerSecond float64
	// RuntimeARN names a runtime in the agent's environment.
	RuntimeARN func(runtimeID string) string
	// AgentEnv, if set, adds observability variables (OTEL_*) to an
	// agent's environment; the runtime's own env wins for a name both set.
	AgentEnv func(a AgentIdentity) []string
	// Tracer records the spans of session starts: under the span of the
	// call that started the session, if the call's context has one.
	// Default: a tracer that records nothing.
	Tracer trace.Tracer
	// RuntimeURL, if set, is berth's public invocation URL for a runtime,
	// which agents read as AGENTCORE_RUNTIME_URL (A2A cards point there).
	RuntimeURL func(runtimeID string) string
	Logger     *slog.Logger
}

// AgentIdentity is what an agent's observability environment names.
type AgentIdentity struct {
	RuntimeID, ARN string
	SessionID      string // empty for a warm-pool sandbox
	// Env is the runtime's own environment.
	Env map[string]string
}

// Images is what the manager reads of the image store.
type Images interface {
	Get(digest string) (image.Image, error)
	Rootfs(digest string) (string, error)
}

// Resolver is what the manager reads of the registry.
type Resolver interface {
	Resolve(ctx context.Context, ref, qualifier string) (registry.Resolved, error)
}

// Observer hears of sessions starting and ending.
type Observer interface {
	// SessionStarted: the sandbox answered its first ping after took;
	// warm says it came from a warm pool.
	SessionStarted(k Key, backend string, warm bool, took time.Duration)
	// SessionEnded: the session lived for lifetime.
	SessionEnded(k Key, reason EndReason, lifetime time.Duration)
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
// Lock order: Manager.mu, then Session.mu, then pool.mu.
type Manager struct {
	store    Store
	backends map[string]sandbox.Backend
	opts     Options
	log      *slog.Logger
	// state is the store's durable-state side, nil if it has none.
	state StateStore
	// pump copies every sandbox's output into its log. It starts with the
	// first sandbox (pumpOnce), so a manager that never starts one runs no
	// epoll goroutine; nil without a LogDir, or with pumpErr if it could
	// not start.
	pumpOnce sync.Once
	pump     *agentlog.Pump
	pumpErr  error

	// shutdownCtx is cancelled when berth is going away: distinct from a
	// session's killCtx, which ends that session.
	shutdownCtx context.Context
	shutdown    context.CancelFunc

	wg sync.WaitGroup // session runners, the janitor, pool fillers

	// mu guards the fields that follow.
	mu       sync.Mutex
	sessions map[Key]*Session // live and terminating sessions
	// aliases are other keys that reach a live session: protocol session
	// IDs its agent minted (an MCP server's Mcp-Session-Id). They live as
	// long as the session, on this node only.
	aliases  map[Key]*Session
	claiming map[Key]*claim   // keys whose store claim is in progress
	pools    map[string]*pool // runtime ID → its warm pool
	newRate  bucket           // paces new sessions
	closed   bool
}

// claim is a store claim in progress; done closes when it settles.
type claim struct {
	runtimeID, user string
	done            chan struct{}
}

// NewManager returns a manager over store and the named backends, and
// starts its janitor. Shutdown stops everything it started.
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
	if opts.LogRetention <= 0 {
		opts.LogRetention = 24 * time.Hour
	}
	if opts.LogLimits.MaxBytes <= 0 {
		opts.LogLimits.MaxBytes = agentlog.DefaultMaxBytes
	}
	if opts.LogLimits.Files <= 0 {
		opts.LogLimits.Files = agentlog.DefaultFiles
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RuntimeARN == nil {
		opts.RuntimeARN = func(id string) string { return id }
	}
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider().Tracer("")
	}
	m := &Manager{
		store:    store,
		backends: backends,
		opts:     opts,
		log:      opts.Logger,
		sessions: map[Key]*Session{},
		aliases:  map[Key]*Session{},
		claiming: map[Key]*claim{},
		pools:    map[string]*pool{},
	}
	m.state, _ = store.(StateStore)
	m.shutdownCtx, m.shutdown = context.WithCancel(context.Background())
	m.wg.Go(m.janitor)
	return m
}

// storeCtx bounds one store write made on the manager's own behalf.
func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

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
	// After the reap: a leftover sandbox would hold its storage's mount.
	if m.opts.Storage != nil {
		if err := m.opts.Storage.Recover(); err != nil {
			return fmt.Errorf("recover session storage: %w", err)
		}
	}
	return nil
}

// Acquire finds or starts the session for spec and admits one call into it.
// The caller must call Call.Release exactly once.
func (m *Manager) Acquire(ctx context.Context, spec Spec) (*Call, error) {
	return m.acquire(ctx, spec, false)
}

// AcquireCommand finds or starts the session for spec and admits a command
// into it (see Call.Exec). A command is session activity, holding off the
// idle clock while it runs, but the concurrency policy governs invocations
// only, so it never waits for a turn. A session that another call is
// starting, or that is stopping, refuses it with ErrSettling. The caller
// must call Call.Release exactly once.
func (m *Manager) AcquireCommand(ctx context.Context, spec Spec) (*Call, error) {
	if !spec.Settings.CommandsEnabled() {
		return nil, ErrCommandsDisabled
	}
	return m.acquire(ctx, spec, true)
}

func (m *Manager) acquire(ctx context.Context, spec Spec, command bool) (*Call, error) {
	pol := spec.Settings.Sessions
	for {
		s, fresh, wait, err := m.session(ctx, spec)
		if err != nil {
			return nil, err
		}
		if wait != nil {
			if command {
				return nil, fmt.Errorf("session %s is starting: %w", spec.SessionID, ErrSettling)
			}
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		m.mu.Lock()
		s.mu.Lock()
		if s.killCtx.Err() != nil {
			s.mu.Unlock()
			m.mu.Unlock()
			if command {
				return nil, fmt.Errorf("session %s is stopping: %w", spec.SessionID, ErrSettling)
			}
			// Ending: wait for its teardown, then start afresh.
			select {
			case <-s.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if command && !fresh && !s.isReady() {
			s.mu.Unlock()
			m.mu.Unlock()
			return nil, fmt.Errorf("session %s is starting: %w", spec.SessionID, ErrSettling)
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

		c := &Call{s: s, command: command}
		select {
		case <-s.ready:
		case <-ctx.Done():
			c.Release()
			return nil, ctx.Err()
		}
		if s.startErr != nil {
			c.Release()
			return nil, s.startErr
		}
		if command {
			return c, nil
		}
		if err := c.admit(ctx, pol); err != nil {
			c.Release()
			return nil, err
		}
		return c, nil
	}
}

// session returns this node's live session for spec, claiming the key in
// the store and starting it on a miss (fresh). When another caller's claim
// of the key is in progress it returns a channel to wait on instead.
func (m *Manager) session(ctx context.Context, spec Spec) (s *Session, fresh bool, wait <-chan struct{}, err error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, false, nil, ErrShuttingDown
	}
	if s := m.sessions[spec.Key]; s != nil {
		m.mu.Unlock()
		return s, false, nil, nil
	}
	if s := m.aliases[spec.Key]; s != nil {
		m.mu.Unlock()
		return s, false, nil, nil
	}
	if c := m.claiming[spec.Key]; c != nil {
		m.mu.Unlock()
		return nil, false, c.done, nil
	}
	pol := spec.Settings.Sessions
	if err := m.admitNewLocked(spec); err != nil {
		m.mu.Unlock()
		return nil, false, nil, err
	}
	b, err := m.backend(spec)
	if err != nil {
		m.mu.Unlock()
		return nil, false, nil, err
	}
	c := &claim{runtimeID: spec.RuntimeID, user: spec.UserID, done: make(chan struct{})}
	m.claiming[spec.Key] = c
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.claiming, spec.Key)
		m.mu.Unlock()
		close(c.done)
	}()

	owner := spec.UserID
	if pol.BindUser && pol.Durable() {
		// A durable session stays bound to its user across sandboxes.
		saved, err := m.stateOwner(ctx, spec.Key)
		if err != nil {
			return nil, false, nil, err
		}
		if saved != "" {
			owner = saved
		}
	}
	if pol.BindUser && owner != spec.UserID {
		return nil, false, nil, fmt.Errorf("session %s: %w", spec.SessionID, errdefs.ErrPermissionDenied)
	}
	now := time.Now().UTC()
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	rec, err := m.store.ClaimSession(cctx, Record{
		ID:           uuid.NewString(),
		Key:          spec.Key,
		Lease:        Lease{Owner: m.opts.NodeID},
		Version:      spec.Version,
		UserID:       owner,
		State:        StateStarting,
		Backend:      b.Name(),
		CreatedAt:    now,
		LastActiveAt: now,
		ExpiresAt:    now.Add(spec.Settings.MaxLifetime.D()),
	})
	cancel()
	switch {
	case errors.Is(err, ErrLive):
		return nil, false, nil, fmt.Errorf("session %s: %w", spec.SessionID, ErrElsewhere)
	case err != nil:
		return nil, false, nil, fmt.Errorf("claim session %s: %w", spec.SessionID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		// Shutdown began during the claim: give the record up.
		ectx, cancel := storeCtx()
		defer cancel()
		m.store.EndSession(ectx, rec.ID, rec.Lease, EndShutdown, "berth shutting down", time.Now().UTC())
		return nil, false, nil, ErrShuttingDown
	}
	return m.attachLocked(spec, rec, b, owner, trace.SpanContextFromContext(ctx)), true, nil, nil
}

// admitNewLocked applies the caps on new sessions: berth's, the
// runtime's, the user's, and the pace of new sessions.
func (m *Manager) admitNewLocked(spec Spec) error {
	pol := spec.Settings.Sessions
	total, ofRuntime := len(m.claiming), 0
	for k, s := range m.sessions {
		if s.killCtx.Err() != nil {
			continue
		}
		total++
		if k.RuntimeID == spec.RuntimeID {
			ofRuntime++
		}
	}
	for _, c := range m.claiming {
		if c.runtimeID == spec.RuntimeID {
			ofRuntime++
		}
	}
	switch {
	case m.opts.MaxSessions > 0 && total >= m.opts.MaxSessions:
		return fmt.Errorf("berth serves %d sessions, its max_sessions: %w", total, errdefs.ErrResourceExhausted)
	case pol.MaxSessions > 0 && ofRuntime >= pol.MaxSessions:
		return fmt.Errorf("runtime %s has %d live sessions, its max_sessions: %w", spec.RuntimeID, ofRuntime, errdefs.ErrResourceExhausted)
	}
	if n := pol.MaxSessionsPerUser; n > 0 && spec.UserID != "" && m.userSessionsLocked(spec.RuntimeID, spec.UserID) >= n {
		return fmt.Errorf("user %s has %d live sessions of runtime %s: %w", spec.UserID, n, spec.RuntimeID, errdefs.ErrResourceExhausted)
	}
	if r := m.opts.NewSessionsPerSecond; r > 0 && !m.newRate.take(time.Now(), r, 2*r) {
		return fmt.Errorf("rate exceeded: berth starts at most %g new sessions per second: %w", r, errdefs.ErrUnavailable)
	}
	return nil
}

// bucket is a token bucket; its owner's lock guards it.
type bucket struct {
	tokens float64
	last   time.Time
}

// take spends a token if one is there, refilling at rate up to burst.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// backend picks the sandbox backend spec runs on.
func (m *Manager) backend(spec Spec) (sandbox.Backend, error) {
	name := string(spec.Settings.Sandbox)
	if name == "" || name == string(registry.BackendAuto) {
		name = m.opts.DefaultBackend
	}
	b, ok := m.backends[name]
	if !ok {
		return nil, fmt.Errorf("runtime %s asks for sandbox backend %q, which this host cannot run: %w", spec.RuntimeID, name, errdefs.ErrAgent)
	}
	return b, nil
}

// userSessionsLocked counts a user's live sessions of a runtime, claims in
// progress included.
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
	for _, c := range m.claiming {
		if c.runtimeID == runtimeID && c.user == user {
			n++
		}
	}
	return n
}

// attachLocked makes a claimed record this node's live session and starts
// its runner.
func (m *Manager) attachLocked(spec Spec, rec Record, b sandbox.Backend, owner string, parent trace.SpanContext) *Session {
	killCtx, kill := context.WithCancelCause(context.Background())
	s := &Session{
		parent:  parent,
		m:       m,
		spec:    spec,
		backend: b,
		rec:     rec,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		killCtx: killCtx,
		kill:    kill,
		owner:   owner,
		log: m.log.With("runtime_id", spec.RuntimeID, "endpoint", spec.Endpoint,
			"session_id", spec.SessionID, "record_id", rec.ID),
	}
	m.sessions[spec.Key] = s
	m.wg.Go(s.run)
	return s
}

// StopRequest names a session to stop and who asks.
type StopRequest struct {
	Key
	UserID string
	Policy registry.SessionPolicy
}

// Stop ends a session for good: a live sandbox is stopped at once,
// including calls in flight, and a durable session's saved state is
// deleted. It returns a not-found error if there was nothing to stop.
func (m *Manager) Stop(ctx context.Context, req StopRequest) error {
	m.mu.Lock()
	s := m.sessions[req.Key]
	m.mu.Unlock()
	if s != nil && req.Policy.BindUser && s.ownerNow() != req.UserID {
		return fmt.Errorf("session %s: %w", req.SessionID, errdefs.ErrPermissionDenied)
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
	if m.state != nil {
		_, owner, err := m.state.LoadState(ctx, req.Key)
		switch {
		case err == nil:
			if req.Policy.BindUser && owner != "" && owner != req.UserID {
				return fmt.Errorf("session %s: %w", req.SessionID, errdefs.ErrPermissionDenied)
			}
			if err := m.state.DeleteState(ctx, req.Key); err != nil {
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
	if m.state == nil {
		return "", nil
	}
	_, owner, err := m.state.LoadState(ctx, k)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return "", fmt.Errorf("load session state: %w", err)
	}
	return owner, nil
}

// RegistryChanged follows the registry: a deleted runtime's sessions end
// and its durable state goes; a runtime's warm pool follows its DEFAULT
// version. The registry calls it after each committed write.
func (m *Manager) RegistryChanged(ctx context.Context, c registry.Change) {
	// The writer's caller may leave; the sessions must still end.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endRuntimeTimeout)
	defer cancel()
	switch c.Kind {
	case registry.RuntimeDeleted:
		m.dropPool(c.RuntimeID)
		m.endRuntime(ctx, c.RuntimeID, EndDeleted)
		if m.state != nil {
			if _, err := m.state.DeleteStates(ctx, c.RuntimeID, time.Time{}); err != nil {
				m.log.Error("delete session states of a deleted runtime", "runtime_id", c.RuntimeID, "err", err)
			}
		}
		if m.opts.Storage != nil {
			if err := m.opts.Storage.Delete(c.RuntimeID, ""); err != nil {
				m.log.Error("delete session storage of a deleted runtime", "runtime_id", c.RuntimeID, "err", err)
			}
		}
	case registry.EndpointDeleted:
		if m.opts.Storage != nil {
			if err := m.opts.Storage.Delete(c.RuntimeID, c.Endpoint); err != nil {
				m.log.Error("delete session storage of a deleted endpoint", "runtime_id", c.RuntimeID, "endpoint", c.Endpoint, "err", err)
			}
		}
	case registry.RuntimeCreated, registry.RuntimeUpdated, registry.EndpointChanged:
		m.syncPool(ctx, c.RuntimeID)
	}
}

// endRuntime ends every live session of a runtime and waits for them.
func (m *Manager) endRuntime(ctx context.Context, runtimeID string, reason EndReason) {
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
}

// Shutdown stops admitting calls, ends every live session as shutdown,
// stops the warm pools and the janitor, and waits for all of it.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	pools := m.pools
	m.pools = map[string]*pool{}
	m.mu.Unlock()
	m.shutdown()
	for _, p := range pools {
		p.close()
	}
	waited := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(waited)
	}()
	// Last: a session's teardown waits for its output to be in its log;
	// one that is late loses the rest. No pump starts after this.
	m.pumpOnce.Do(func() {})
	if m.pump != nil {
		defer m.pump.Close()
	}
	select {
	case <-waited:
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

// CloseIdleConnections drops every idle keep-alive connection to agents.
func (m *Manager) CloseIdleConnections() {
	m.mu.Lock()
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	for _, s := range all {
		if a := s.getAgent(); a != nil {
			a.closeIdle()
		}
	}
}

func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	if m.sessions[s.spec.Key] == s {
		delete(m.sessions, s.spec.Key)
	}
	for _, k := range s.aliases {
		delete(m.aliases, k)
	}
	m.mu.Unlock()
}

// ErrAliasTaken: an agent minted a session ID that already names another
// session (or one being started): berth will not route by it.
var ErrAliasTaken = fmt.Errorf("the agent's session ID already names another session: %w", errdefs.ErrAgent)

// Alias lets calls that name id (a protocol's own session ID, as the
// runtime session ID protocol.Key makes of it) reach the call's session,
// for as long as the session lives. An ID that already names another live
// session, alias or claim is refused, so no agent can capture another
// session's calls.
func (c *Call) Alias(id string) error {
	s, m := c.s, c.s.m
	k := Key{RuntimeID: s.spec.RuntimeID, Endpoint: s.spec.Endpoint, SessionID: id}
	m.mu.Lock()
	defer m.mu.Unlock()
	if k == s.spec.Key || m.aliases[k] == s {
		return nil
	}
	if m.sessions[k] != nil || m.aliases[k] != nil || m.claiming[k] != nil {
		return fmt.Errorf("session ID %q: %w", id, ErrAliasTaken)
	}
	if s.killCtx.Err() != nil {
		return fmt.Errorf("session %s: %w", s.spec.SessionID, ErrEnded)
	}
	m.aliases[k] = s
	s.aliases = append(s.aliases, k)
	return nil
}
