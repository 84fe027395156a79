//go:build unix

// Package process is the portable sandbox backend: each sandbox is a plain
// child process of berth, in its own process group, with a private scratch
// dir for HOME and TMPDIR and a free loopback port. It isolates nothing
// beyond that (same user, same network, same filesystem), which is what a
// development backend should be: it runs anywhere berth builds for unix.
//
// Layout under the backend root, one dir per sandbox, named by Spec.Name:
//
//	<root>/<name>/sandbox.json  pid, pgid and start time, for Reap
//	<root>/<name>/home          HOME (and the working dir when Spec.Dir is empty)
//	<root>/<name>/tmp           TMPDIR
//
// The record sits beside HOME, not in it, so an agent cleaning its home
// cannot make berth lose track of it.
//
// Limits: processes that leave the sandbox's process group (setsid, a
// daemonizing double fork) escape Stop and Reap; the linux backend's cgroups
// catch those. Spec.Limits are not enforced (a warning is logged), and
// Spec.Mounts and network modes other than host are refused with
// sandbox.ErrUnsupported. On Linux, a record names a process by PID and
// start time, so Reap never signals a process that merely reused a PID;
// elsewhere Reap cannot verify a PID and only removes leftover dirs.
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
	// envSandbox marks every process of a sandbox, so Reap can recognise
	// members of a group whose leader is already gone.
	envSandbox = "BERTH_SANDBOX"
)

// Backend starts sandboxes as child processes.
type Backend struct {
	root          string
	logger        *slog.Logger
	limitsWarning sync.Once
	// ports holds the ports handed to live agents.
	ports sandbox.Ports

	// mu guards the fields that follow. Lock order: handle.mu is never
	// held while taking Backend.mu.
	mu sync.Mutex
	// live holds the names of sandboxes this instance started and has not
	// stopped yet; Reap leaves them alone and Start refuses duplicates.
	live map[string]bool
}

var _ sandbox.Backend = (*Backend)(nil)

// New returns a backend that keeps per-sandbox dirs under root (created on
// first Start). A nil logger discards logs.
func New(root string, logger *slog.Logger) *Backend {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		root:   root,
		logger: logger.With("backend", "process"),
		live:   map[string]bool{},
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

// record is what Reap needs to find a sandbox's processes after berth died.
type record struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	PGID int    `json:"pgid"`
	// StartTime is the leader's start time in clock ticks since boot
	// (field 22 of /proc/<pid>/stat); zero where it cannot be read.
	StartTime uint64 `json:"start_time"`
}

// Start creates the sandbox's dirs and starts its agent. It returns once
// the agent process has been exec'd.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	if err := validate(spec); err != nil {
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

func validate(spec sandbox.Spec) error {
	if !sandbox.ValidName(spec.Name) {
		return fmt.Errorf("name %q is not from sandbox.Name", spec.Name)
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return errors.New("empty command")
	}
	if spec.Network != "" && spec.Network != sandbox.NetworkHost {
		return fmt.Errorf("network mode %q: %w", spec.Network, sandbox.ErrUnsupported)
	}
	if len(spec.Mounts) > 0 {
		return fmt.Errorf("mounts: %w", sandbox.ErrUnsupported)
	}
	return nil
}

// start does the work of Start once the name and port are reserved. On
// error it leaves no process and no dir behind.
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
	started := false
	defer func() {
		if !started {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{home, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("create scratch dir: %w", err)
		}
	}

	logFile, err := openLog(spec.LogPath)
	if err != nil {
		return nil, err
	}
	// The child holds its own descriptor once started.
	defer logFile.Close()

	cmd, err := command(spec, home, tmp, port)
	if err != nil {
		fmt.Fprintf(logFile, "berth: start agent: %v\n", err)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(logFile, "berth: start agent: %v\n", err)
		return nil, fmt.Errorf("start agent: %w", err)
	}

	h := &handle{
		b:       b,
		name:    spec.Name,
		dir:     dir,
		port:    port,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		logger:  logger.With("pid", cmd.Process.Pid),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	// The leader cannot be reaped before wait runs, so its PID and start
	// time are stable here.
	h.startTime, _ = procStartTime(h.pid)
	if err := writeRecord(dir, record{Name: spec.Name, PID: h.pid, PGID: h.pid, StartTime: h.startTime}); err != nil {
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, err
	}
	started = true
	go h.wait()
	h.logger.Info("sandbox started", "addr", h.addr, "dir", dir)
	return h, nil
}

func openLog(path string) (*os.File, error) {
	if path == "" {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		return f, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open agent log: %w", err)
	}
	return f, nil
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
	env := append(os.Environ(), spec.Env...)
	cmd.Env = append(env,
		"PORT="+strconv.Itoa(port),
		"HOME="+home,
		"TMPDIR="+tmp,
		"BERTH_AGENT_HOST=127.0.0.1",
		envSandbox+"="+spec.Name,
	)
	cmd.SysProcAttr = sysProcAttr()
	return cmd, nil
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

func (b *Backend) isLive(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live[name]
}

// Reap kills the process groups recorded under root by a previous berth
// and removes their dirs. Sandboxes this instance started are left alone.
func (b *Backend) Reap(ctx context.Context) error {
	ents, err := os.ReadDir(b.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
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
			killed, err := killLeftover(ctx, rec)
			if err != nil {
				// Keep the dir: its record lets a later Reap try again.
				errs = append(errs, fmt.Errorf("reap sandbox %s: %w", e.Name(), err))
				continue
			}
			if killed > 0 {
				logger.Info("killed leftover sandbox processes", "pgid", rec.PGID, "count", killed)
			}
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
	return errors.Join(errs...)
}

// handle is one started sandbox. It owns one goroutine, wait, which Stop
// waits for through done.
type handle struct {
	b         *Backend
	name      string
	dir       string
	port      int
	addr      string
	cmd       *exec.Cmd
	pid       int // also the process group ID
	startTime uint64
	logger    *slog.Logger

	// done is closed by wait once the tree has exited; exit is written
	// before that and read only after.
	done chan struct{}
	exit sandbox.ExitStatus

	// mu guards the fields that follow.
	mu sync.Mutex
	// reaped is set once the leader is reaped. Until then its PID, and so
	// the group ID, cannot be reused, which makes signalling the group safe.
	reaped bool
	// stopping is set by the first Stop; later calls wait on stopped.
	stopping bool

	// stopErr is written before stopped is closed and read only after.
	stopped chan struct{}
	stopErr error
}

var _ sandbox.Handle = (*handle)(nil)

func (h *handle) ID() string            { return h.name }
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

// wait reaps the agent. Once the leader exits, the rest of its group is
// killed while the leader is still a zombie, so the group ID is still ours.
func (h *handle) wait() {
	defer close(h.done)
	peeked := waitExitNoReap(h.pid)
	h.mu.Lock()
	if peeked {
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
	}
	err := h.cmd.Wait()
	h.reaped = true
	h.mu.Unlock()
	if !peeked {
		// Without a non-reaping wait this is best effort: the group ID
		// is only ours while some member lives.
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		h.logger.Error("wait for agent", "err", err)
	}
	h.exit = exitStatus(h.cmd.ProcessState)
	awaitGroupGone(h.pid, h.startTime, killWait)
	h.b.ports.Release(h.port)
	h.logger.Info("agent exited", "status", h.exit.String())
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
// has been reaped.
func (h *handle) signalGroup(sig syscall.Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reaped {
		return
	}
	if err := syscall.Kill(-h.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		h.logger.Warn("signal process group", "signal", unix.SignalName(sig), "err", err)
	}
}

// Stop sends SIGTERM to the group, SIGKILLs it after grace (or as soon as
// ctx ends), waits for the tree and removes the sandbox dir. The first call
// does the work; concurrent and later calls wait for its result.
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
		return fmt.Errorf("stop sandbox %s: %w", h.name, ctx.Err())
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
			return fmt.Errorf("stop sandbox %s: process group %d outlived SIGKILL by %v", h.name, h.pid, killWait)
		}
	}
	if err := os.RemoveAll(h.dir); err != nil {
		return fmt.Errorf("stop sandbox %s: remove sandbox dir: %w", h.name, err)
	}
	h.b.releaseName(h.name)
	h.logger.Info("sandbox stopped", "status", h.exit.String())
	return nil
}
