//go:build unix

// Package process is the portable sandbox backend: each sandbox is a plain
// child process of berth, in its own process group, with a private scratch
// dir for HOME and TMPDIR and a free loopback port. It isolates nothing
// beyond that (same user, same network, same filesystem), which is what a
// development backend should be: it runs anywhere berth builds for unix.
//
// Layout under the backend root, one dir per sandbox, named by Spec.Name:
//
//	<root>/<name>/sandbox.json  pid, start time, port and cgroup, for Reap and Attach
//	<root>/<name>/home          HOME (and the working dir when Spec.Dir is empty)
//	<root>/<name>/tmp           TMPDIR
//
// The record sits beside HOME, not in it, so an agent cleaning its home
// cannot make berth lose track of it.
//
// Teardown reaches every process of a sandbox, including those that left
// its process group (setsid, a daemonizing double fork). On Linux each
// sandbox gets a cgroup of its own where the host allows one (cgroup v2,
// entered at clone; else a v1 hierarchy) and is killed by cgroup. Without
// one, berth becomes a child subreaper and finds a sandbox's processes by
// the marker every one inherits in its environment (BERTH_SANDBOX=<name>),
// which a process that execs with a scrubbed environment sheds. Records name
// processes by PID and start time, so nothing that merely reused a PID is
// signalled. Elsewhere only the process group is killed and Reap only
// removes leftover dirs.
//
// Spec.Limits are not enforced (a warning is logged), and Spec.Mounts and
// network modes other than host are refused with sandbox.ErrUnsupported.
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

const (
	recordFile = "sandbox.json"
	// killWait bounds how long teardown waits for a SIGKILLed tree; only an
	// uninterruptible sleep makes it take more than milliseconds.
	killWait = 10 * time.Second
	// envSandbox marks every process of a sandbox, so berth can recognise
	// the ones that left its process group.
	envSandbox = "BERTH_SANDBOX"
)

// Backend starts sandboxes as child processes.
type Backend struct {
	root          string
	logger        *slog.Logger
	limitsWarning sync.Once
	// ports holds the ports handed to live agents.
	ports sandbox.Ports
	// tree finds and kills every process of a sandbox (tree_*.go).
	tree tracking

	// mu guards the fields that follow. Lock order: handle.mu is never
	// held while taking Backend.mu.
	mu sync.Mutex
	// live holds the names of sandboxes this instance started or attached
	// and has not stopped yet; Reap leaves them alone and Start refuses
	// duplicates.
	live map[string]bool
	// leaders maps the agents this process started, until reaped, to
	// their sandboxes.
	leaders map[int]*handle
}

var _ sandbox.Backend = (*Backend)(nil)

// New returns a backend that keeps per-sandbox dirs under root (created on
// first Start). A nil logger discards logs.
func New(root string, logger *slog.Logger) *Backend {
	return newBackend(root, logger, trackAuto)
}

func newBackend(root string, logger *slog.Logger, mode trackMode) *Backend {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("backend", "process")
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return &Backend{
		root:    root,
		logger:  logger,
		tree:    newTracking(root, mode, logger),
		live:    map[string]bool{},
		leaders: map[int]*handle{},
	}
}

// Name is the backend's config name.
func (b *Backend) Name() string { return "process" }

// Capabilities: host network only, host paths, no mounts.
func (b *Backend) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{
		DefaultNetwork: sandbox.NetworkHost,
		Networks:       []sandbox.NetworkMode{sandbox.NetworkHost},
		HostPaths:      true,
	}
}

// record is what Reap and Attach need to find a sandbox's processes from
// another berth process.
type record struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	PGID int    `json:"pgid"`
	// StartTime is the leader's start time in clock ticks since boot
	// (field 22 of /proc/<pid>/stat); zero where it cannot be read.
	StartTime uint64 `json:"start_time"`
	Port      int    `json:"port,omitempty"`
	// Cgroup is the sandbox's cgroup directory, if it has one.
	Cgroup string `json:"cgroup,omitempty"`
	// Dir and Env are the agent's working directory and its Spec.Env, for
	// commands run beside it (Exec), also from an attached handle.
	Dir string   `json:"dir,omitempty"`
	Env []string `json:"env,omitempty"`
}

// Start creates the sandbox's dirs and starts its agent. It returns once
// the agent process has been exec'd.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	if err := b.validate(spec); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	logger := b.logger.With("sandbox", spec.Name, "runtime_id", spec.RuntimeID, "session_id", spec.SessionID)
	if spec.Limits != (sandbox.Limits{}) {
		b.limitsWarning.Do(func() {
			logger.Warn("resource limits are not enforced by the process backend", "limits", spec.Limits)
		})
	}

	if !b.reserveName(spec.Name) {
		return nil, fmt.Errorf("start sandbox %s: already running: %w", spec.Name, fs.ErrExist)
	}
	port, err := b.ports.Take()
	if err != nil {
		b.releaseName(spec.Name)
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	h, err := b.start(spec, port, logger)
	if err != nil {
		b.ports.Release(port)
		b.releaseName(spec.Name)
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	return h, nil
}

func (b *Backend) validate(spec sandbox.Spec) error {
	if !sandbox.ValidName(spec.Name) {
		return fmt.Errorf("name %q is not from sandbox.Name", spec.Name)
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return errors.New("empty command")
	}
	caps := b.Capabilities()
	if spec.Network != "" && !slices.Contains(caps.Networks, spec.Network) {
		return fmt.Errorf("network mode %q: %w", spec.Network, sandbox.ErrUnsupported)
	}
	if spec.Image != nil && !caps.Images {
		return fmt.Errorf("container images need the linux sandbox backend; the process backend runs agents in the host's own filesystem: %w", sandbox.ErrUnsupported)
	}
	if len(spec.Mounts) > 0 && !caps.Mounts {
		return fmt.Errorf("mounts: %w", sandbox.ErrUnsupported)
	}
	return nil
}

// start does the work of Start once the name and port are reserved. On
// error it leaves no process, cgroup or dir behind.
func (b *Backend) start(spec sandbox.Spec, port int, logger *slog.Logger) (*handle, error) {
	dir := filepath.Join(b.root, spec.Name)
	home, tmp := filepath.Join(dir, "home"), filepath.Join(dir, "tmp")
	if err := os.MkdirAll(b.root, 0o700); err != nil {
		return nil, fmt.Errorf("create backend root: %w", err)
	}
	// Mkdir, not MkdirAll: an existing dir is a leftover Reap has not seen.
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	rec := record{Name: spec.Name, Port: port}
	started := false
	defer func() {
		if !started {
			b.tree.remove(rec)
			_ = os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{home, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("create scratch dir: %w", err)
		}
	}
	var err error
	if rec.Cgroup, err = b.tree.create(spec.Name); err != nil {
		return nil, err
	}

	logFile, closeLog, err := spec.OpenOutput()
	if err != nil {
		return nil, err
	}
	// The child holds its own descriptor once started.
	defer closeLog()

	cmd, err := command(spec, home, tmp, port)
	if err != nil {
		fmt.Fprintf(logFile, "berth: start agent: %v\n", err)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	rec.Dir, rec.Env = cmd.Dir, spec.Env
	if err := b.tree.start(rec.Cgroup, cmd); err != nil {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
		fmt.Fprintf(logFile, "berth: start agent: %v\n", err)
		return nil, fmt.Errorf("start agent: %w", err)
	}
	rec.PID, rec.PGID = cmd.Process.Pid, cmd.Process.Pid
	// The leader cannot be reaped before wait runs, so its PID and start
	// time are stable here.
	rec.StartTime, _ = procStartTime(rec.PID)
	if err := writeRecord(dir, rec); err != nil {
		_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, err
	}
	h := b.newHandle(rec, dir, logger.With("pid", rec.PID))
	h.cmd = cmd
	b.mu.Lock()
	b.leaders[rec.PID] = h
	b.mu.Unlock()
	started = true
	go h.wait()
	h.logger.Info("sandbox started", "addr", h.addr, "dir", dir, "cgroup", rec.Cgroup)
	return h, nil
}

func (b *Backend) newHandle(rec record, dir string, logger *slog.Logger) *handle {
	return &handle{
		b:       b,
		rec:     rec,
		dir:     dir,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(rec.Port)),
		logger:  logger,
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// Attach takes charge of a sandbox an earlier instance over the same root
// started. Its agent is not this process's child (unless the earlier
// instance lives in this process), so its exit status is unknown.
func (b *Backend) Attach(ctx context.Context, id string) (sandbox.Handle, error) {
	if !sandbox.ValidName(id) {
		return nil, fmt.Errorf("attach sandbox %s: not a sandbox name: %w", id, sandbox.ErrNotFound)
	}
	if !b.reserveName(id) {
		return nil, fmt.Errorf("attach sandbox %s: already held here: %w", id, fs.ErrExist)
	}
	h, err := b.attach(id)
	if err != nil {
		b.releaseName(id)
		return nil, fmt.Errorf("attach sandbox %s: %w", id, err)
	}
	go h.wait()
	h.logger.Info("sandbox attached", "addr", h.addr)
	return h, nil
}

func (b *Backend) attach(id string) (*handle, error) {
	dir := filepath.Join(b.root, id)
	rec, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, sandbox.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if rec.Name != id || rec.Port <= 0 {
		return nil, fmt.Errorf("record %s describes %q on port %d", filepath.Join(dir, recordFile), rec.Name, rec.Port)
	}
	h := b.newHandle(rec, dir, b.logger.With("sandbox", id, "pid", rec.PID))
	if h.leader, err = openLeader(rec); err != nil {
		return nil, err
	}
	if !b.ports.Hold(rec.Port) {
		h.leader.close()
		return nil, fmt.Errorf("port %d is held by another sandbox here", rec.Port)
	}
	return h, nil
}

// command builds the agent's exec.Cmd. The agent inherits berth's
// environment (it runs as the same user and could read it anyway), then
// Spec.Env, then the variables the backend owns.
func command(spec sandbox.Spec, home, tmp string, port int) (*exec.Cmd, error) {
	wd := spec.Dir
	if wd == "" {
		wd = home
	}
	wd, err := filepath.Abs(wd)
	if err != nil {
		return nil, fmt.Errorf("resolve working dir: %w", err)
	}
	path, err := lookPath(spec.Command[0], wd, spec.Env)
	if err != nil {
		return nil, fmt.Errorf("find agent command: %w", err)
	}
	cmd := exec.Command(path, spec.Command[1:]...)
	cmd.Args[0] = spec.Command[0]
	cmd.Dir = wd
	cmd.Env = agentEnv(spec.Env, spec.Name, home, tmp, port)
	cmd.SysProcAttr = sysProcAttr()
	return cmd, nil
}

// agentEnv is the environment of a sandbox's agent and of the commands run
// beside it: berth's own (the agent runs as the same user and could read it
// anyway), then Spec.Env, then the variables the backend owns.
func agentEnv(specEnv []string, name, home, tmp string, port int) []string {
	env := append(os.Environ(), specEnv...)
	return append(env,
		"PORT="+strconv.Itoa(port),
		"HOME="+home,
		"TMPDIR="+tmp,
		"BERTH_AGENT_HOST=127.0.0.1",
		envSandbox+"="+name,
	)
}

// lookPath resolves argv[0]: with a slash, against the working dir; bare,
// through the PATH in env if it sets one, else berth's own PATH.
func lookPath(name, wd string, env []string) (string, error) {
	if strings.ContainsRune(name, '/') {
		if !filepath.IsAbs(name) {
			name = filepath.Join(wd, name)
		}
		return name, nil // exec reports a missing or non-executable file
	}
	pathEnv, ok := "", false
	for _, kv := range env {
		if v, found := strings.CutPrefix(kv, "PATH="); found {
			pathEnv, ok = v, true
		}
	}
	if !ok {
		return exec.LookPath(name)
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // relative PATH entries would depend on berth's cwd
		}
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in the spec's PATH: %w", name, exec.ErrNotFound)
}

func writeRecord(dir string, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode sandbox record: %w", err)
	}
	tmp := filepath.Join(dir, recordFile+".new")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write sandbox record: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordFile)); err != nil {
		return fmt.Errorf("write sandbox record: %w", err)
	}
	return nil
}

func readRecord(dir string) (record, error) {
	var rec record
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("decode sandbox record: %w", err)
	}
	return rec, nil
}

func (b *Backend) reserveName(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live[name] {
		return false
	}
	b.live[name] = true
	return true
}

func (b *Backend) releaseName(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.live, name)
}

// otherLeaders are the agents of this backend's live sandboxes but h's.
func (b *Backend) otherLeaders(h *handle) map[int]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[int]bool, len(b.leaders))
	for pid, o := range b.leaders {
		if o != h {
			out[pid] = true
		}
	}
	return out
}

func (b *Backend) isLive(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live[name]
}

// Reap kills the sandboxes recorded under root by a previous berth, with
// every process they hold, and removes their dirs and cgroups. Sandboxes
// this instance started or attached are left alone.
func (b *Backend) Reap(ctx context.Context) error {
	ents, err := os.ReadDir(b.root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reap: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !sandbox.ValidName(e.Name()) || b.isLive(e.Name()) {
			continue
		}
		dir := filepath.Join(b.root, e.Name())
		logger := b.logger.With("sandbox", e.Name())
		rec, err := readRecord(dir)
		switch {
		case err == nil:
			killed, err := b.tree.kill(ctx, rec, nil)
			if err != nil {
				// Keep the dir: its record lets a later Reap try again.
				errs = append(errs, fmt.Errorf("reap sandbox %s: %w", e.Name(), err))
				continue
			}
			if killed > 0 {
				logger.Info("killed leftover sandbox processes", "pid", rec.PID, "count", killed)
			}
			b.tree.remove(rec)
		case errors.Is(err, fs.ErrNotExist):
			// Berth died between creating the dir and starting the agent.
		default:
			logger.Warn("unreadable sandbox record; removing the dir without killing anything", "err", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("reap sandbox %s: %w", e.Name(), err))
			continue
		}
		logger.Info("reaped leftover sandbox")
	}
	// Cgroups whose dir is gone (berth died between making the two).
	if err := b.tree.reapOrphans(b.isLive); err != nil {
		errs = append(errs, fmt.Errorf("reap: %w", err))
	}
	return errors.Join(errs...)
}

// handle is one started or attached sandbox. It owns one goroutine, wait,
// which Stop waits for through done.
type handle struct {
	b      *Backend
	rec    record
	dir    string
	addr   string
	logger *slog.Logger
	// cmd is the agent, when this process started it; an attached
	// sandbox has leader instead.
	cmd    *exec.Cmd
	leader leader

	// done is closed by wait once the tree has exited; exit is written
	// before that and read only after.
	done chan struct{}
	exit sandbox.ExitStatus

	// mu guards the fields that follow.
	mu sync.Mutex
	// gone is set once the leader is reaped, or seen exited when
	// attached. Until then its PID, and so the group ID, cannot be reused,
	// which makes signalling the group safe.
	gone bool
	// stopping is set by the first Stop; later calls wait on stopped.
	stopping bool

	// stopErr is written before stopped is closed and read only after.
	stopped chan struct{}
	stopErr error
}

var _ sandbox.Handle = (*handle)(nil)

func (h *handle) ID() string            { return h.rec.Name }
func (h *handle) Addr() string          { return h.addr }
func (h *handle) Done() <-chan struct{} { return h.done }

// Exit reports how the agent ended; before Done closes it is the zero value.
func (h *handle) Exit() sandbox.ExitStatus {
	select {
	case <-h.done:
		return h.exit
	default:
		return sandbox.ExitStatus{}
	}
}

// DialContext always dials the agent's port, whatever addr says.
func (h *handle) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, h.addr)
}

// wait learns that the agent exited, then kills what is left of the
// sandbox: the rest of its group, and whatever left the group.
func (h *handle) wait() {
	defer close(h.done)
	if h.cmd != nil {
		h.exit = h.waitChild()
	} else {
		h.leader.wait()
		h.mu.Lock()
		h.gone = true
		h.mu.Unlock()
		h.leader.close()
		h.exit = sandbox.ExitStatus{Code: -1, Unknown: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	if _, err := h.b.tree.kill(ctx, h.rec, h.b.otherLeaders(h)); err != nil {
		h.logger.Error("kill what is left of the sandbox", "err", err)
	}
	h.b.ports.Release(h.rec.Port)
	h.logger.Info("agent exited", "status", h.exit.String())
}

// waitChild reaps the agent. Once the leader exits, the rest of its group
// is killed while the leader is still a zombie, so the group ID is ours.
func (h *handle) waitChild() sandbox.ExitStatus {
	pid := h.rec.PID
	peeked := waitExitNoReap(pid)
	h.mu.Lock()
	if peeked {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	err := h.cmd.Wait()
	h.gone = true
	h.mu.Unlock()
	h.b.mu.Lock()
	delete(h.b.leaders, pid)
	h.b.mu.Unlock()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		h.logger.Error("wait for agent", "err", err)
	}
	return exitStatus(h.cmd.ProcessState)
}

func exitStatus(ps *os.ProcessState) sandbox.ExitStatus {
	if ps == nil {
		return sandbox.ExitStatus{Code: -1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return sandbox.ExitStatus{Code: -1, Signal: unix.SignalName(ws.Signal())}
	}
	return sandbox.ExitStatus{Code: ps.ExitCode()}
}

// signalGroup sends sig to the sandbox's process group unless the leader
// is gone.
func (h *handle) signalGroup(sig syscall.Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone || (h.cmd == nil && h.leader.exited()) {
		return
	}
	if err := syscall.Kill(-h.rec.PGID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		h.logger.Warn("signal process group", "signal", unix.SignalName(sig), "err", err)
	}
}

// Stop sends SIGTERM to the group, SIGKILLs it after grace (or as soon as
// ctx ends), waits for the tree and removes the sandbox dir and cgroup.
// The first call does the work; concurrent and later calls wait for its
// result.
func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	h.mu.Lock()
	first := !h.stopping
	h.stopping = true
	h.mu.Unlock()
	if first {
		h.stopErr = h.stop(ctx, grace)
		close(h.stopped)
	}
	select {
	case <-h.stopped:
		return h.stopErr
	case <-ctx.Done():
		return fmt.Errorf("stop sandbox %s: %w", h.rec.Name, ctx.Err())
	}
}

func (h *handle) stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-h.done:
	default:
		h.logger.Info("stopping sandbox", "grace", grace)
		h.signalGroup(syscall.SIGTERM)
		timer := time.NewTimer(grace)
		select {
		case <-h.done:
		case <-timer.C:
			h.logger.Info("grace period over; killing sandbox")
			h.signalGroup(syscall.SIGKILL)
		case <-ctx.Done():
			h.signalGroup(syscall.SIGKILL)
		}
		timer.Stop()
		// Teardown must finish even when the caller gave up.
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
		defer cancel()
		select {
		case <-h.done:
		case <-kctx.Done():
			return fmt.Errorf("stop sandbox %s: process group %d outlived SIGKILL by %v", h.rec.Name, h.rec.PGID, killWait)
		}
	}
	h.b.tree.remove(h.rec)
	if err := os.RemoveAll(h.dir); err != nil {
		return fmt.Errorf("stop sandbox %s: remove sandbox dir: %w", h.rec.Name, err)
	}
	h.b.releaseName(h.rec.Name)
	h.logger.Info("sandbox stopped", "status", h.exit.String())
	return nil
}
