// Package sandboxfake is a sandbox.Backend for tests whose agents are HTTP
// handlers inside the test process, reached over in-memory pipes: it starts
// no process and opens no socket or file, so it works inside a
// testing/synctest bubble, whose fake clock then drives every delay below.
//
// Each sandbox follows a Script, like Nomad's mock driver: read from the
// spec's environment (Script.Env makes the entries, so a runtime's env can
// carry them), else the backend's default. A test can also steer a running
// sandbox through its *Handle (SetPing, Crash).
//
// The agent answers GET /ping and POST /invocations, whose JSON payload picks
// an op the way sandboxtest's test agent does: echo (the default: headers,
// payload, env, cwd and the invocation count), crash, hang, busy, status,
// sleep, and write and read, on a per-sandbox in-memory filesystem (reads
// of relative paths fall back to the real files of Spec.Dir, the agent's
// working directory). It also honours the test agent's AGENT_MODE values
// crash-on-start, ignore-term, unhealthy and no-listen, so the conformance
// suite can drive it (sandboxtest.Options.InProcess). Exec runs a tiny
// scripted shell (echo, pwd, sleep, exit; see Handle.Exec). It passes the suite
// but for what only real processes have: log capture, process trees and
// their escapees, bad commands (it runs none), and Reap after a killed
// berth process; the suite skips those, saying so.
package sandboxfake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
)

// Script is how one fake sandbox behaves.
type Script struct {
	// StartDelay is how long Start takes (less if its context ends).
	StartDelay time.Duration
	// StartError, if set, makes Start fail with this message.
	StartError string
	// ExitAfter, if positive, makes the agent exit by itself this long
	// after Start, with ExitCode.
	ExitAfter time.Duration
	ExitCode  int
	// Pings are /ping's answers in turn, the last one repeating: a status
	// ("Healthy", "HealthyBusy") answered with 200, or an HTTP status code
	// ("500"). Empty means always Healthy.
	Pings []string
	// Hang makes the agent accept connections and read requests but never
	// answer one, pings included.
	Hang bool
	// IgnoreTerm makes the agent ignore Stop's SIGTERM: it ends when the
	// grace runs out, killed.
	IgnoreTerm bool
}

// Environment entries a Script travels in.
const (
	envStartDelay = "SANDBOXFAKE_START_DELAY"
	envStartError = "SANDBOXFAKE_START_ERROR"
	envExitAfter  = "SANDBOXFAKE_EXIT_AFTER"
	envExitCode   = "SANDBOXFAKE_EXIT_CODE"
	envPings      = "SANDBOXFAKE_PINGS"
	envHang       = "SANDBOXFAKE_HANG"
	envIgnoreTerm = "SANDBOXFAKE_IGNORE_TERM"
	// envAgentMode is the test agent's start-up mode (sandboxtest).
	envAgentMode = "AGENT_MODE"
)

// Env encodes s as environment entries for a spec (or a runtime's env).
// Zero fields are left out.
func (s Script) Env() []string {
	var env []string
	add := func(k, v string) { env = append(env, k+"="+v) }
	if s.StartDelay > 0 {
		add(envStartDelay, s.StartDelay.String())
	}
	if s.StartError != "" {
		add(envStartError, s.StartError)
	}
	if s.ExitAfter > 0 {
		add(envExitAfter, s.ExitAfter.String())
	}
	if s.ExitCode != 0 {
		add(envExitCode, strconv.Itoa(s.ExitCode))
	}
	if len(s.Pings) > 0 {
		add(envPings, strings.Join(s.Pings, ","))
	}
	if s.Hang {
		add(envHang, "1")
	}
	if s.IgnoreTerm {
		add(envIgnoreTerm, "1")
	}
	return env
}

// scriptFor is def overridden by whatever env sets.
func scriptFor(def Script, env []string) (Script, error) {
	s := def
	s.Pings = slices.Clone(def.Pings)
	var errs []error
	dur := func(v string) time.Duration {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, err)
		}
		return d
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case envStartDelay:
			s.StartDelay = dur(v)
		case envStartError:
			s.StartError = v
		case envExitAfter:
			s.ExitAfter = dur(v)
		case envExitCode:
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, err)
			}
			s.ExitCode = n
		case envPings:
			s.Pings = strings.Split(v, ",")
		case envHang:
			s.Hang = v == "1"
		case envIgnoreTerm:
			s.IgnoreTerm = v == "1"
		case envAgentMode:
			switch v {
			case "crash-on-start":
				s.ExitAfter, s.ExitCode = time.Nanosecond, 2
			case "ignore-term":
				s.IgnoreTerm = true
			case "unhealthy":
				s.Pings = []string{"500"}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("sandboxfake script: %w", err)
	}
	return s, nil
}

// Options configures a Backend.
type Options struct {
	// Script is the default for sandboxes whose spec's env sets nothing.
	Script Script
	// Capabilities, if set, replaces the default: every network mode,
	// network none by default, private networks, host paths and mounts.
	Capabilities *sandbox.Capabilities
}

// Backend starts fake sandboxes. Backends made by Restart share its
// sandboxes, as backend instances over one root would.
//
// Lock order: world.mu, then Backend.mu or Handle.mu.
type Backend struct {
	opts  Options
	world *world
	// mu guards held.
	mu sync.Mutex
	// held is what this instance started or attached, by name.
	held map[string]*Handle
}

var _ sandbox.Backend = (*Backend)(nil)

// world is every sandbox running "on the host", across Restarts.
type world struct {
	// mu guards the fields that follow.
	mu      sync.Mutex
	live    map[string]*Handle
	started []*Handle
}

// New returns a backend with no sandboxes.
func New(opts Options) *Backend {
	return &Backend{opts: opts, world: &world{live: map[string]*Handle{}}, held: map[string]*Handle{}}
}

// Restart returns a new backend instance over b's sandboxes, as a berth
// restarted over the same state would get: they run on, held by neither
// until Attach.
func (b *Backend) Restart() *Backend {
	return &Backend{opts: b.opts, world: b.world, held: map[string]*Handle{}}
}

// Name is "fake".
func (b *Backend) Name() string { return "fake" }

// Capabilities implements sandbox.Backend.
func (b *Backend) Capabilities() sandbox.Capabilities {
	if c := b.opts.Capabilities; c != nil {
		return *c
	}
	return sandbox.Capabilities{
		DefaultNetwork: sandbox.NetworkNone,
		Networks:       []sandbox.NetworkMode{sandbox.NetworkNone, sandbox.NetworkHost, sandbox.NetworkEgress},
		PrivateNetwork: true,
		HostPaths:      true,
		Mounts:         true,
	}
}

// Start implements sandbox.Backend.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	h, err := b.start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	return h, nil
}

func (b *Backend) start(ctx context.Context, spec sandbox.Spec) (*Handle, error) {
	if !sandbox.ValidName(spec.Name) {
		return nil, fmt.Errorf("name %q is not from sandbox.Name", spec.Name)
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, errors.New("empty command")
	}
	caps := b.Capabilities()
	if spec.Network != "" && !slices.Contains(caps.Networks, spec.Network) {
		return nil, fmt.Errorf("network mode %q: %w", spec.Network, sandbox.ErrUnsupported)
	}
	if spec.Image != nil && !caps.Images {
		return nil, fmt.Errorf("image: %w", sandbox.ErrUnsupported)
	}
	if len(spec.Mounts) > 0 && !caps.Mounts {
		return nil, fmt.Errorf("mounts: %w", sandbox.ErrUnsupported)
	}
	script, err := scriptFor(b.opts.Script, spec.Env)
	if err != nil {
		return nil, err
	}
	if script.StartDelay > 0 {
		t := time.NewTimer(script.StartDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if script.StartError != "" {
		return nil, errors.New(script.StartError)
	}
	w := b.world
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.live[spec.Name]; ok {
		return nil, fmt.Errorf("already running: %w", fs.ErrExist)
	}
	h := newHandle(spec, script, agentMode(spec.Env) == "no-listen", func() {
		w.mu.Lock()
		delete(w.live, spec.Name)
		w.mu.Unlock()
	})
	w.live[spec.Name] = h
	w.started = append(w.started, h)
	b.hold(spec.Name, h)
	return h, nil
}

func agentMode(env []string) string {
	mode := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, envAgentMode+"="); ok {
			mode = v
		}
	}
	return mode
}

// hold records that this instance holds h; false if it already did.
func (b *Backend) hold(name string, h *Handle) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[name] == h {
		return false
	}
	b.held[name] = h
	return true
}

func (b *Backend) holds(name string, h *Handle) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held[name] == h
}

// Attach implements sandbox.Backend: the handle is the sandbox's own, shared
// with the instance that started it.
func (b *Backend) Attach(ctx context.Context, id string) (sandbox.Handle, error) {
	b.world.mu.Lock()
	h, ok := b.world.live[id]
	b.world.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("attach sandbox %s: %w", id, sandbox.ErrNotFound)
	}
	if !b.hold(id, h) {
		return nil, fmt.Errorf("attach sandbox %s: already held here: %w", id, fs.ErrExist)
	}
	return h, nil
}

// Reap stops every sandbox this instance does not hold, as a restarted
// berth's Reap kills what its predecessor left.
func (b *Backend) Reap(ctx context.Context) error {
	b.world.mu.Lock()
	var left []*Handle
	for name, h := range b.world.live {
		if !b.holds(name, h) {
			left = append(left, h)
		}
	}
	b.world.mu.Unlock()
	for _, h := range left {
		h.end(sandbox.ExitStatus{Code: -1, Signal: "SIGKILL"})
		<-h.served
	}
	return nil
}

// Handles lists every sandbox started over this backend's world, oldest
// first, stopped ones included.
func (b *Backend) Handles() []*Handle {
	b.world.mu.Lock()
	defer b.world.mu.Unlock()
	return slices.Clone(b.world.started)
}

// Last is the sandbox started most recently, or nil.
func (b *Backend) Last() *Handle {
	b.world.mu.Lock()
	defer b.world.mu.Unlock()
	if len(b.world.started) == 0 {
		return nil
	}
	return b.world.started[len(b.world.started)-1]
}

// Live counts the sandboxes running now.
func (b *Backend) Live() int {
	b.world.mu.Lock()
	defer b.world.mu.Unlock()
	return len(b.world.live)
}

var _ net.Addr = pipeAddr("")

// pipeAddr is the fake agent's listening address.
type pipeAddr string

func (pipeAddr) Network() string  { return "pipe" }
func (a pipeAddr) String() string { return string(a) }

// Ping answers a test can set; see Script.Pings.
const (
	PingHealthy     = string(api.PingHealthy)
	PingHealthyBusy = string(api.PingHealthyBusy)
)
