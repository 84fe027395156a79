package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/protocol"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Session is one live session incarnation and its sandbox.
//
// The runner goroutine owns the lifecycle. Fields set before ready closes
// (rec, handle, startErr) are read-only afterwards.
type Session struct {
	m       *Manager
	spec    Spec
	backend sandbox.Backend
	log     *slog.Logger

	state    *stateServer    // durable sessions only; set before ready closes
	volume   *storage.Volume // session storage, if the runtime has it; set before ready closes
	warm     bool            // the sandbox came from a warm pool; set before ready closes
	ready    chan struct{}   // closed once the agent answered /ping, or start failed
	done     chan struct{}   // closed after teardown and the final store write
	startErr error
	rec      Record
	// parent is the span of the call that started the session, if any:
	// the session's start is traced under it. Read-only.
	parent trace.SpanContext

	aliases []Key // guarded by Manager.mu

	// killCtx is cancelled, with an *endCause, to end the session; calls in
	// flight derive from it so a stop cuts their streams.
	killCtx context.Context
	kill    context.CancelCauseFunc

	// mu guards the fields that follow.
	mu          sync.Mutex
	agent       *agent // set once the sandbox exists
	inflight    int
	lastActive  time.Time
	busy        bool
	invocations int64
	dirty       bool            // activity not yet written to the store
	owner       string          // the bound user (bind_user)
	running     int             // calls holding a turn (reject and queue policies)
	queue       []chan struct{} // calls waiting for a turn, in arrival order
	agentWire   string          // the protocol session ID the agent minted, if any
}

// bindLocked binds the session to user if it has no owner yet, and
// reports whether user may use it.
func (s *Session) bindLocked(user string) bool {
	if s.owner == "" && user != "" {
		s.owner = user
		s.dirty = true
	}
	return s.owner == user
}

type endCause struct {
	reason EndReason
	detail string
}

func (c *endCause) Error() string { return string(c.reason) + ": " + c.detail }

// end asks the runner to end the session; false if it was already ending.
func (s *Session) end(reason EndReason, detail string) bool {
	if s.killCtx.Err() != nil {
		return false
	}
	s.kill(&endCause{reason, detail})
	return context.Cause(s.killCtx).(*endCause).reason == reason
}

// ended reports why the session ended, if it has.
func (s *Session) ended() (EndReason, string, bool) {
	var c *endCause
	if errors.As(context.Cause(s.killCtx), &c) {
		return c.reason, c.detail, true
	}
	return "", "", false
}

func (s *Session) ownerNow() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner
}

func (s *Session) getAgent() *agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agent
}

// isReady reports whether the session's start has settled.
func (s *Session) isReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

func (s *Session) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}

func (s *Session) setAgent(a *agent) {
	s.mu.Lock()
	s.agent = a
	s.mu.Unlock()
}

// run starts the session; on success it hands the rest of the lifecycle to
// a fresh goroutine, so the stack grown by starting the sandbox is freed
// rather than held by every idle session. Both are owned by Manager.wg.
func (s *Session) run() {
	if !s.startup() {
		s.m.forget(s)
		close(s.done)
		return
	}
	s.m.wg.Go(func() {
		defer close(s.done)
		defer s.m.forget(s)
		s.loop()
		s.teardown()
	})
}

// startup starts the sandbox of the claimed record; false if it failed.
func (s *Session) startup() bool {
	ctx, span := s.m.opts.Tracer.Start(trace.ContextWithSpanContext(context.Background(), s.parent), "StartSession",
		trace.WithAttributes(attribute.String(attrBackend, s.backend.Name())))
	err := s.start(ctx)
	span.SetAttributes(attribute.Bool(attrWarm, s.warm), attribute.String(attrSandboxID, s.rec.SandboxID))
	endSpan(span, err)
	if err != nil {
		s.log.Warn("session start failed", "err", err)
		s.startErr = fmt.Errorf("%w: %v", ErrStartFailed, err)
		if errdefs.NoSpace(err) || errors.Is(err, errdefs.ErrDiskFull) {
			s.startErr = errdefs.DiskFull(err) // berth's disk, not the agent: retry later
		}
		s.end(EndStartFailed, err.Error())
		close(s.ready)
		s.teardown()
		return false
	}
	close(s.ready)
	s.log.Info("session started", "sandbox_id", s.rec.SandboxID, "backend", s.backend.Name(), "warm", s.warm)
	if o := s.m.opts.Observer; o != nil {
		o.SessionStarted(s.spec.Key, s.backend.Name(), s.warm, time.Since(s.rec.CreatedAt))
	}
	return true
}

// start gives the session a sandbox: a warm one from the runtime's pool if
// there is one, else a fresh one; either way healthy before it returns.
func (s *Session) start(tctx context.Context) error {
	logPath := s.m.LogPath(s.spec.RuntimeID, s.rec.ID)
	if mem := s.m.claimPooled(s.spec.RuntimeID, s.spec.Version); mem != nil {
		s.warm = true
		if err := mem.agent.moveLog(logPath); err != nil {
			s.log.Warn("move pooled sandbox log", "err", err)
		}
		if mem.state != nil {
			mem.state.assign(s.spec.Key, s.ownerNow)
			s.state = mem.state
		}
		s.setAgent(mem.agent)
		s.log.Debug("claimed a warm sandbox", "sandbox_id", mem.agent.h.ID())
		return s.recordPlacement(mem.agent.h)
	}
	ctx, cancel := context.WithTimeout(s.killCtx, s.m.opts.StartTimeout)
	defer cancel()
	ctx = trace.ContextWithSpan(ctx, trace.SpanFromContext(tctx))
	var err error
	if path := s.spec.Settings.SessionStorage; path != "" {
		if s.volume, err = s.m.attachStorage(s.spec, s.backend); err != nil {
			return err
		}
	}
	if s.spec.Settings.Sessions.Durable() {
		if s.state, err = s.m.startStateServer(s.rec.ID, int64(s.spec.Settings.Sessions.StateMaxBytes)); err != nil {
			return err
		}
		s.state.assign(s.spec.Key, s.ownerNow)
	}
	a, err := s.m.launch(ctx, launchSpec{
		runtimeID: s.spec.RuntimeID,
		sessionID: s.spec.SessionID,
		name:      sandbox.Name(s.spec.RuntimeID+"/"+s.spec.Endpoint, s.spec.SessionID),
		cfg:       s.spec.Settings,
		backend:   s.backend,
		logPath:   logPath,
		state:     s.state,
		volume:    s.volume,
	}, s.setAgent)
	if err != nil {
		if s.killCtx.Err() != nil {
			return context.Cause(s.killCtx)
		}
		return err
	}
	return s.recordPlacement(a.h)
}

// attachStorage mounts a session's storage for its new sandbox.
func (m *Manager) attachStorage(spec Spec, b sandbox.Backend) (*storage.Volume, error) {
	switch {
	case m.opts.Storage == nil:
		return nil, errors.New("runtime asks for session storage, which this host cannot give (it needs berth to run as root, with loop devices and mkfs.ext4)")
	case !b.Capabilities().Mounts || b.Capabilities().HostPaths:
		return nil, errors.New("session storage needs the linux sandbox backend, which mounts it for the sandbox alone")
	}
	return m.opts.Storage.Attach(storage.Key{RuntimeID: spec.RuntimeID, Endpoint: spec.Endpoint, SessionID: spec.SessionID}, spec.Version)
}

// recordPlacement writes where the session's sandbox answers.
func (s *Session) recordPlacement(h sandbox.Handle) error {
	ctx, cancel := storeCtx()
	defer cancel()
	return s.m.store.UpdateSession(ctx, s.rec.ID, s.rec.Lease, func(r *Record) {
		r.State = StateActive
		r.SandboxID = h.ID()
		r.Addr = h.Addr()
		s.rec.SandboxID, s.rec.Addr = h.ID(), h.Addr()
	})
}

// launchSpec is one sandbox to start, for a session or a warm pool.
type launchSpec struct {
	runtimeID string
	sessionID string // empty for a pool member
	name      string
	cfg       registry.Settings
	backend   sandbox.Backend
	logPath   string
	state     *stateServer
	volume    *storage.Volume
	url       string // the runtime's public invocation URL, "" if unknown
}

// runImage is what an image runtime's sandbox needs of its image.
type runImage struct {
	img    image.Image
	rootfs string
}

// image finds the image a version pinned, pulled when the version was made.
func (m *Manager) image(cfg registry.Settings) (*runImage, error) {
	if cfg.ImageDigest == "" {
		return nil, nil
	}
	if m.opts.Images == nil {
		return nil, errors.New("runtime runs an image, and this berth keeps no image store")
	}
	img, err := m.opts.Images.Get(cfg.ImageDigest)
	if err != nil {
		return nil, fmt.Errorf("image %s (%s): %w (pull it again: berth images pull %s)", cfg.Image, cfg.ImageDigest, err, cfg.Image)
	}
	root, err := m.opts.Images.Rootfs(cfg.ImageDigest)
	if err != nil {
		return nil, err
	}
	if len(cfg.Command) == 0 && len(img.Config.Argv()) == 0 {
		return nil, fmt.Errorf("image %s names no entrypoint or command; give the runtime a command", cfg.Image)
	}
	return &runImage{img: img, rootfs: root}, nil
}

// sandboxSpec derives the sandbox a session or pool member runs from its
// runtime's settings (and, for an image runtime, its image's config, as a
// container runtime reads it): the one place settings become a
// sandbox.Spec.
func sandboxSpec(ls launchSpec, arn string, agentEnv func(AgentIdentity) []string, ri *runImage) sandbox.Spec {
	cfg := ls.cfg
	command, dir := cfg.Command, cfg.Workdir
	env := make([]string, 0, len(cfg.Env)+8)
	var img *sandbox.Image
	if ri != nil {
		c := ri.img.Config
		if len(command) == 0 {
			command = c.Argv()
		}
		dir = c.WorkingDir
		env = append(env, c.Env...) // the runtime's own env, after, wins
		img = &sandbox.Image{Rootfs: ri.rootfs, UID: c.UID, GID: c.GID, Groups: c.Groups, Home: c.Home}
	}
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, api.EnvRuntimeARN+"="+arn)
	if agentEnv != nil {
		for _, kv := range agentEnv(AgentIdentity{RuntimeID: ls.runtimeID, ARN: arn, SessionID: ls.sessionID, Env: cfg.Env}) {
			if k, _, _ := strings.Cut(kv, "="); !hasKey(cfg.Env, k) {
				env = append(env, kv)
			}
		}
	}
	if ls.url != "" {
		env = append(env, api.EnvRuntimeURL+"="+ls.url)
	}
	network := cfg.Network
	if network == "" {
		network = ls.backend.Capabilities().DefaultNetwork
	}
	mounts := slices.Clone(cfg.Mounts)
	if ls.volume != nil {
		mounts = append(mounts, sandbox.Mount{Source: ls.volume.Dir, Target: cfg.SessionStorage})
	}
	return sandbox.Spec{
		Name:      ls.name,
		RuntimeID: ls.runtimeID,
		SessionID: ls.sessionID,
		Command:   command,
		Dir:       dir,
		Env:       env,
		Port:      protocol.For(cfg.Protocol).Port,
		Limits:    cfg.Limits.Sandbox(),
		Network:   network,
		Mounts:    mounts,
		Image:     img,
	}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// launch starts a sandbox and waits for its first healthy ping. started
// receives the agent as soon as the sandbox exists, so a caller that gives
// up can still stop it.
func (m *Manager) launch(ctx context.Context, ls launchSpec, started func(*agent)) (*agent, error) {
	ri, err := m.image(ls.cfg)
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	if ri != nil && ri.img.Emulated {
		m.log.Info("running image under emulation", "runtime_id", ls.runtimeID, "session_id", ls.sessionID,
			"image", ls.cfg.Image, "platform", ri.img.Platform)
	}
	out, err := m.openOutput(ls.logPath)
	if err != nil {
		return nil, err
	}
	if m.opts.RuntimeURL != nil {
		ls.url = m.opts.RuntimeURL(ls.runtimeID)
	}
	spec := sandboxSpec(ls, m.opts.RuntimeARN(ls.runtimeID), m.opts.AgentEnv, ri)
	if out != nil {
		spec.Output = out.Writer()
	}
	proto := protocol.For(ls.cfg.Protocol)
	caps := ls.backend.Capabilities()
	if ls.state != nil {
		ls.state.wire(&spec, caps.HostPaths)
	}
	_, span := m.opts.Tracer.Start(ctx, "StartSandbox", trace.WithAttributes(attribute.String(attrBackend, ls.backend.Name())))
	h, err := ls.backend.Start(ctx, spec)
	if err != nil {
		endOutput(out) // keeps what the backend wrote of why
		err = fmt.Errorf("start sandbox: %w", err)
		endSpan(span, err)
		return nil, err
	}
	span.SetAttributes(attribute.String(attrSandboxID, h.ID()))
	endSpan(span, nil)
	if out != nil {
		out.Started()
	}
	a := newAgent(h, proto, out)
	started(a)
	_, span = m.opts.Tracer.Start(ctx, "FirstPing")
	err = m.firstPing(ctx, a, ls, spec)
	endSpan(span, err)
	return a, err
}

// firstPing polls the new sandbox's /ping until it answers healthy.
func (m *Manager) firstPing(ctx context.Context, a *agent, ls launchSpec, spec sandbox.Spec) error {
	h := a.h
	caps := ls.backend.Capabilities()
	proto := a.proto
	// An agent that ignores PORT (AWS's SDKs bind 8080; MCP servers often
	// 8000, A2A agents 9000) cannot share the host network with other
	// sessions: say so rather than time out mutely.
	hint := ""
	if caps.SharesHostNetwork(spec.Network) {
		hint = fmt.Sprintf("; the agent must listen on $PORT: agents that always bind %s's port %d "+
			"need the linux sandbox backend (sandbox: linux), which gives each session its own network namespace", proto.Protocol, proto.Port)
	}
	// Poll /ping quickly at first: a Go agent answers within milliseconds.
	delay := time.Millisecond
	for {
		_, err := a.ping(ctx, m.pingTimeout())
		if err == nil {
			return nil
		}
		select {
		case <-h.Done():
			return fmt.Errorf("agent exited before it became healthy (%s); its log: berth sessions logs %s%s", h.Exit(), strings.TrimSuffix(filepath.Base(ls.logPath), ".log"), hint)
		case <-ctx.Done():
			return fmt.Errorf("agent not healthy within %s: last ping: %v%s", m.opts.StartTimeout, err, hint)
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

func (m *Manager) pingTimeout() time.Duration { return max(m.opts.PingInterval, time.Second) }

// loop runs the health checks and lifetime timers until the session ends.
func (s *Session) loop() {
	opts := s.m.opts
	cfg := s.spec.Settings
	a := s.getAgent()
	h := a.h
	pings := time.NewTicker(opts.PingInterval)
	defer pings.Stop()
	idleFor, _ := s.idleLimit()
	idle := time.NewTimer(idleFor)
	defer idle.Stop()
	life := time.NewTimer(time.Until(s.rec.ExpiresAt))
	defer life.Stop()
	failures := 0
	for {
		select {
		case <-s.killCtx.Done():
			return
		case <-s.m.shutdownCtx.Done():
			// Restart without ending is not turned on: berth going away
			// ends its sessions.
			s.end(EndShutdown, "berth shutting down")
		case <-h.Done():
			s.end(EndCrashed, "agent "+h.Exit().String())
		case <-life.C:
			s.end(EndMaxLifetime, fmt.Sprintf("max lifetime %s reached", cfg.MaxLifetime.D()))
		case <-idle.C:
			if next, ended := s.reapIfIdle(); !ended {
				idle.Reset(next)
			}
		case <-pings.C:
			st, err := a.ping(s.killCtx, s.m.pingTimeout())
			if s.killCtx.Err() != nil {
				return
			}
			if err != nil {
				if s.inFlight() > 0 {
					// Busy by definition: a single-threaded agent cannot
					// answer /ping while it serves a call. Only a crash or
					// the call's own failure ends the session now.
					s.log.Debug("ping failed during a call", "err", err)
					failures = 0
					continue
				}
				failures++
				s.log.Warn("ping failed", "err", err, "failures", failures)
				if failures >= opts.PingFailures {
					// An agent that died fails its pings too; its exit, which
					// says how it died, may be a moment behind them.
					select {
					case <-h.Done():
						s.end(EndCrashed, "agent "+h.Exit().String())
					case <-time.After(opts.PingInterval):
						s.end(EndUnhealthy, fmt.Sprintf("%d pings failed; last: %v", failures, err))
					}
				}
				continue
			}
			failures = 0
			s.observePing(st)
			s.flush()
		}
	}
}

// observePing applies a ping: HealthyBusy holds off the idle reaper, and a
// Healthy status restarts the idle clock from its time_of_last_update.
func (s *Session) observePing(st api.PingResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = st.Status == api.PingHealthyBusy
	if !s.busy && st.TimeOfLastUpdate > 0 {
		if t := time.Unix(st.TimeOfLastUpdate, 0); t.After(s.lastActive) && !t.After(time.Now()) {
			s.lastActive = t
		}
	}
}

// reapIfIdle ends the session when it has been idle long enough; otherwise
// it says when to look again.
func (s *Session) reapIfIdle() (time.Duration, bool) {
	timeout, reason := s.idleLimit()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight > 0 || s.busy {
		return timeout, false
	}
	if left := timeout - time.Since(s.lastActive); left > 0 {
		return left, false
	}
	// Under s.mu, so Acquire cannot admit a call between check and kill.
	s.kill(&endCause{reason, fmt.Sprintf("idle for %s", timeout)})
	return 0, true
}

// idleLimit is how long the session may idle, and why it ends after: a
// durable session with suspend_after is suspended early, its state kept.
func (s *Session) idleLimit() (time.Duration, EndReason) {
	pol := s.spec.Settings.Sessions
	if pol.Durable() && pol.SuspendAfter > 0 && pol.SuspendAfter < s.spec.Settings.IdleTimeout {
		return pol.SuspendAfter.D(), EndSuspended
	}
	return s.spec.Settings.IdleTimeout.D(), EndIdleTimeout
}

// flush writes the session's activity to the store, so deadlines live in
// the store as well as in timers.
func (s *Session) flush() {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	last, n, state, owner := s.lastActive, s.invocations, StateIdle, s.owner
	if s.inflight > 0 || s.busy {
		state = StateActive
	}
	s.mu.Unlock()
	ctx, cancel := storeCtx()
	defer cancel()
	err := s.m.store.UpdateSession(ctx, s.rec.ID, s.rec.Lease, func(r *Record) {
		r.LastActiveAt = last.UTC()
		r.Invocations = n
		r.State = state
		r.UserID = owner
	})
	if err != nil {
		s.log.Warn("record session activity", "err", err)
	}
}

// teardown stops the sandbox and records the end, on a fresh bounded context.
func (s *Session) teardown() {
	reason, detail, _ := s.ended()
	grace := s.m.opts.StopGrace
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.killCtx), grace+30*time.Second)
	defer cancel()
	if reason == EndCrashed || reason == EndUnhealthy {
		s.log.Warn("session ended", "reason", reason, "detail", detail)
	} else {
		s.log.Info("session ended", "reason", reason, "detail", detail)
	}
	if a := s.getAgent(); a != nil {
		if reason == EndCrashed {
			if st := a.h.Exit(); st.OOMKilled {
				detail = "agent " + st.String()
			}
		}
		if err := a.stop(ctx, grace); err != nil {
			s.log.Error("stop sandbox", "err", err)
		}
	}
	if s.state != nil {
		s.state.close()
	}
	if s.volume != nil {
		if err := s.volume.Detach(); err != nil {
			s.log.Error("detach session storage", "err", err)
		}
	}
	if s.rec.ID == "" {
		return
	}
	if o := s.m.opts.Observer; o != nil {
		o.SessionEnded(s.spec.Key, reason, time.Since(s.rec.CreatedAt))
	}
	s.mu.Lock()
	last, n := s.lastActive, s.invocations
	s.mu.Unlock()
	err := s.m.store.UpdateSession(ctx, s.rec.ID, s.rec.Lease, func(r *Record) {
		r.LastActiveAt = last.UTC()
		r.Invocations = n
	})
	if err == nil {
		err = s.m.store.EndSession(ctx, s.rec.ID, s.rec.Lease, reason, detail, time.Now().UTC())
	}
	if err != nil {
		s.log.Error("record session end", "err", err)
	}
}

// Info is a live session as the inspection API shows it.
type Info struct {
	Record
	InFlight int
	Busy     bool
	// Queued counts calls waiting for their turn (concurrency: queue).
	Queued int
	Stats  *sandbox.Stats
}

func (s *Session) info() Info {
	// The runner writes rec until ready closes; before that, only the key.
	rec := Record{Key: s.spec.Key, Version: s.spec.Version, State: StateStarting}
	select {
	case <-s.ready:
		rec = s.rec
	default:
	}
	s.mu.Lock()
	in := Info{Record: rec, InFlight: s.inflight, Busy: s.busy, Queued: len(s.queue)}
	in.LastActiveAt = s.lastActive
	in.Invocations = s.invocations
	a := s.agent
	s.mu.Unlock()
	switch {
	case s.killCtx.Err() != nil:
		in.State = StateTerminated
	case in.InFlight > 0 || in.Busy:
		in.State = StateActive
	case in.ID != "" && in.SandboxID != "":
		in.State = StateIdle
	}
	in.UserID = s.ownerNow()
	if a == nil {
		return in
	}
	if sr, ok := a.h.(sandbox.StatsReporter); ok {
		if st, err := sr.Stats(); err == nil {
			in.Stats = &st
		}
	}
	return in
}

// Call is one admitted invocation.
type Call struct {
	s       *Session
	once    sync.Once
	turn    bool // holds one of the session's turns
	command bool // a command (AcquireCommand), not an invocation
}

// admit applies the session's concurrency policy to the call.
func (c *Call) admit(ctx context.Context, pol registry.SessionPolicy) error {
	s := c.s
	switch pol.Concurrency {
	case registry.ConcurrencyReject:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.running > 0 {
			return fmt.Errorf("session %s: %w", s.spec.SessionID, ErrBusy)
		}
		s.running++
		c.turn = true
		return nil
	case registry.ConcurrencyQueue:
		s.mu.Lock()
		if s.running == 0 && len(s.queue) == 0 {
			s.running++
			c.turn = true
			s.mu.Unlock()
			return nil
		}
		if len(s.queue) >= pol.QueueSize {
			s.mu.Unlock()
			return fmt.Errorf("session %s has %d calls waiting: %w", s.spec.SessionID, len(s.queue), errdefs.ErrUnavailable)
		}
		ch := make(chan struct{})
		s.queue = append(s.queue, ch)
		s.mu.Unlock()
		t := time.NewTimer(pol.QueueTimeout.D())
		defer t.Stop()
		var err error
		select {
		case <-ch:
			c.turn = true // handed over by the call before us
			return nil
		case <-t.C:
			err = fmt.Errorf("session %s: waited %s: %w", s.spec.SessionID, pol.QueueTimeout.D(), errdefs.ErrUnavailable)
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.killCtx.Done():
			err = fmt.Errorf("session %s: %w", s.spec.SessionID, ErrEnded)
		}
		s.mu.Lock()
		for i, w := range s.queue {
			if w == ch {
				s.queue = append(s.queue[:i], s.queue[i+1:]...)
				s.mu.Unlock()
				return err
			}
		}
		s.mu.Unlock()
		// The turn arrived as we gave up: take it, then pass it on.
		c.turn = true
		return err
	}
	return nil
}

// releaseTurnLocked hands the call's turn to the next waiter, if any.
func (s *Session) releaseTurnLocked() {
	if len(s.queue) > 0 {
		close(s.queue[0])
		s.queue = s.queue[1:]
		return
	}
	s.running--
}

// Session returns the session record the call runs in.
func (c *Call) Session() Record { return c.s.rec }

// RoundTrip sends req to the call's own agent; req's URL needs only a
// path and query.
func (c *Call) RoundTrip(req *http.Request) (*http.Response, error) { return c.s.agent.roundTrip(req) }

// AgentSessionID is the protocol session ID this session's agent minted
// (an MCP server's Mcp-Session-Id), "" if none: the one ID the agent
// knows, whatever ID the client speaks.
func (c *Call) AgentSessionID() string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.agentWire
}

// SetAgentSessionID records the protocol session ID the agent minted. It
// lives with the sandbox: a new sandbox mints its own.
func (c *Call) SetAgentSessionID(id string) {
	c.s.mu.Lock()
	c.s.agentWire = id
	c.s.mu.Unlock()
}

// KillContext is cancelled when the session ends.
func (c *Call) KillContext() context.Context { return c.s.killCtx }

// Ended reports why the session ended, if it has.
func (c *Call) Ended() (EndReason, string, bool) { return c.s.ended() }

// Release releases the call and restarts the session's idle clock.
func (c *Call) Release() {
	c.once.Do(func() {
		s := c.s
		s.mu.Lock()
		if c.turn {
			s.releaseTurnLocked()
		}
		s.inflight--
		s.lastActive = time.Now()
		if s.startErr == nil && !c.command {
			s.invocations++
		}
		s.dirty = true
		s.mu.Unlock()
	})
}
