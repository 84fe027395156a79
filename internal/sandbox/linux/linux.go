//go:build linux

// Package linux is the sandbox backend that isolates each session with
// Linux namespaces (pid, mount, network, ipc, uts, cgroup and optionally
// user), cgroup limits (v1 and v2), a read-only host root with private
// writable areas, dropped capabilities, no_new_privs and a seccomp filter.
//
// berth re-execs itself as the sandbox's init (PID 1 of the new pid
// namespace): see MaybeRunInit. Inits are started ahead of need and kept in
// a small pool (pool.go), already in cgroups of their own; a Start writes
// the session's limits into those cgroups before the init runs any agent
// code, so limits hold from the agent's first instruction.
//
// Network mode egress gives a sandbox a veth pair, NAT and filter rules
// that keep it off the host and other sandboxes (egress.go).
package linux

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/internal/cgroups"
	"github.com/berth-dev/berth/internal/sandbox/internal/procfs"
)

// Backend starts linux sandboxes.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	layout *cgroups.Layout
	// hostNet is berth's own network namespace, to return to after dialing
	// into a sandbox's.
	hostNet *os.File
	// newRoot is the empty directory every init assembles its root on (in
	// its own mount namespace, so they never see each other's).
	newRoot string
	pool    *pool
	egress  *egress
	// nice is berth's own nice value, which sandboxes run at.
	nice int
	// ports holds the loopback ports of host-network sandboxes.
	ports sandbox.Ports

	// mu guards the fields that follow. Lock order: pool.mu and egress.mu
	// are never held while taking mu, nor mu while taking them.
	mu    sync.Mutex
	live  map[string]*handle
	procs map[string]bool // inits started and not yet released, by name
	slots map[uint32]bool // user-namespace uid ranges in use
}

var _ sandbox.Backend = (*Backend)(nil)

// ErrExists means a sandbox with the spec's name is already running here.
var ErrExists = errors.New("sandbox already exists")

// reapable reports whether a name under RootDir or the cgroup parent is
// ours to reap: a sandbox's, or an init's not yet taken by a session.
// Anything else there is left alone.
func reapable(name string) bool {
	init, ok := strings.CutPrefix(name, "p")
	return sandbox.ValidName(name) || ok && sandbox.ValidName("b"+init)
}

// Available reports whether this host can run linux sandboxes, and if not, why.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("linux sandbox needs root (running as uid %d): %w", os.Geteuid(), sandbox.ErrUnsupported)
	}
	for _, ns := range []string{"pid", "mnt", "net", "ipc", "uts", "cgroup", "user"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return fmt.Errorf("linux sandbox needs %s namespaces: %w", ns, sandbox.ErrUnsupported)
		}
	}
	if !seccomp.Supported() {
		return fmt.Errorf("linux sandbox needs seccomp filters: %w", sandbox.ErrUnsupported)
	}
	// mount_setattr (Linux 5.12) makes the host root read-only recursively.
	if err := unix.MountSetattr(-1, "/nonexistent-berth-probe", 0, &unix.MountAttr{}); errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("linux sandbox needs mount_setattr (Linux 5.12 or later): %w", sandbox.ErrUnsupported)
	}
	l, err := cgroups.Detect("berth")
	if err != nil {
		return fmt.Errorf("linux sandbox: %w", err)
	}
	if m := l.Missing(); len(m) > 0 {
		return fmt.Errorf("linux sandbox needs cgroup controllers %s: %w", strings.Join(m, ", "), sandbox.ErrUnsupported)
	}
	return nil
}

// New checks the host and prepares the cgroup parent and root directory.
func New(cfg Config) (*Backend, error) {
	if cfg.RootDir == "" {
		return nil, errors.New("new linux backend: RootDir is required")
	}
	if err := Available(); err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "berth"
	}
	if cfg.DefaultNetwork == "" {
		cfg.DefaultNetwork = sandbox.NetworkNone
	}
	if cfg.UIDBase == 0 {
		cfg.UIDBase = 100000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.RootDir, 0o711); err != nil {
		return nil, fmt.Errorf("new linux backend: create root dir: %w", err)
	}
	// Hiding compares paths: every one is absolute, without symlinks.
	root, err := canonical(cfg.RootDir)
	if err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	cfg.RootDir = root
	hide := make([]string, 0, len(cfg.HidePaths))
	for _, h := range cfg.HidePaths {
		c, err := canonical(h)
		if err != nil {
			return nil, fmt.Errorf("new linux backend: hide path: %w", err)
		}
		hide = append(hide, c)
	}
	cfg.HidePaths = hide
	layout, err := cgroups.Detect(cfg.CgroupParent)
	if err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	if err := layout.Prepare(); err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	newRoot := filepath.Join(root, ".root")
	if err := os.Mkdir(newRoot, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("new linux backend: create root mount point: %w", err)
	}
	hostNet, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("new linux backend: open own network namespace: %w", err)
	}
	log := cfg.Logger.With("backend", "linux")
	eg, err := newEgress(cfg, hostNet, log)
	if err != nil {
		hostNet.Close()
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	b := &Backend{
		cfg: cfg, log: log, layout: layout, hostNet: hostNet, newRoot: newRoot, egress: eg,
		live: map[string]*handle{}, procs: map[string]bool{}, slots: map[uint32]bool{},
	}
	if prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0); err == nil {
		b.nice = 20 - prio // the raw syscall answers 20 - nice
	}
	size := cfg.WarmInits
	if size == 0 {
		size = 2
	}
	b.pool = newPool(b, size)
	return b, nil
}

// Name implements sandbox.Backend.
func (b *Backend) Name() string { return "linux" }

// Capabilities implements sandbox.Backend: every mode but host has its own
// network namespace, and the agent sees host paths only through mounts
// (berth's data directory, among others, is hidden).
func (b *Backend) Capabilities() sandbox.Capabilities {
	return capabilities(b.cfg.DefaultNetwork)
}

// state is persisted per sandbox (and per pooled init) so a later berth can
// reap it, or attach to it.
type state struct {
	Pid       int
	StartTime uint64 // from /proc/<pid>/stat, to tell a reused pid apart
	Cgroups   []string
	Veth      string `json:",omitempty"` // host side of an egress sandbox's link
	// Set once a session has the init.
	Network sandbox.NetworkMode `json:",omitempty"`
	Port    int                 `json:",omitempty"` // host network: the agent's loopback port
	// AgentPort is the agent's port in a private network; 0 for the
	// default (state written before it existed).
	AgentPort int `json:",omitempty"`
	// Slot is the user-namespace uid range, if one is held.
	Slot *uint32 `json:",omitempty"`
}

// Files in a sandbox's (or pooled init's) directory.
const (
	stateFile = "state.json"
	exitFile  = "exit"
)

// Start implements sandbox.Backend.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if !sandbox.ValidName(spec.Name) {
		return nil, fmt.Errorf("start sandbox: name %q is not from sandbox.Name", spec.Name)
	}
	if len(spec.Command) == 0 {
		return nil, errors.New("start sandbox: empty command")
	}
	mode := spec.Network
	if mode == "" {
		mode = b.cfg.DefaultNetwork
	}
	switch mode {
	case sandbox.NetworkNone, sandbox.NetworkHost:
	case sandbox.NetworkEgress:
		if err := b.egress.ensure(); err != nil {
			return nil, fmt.Errorf("start sandbox: %w", err)
		}
	default:
		return nil, fmt.Errorf("start sandbox: network mode %q: %w", mode, sandbox.ErrUnsupported)
	}

	b.mu.Lock()
	if _, ok := b.live[spec.Name]; ok {
		b.mu.Unlock()
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, ErrExists)
	}
	b.live[spec.Name] = nil // reserve the name
	b.mu.Unlock()

	h, err := b.start(ctx, spec, mode)
	b.mu.Lock()
	if err != nil {
		delete(b.live, spec.Name)
	} else {
		b.live[spec.Name] = h
	}
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", spec.Name, err)
	}
	go h.wait() // owned by the handle: Stop and Done wait for it
	return h, nil
}

func (b *Backend) start(ctx context.Context, spec sandbox.Spec, mode sandbox.NetworkMode) (_ *handle, err error) {
	log := b.log.With("sandbox", spec.Name, "runtime", spec.RuntimeID, "session", spec.SessionID)
	h := &handle{b: b, name: spec.Name, log: log, mode: mode, done: make(chan struct{}),
		dir: filepath.Join(b.cfg.RootDir, spec.Name)}
	// On failure, everything made so far goes; h.cleanup knows the pieces.
	defer func() {
		if err != nil {
			// The init may have said why it died; that beats our symptom.
			if h.status == nil && h.p != nil && h.p.status != nil {
				_ = h.p.status.SetReadDeadline(time.Now().Add(time.Second))
				if m, rerr := readStatus(bufio.NewReader(h.p.status)); rerr == nil && m.Error != "" {
					err = fmt.Errorf("%w (init: %s)", err, m.Error)
				}
			}
			if h.p != nil && h.p.cmd != nil {
				_ = h.p.cmd.Process.Kill()
				_ = h.p.cmd.Wait()
				h.p.status.Close()
			}
			if cerr := h.cleanup(); cerr != nil {
				log.Warn("clean up failed start", "err", cerr)
			}
		}
	}()

	// The sandbox directory is the init's pool directory, renamed (see hand).
	if _, err := os.Lstat(h.dir); err == nil {
		return nil, fmt.Errorf("leftover directory %s (run Reap): %w", h.dir, ErrExists)
	}
	port := cmp.Or(spec.Port, sandbox.DefaultPort)
	if mode == sandbox.NetworkHost {
		if port, err = b.ports.Take(); err != nil {
			return nil, err
		}
		h.port = port
	} else {
		h.agentPort = port
	}
	h.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	scfg, err := b.sessionConfig(spec, port, mode)
	if err != nil {
		return nil, err
	}
	logFile, closeLog, err := spec.OpenOutput()
	if err != nil {
		return nil, err
	}
	// The init holds its own descriptor once handed one.
	defer closeLog()

	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// A pooled init that died while waiting fails the handover, or closes
	// its status pipe without a word; a fresh one then gets the same chance.
	p, pooled, err := b.pool.take(mode)
	if err != nil {
		return nil, err
	}
	for {
		h.p = p
		err := h.hand(spec.Limits, scfg, logFile)
		if err == nil {
			_ = h.p.status.SetReadDeadline(deadline)
			h.status = bufio.NewReader(h.p.status)
			var msg statusMsg
			if msg, err = readStatus(h.status); err == nil {
				if msg.Error != "" {
					return nil, fmt.Errorf("init: %s", msg.Error)
				}
				break
			}
			err = fmt.Errorf("wait for init (see the sandbox log): %w", err)
		}
		died := errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ESRCH) || errors.Is(err, io.EOF)
		if !pooled || !died {
			return nil, err
		}
		log.Warn("warm init died while pooled; starting a fresh one", "init", p.name, "err", err)
		h.p, h.status = nil, nil
		p.discard()
		if h.madeDir { // the dead init's state file, claimed for the sandbox
			if err := removeDir(h.dir); err != nil {
				return nil, err
			}
			h.madeDir = false
		}
		if p, err = b.spawn(mode); err != nil {
			return nil, err
		}
		pooled = false
	}
	_ = h.p.status.SetReadDeadline(time.Time{})
	log.Debug("sandbox started", "init_pid", h.p.cmd.Process.Pid, "init", h.p.name, "network", mode, "addr", h.addr)
	return h, nil
}

// hand gives h's init its session: the limits go into its cgroups first,
// then its directory (and state file) is renamed to the sandbox's, then the
// config (with the log file) goes out. No agent code runs before the limits
// hold.
func (h *handle) hand(lim sandbox.Limits, scfg *sessionConfig, logFile *os.File) error {
	p := h.p
	if err := p.cg.SetLimits(lim); err != nil {
		return err
	}
	if err := p.unnice(); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, p.dir, unix.AT_FDCWD, h.dir, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("leftover directory %s (run Reap): %w", h.dir, ErrExists)
		}
		return fmt.Errorf("claim sandbox dir: %w", err)
	}
	p.dir, h.madeDir = "", true
	p.st.Network, p.st.Port, p.st.AgentPort = h.mode, h.port, h.agentPort
	if p.hasSlot {
		p.st.Slot = &p.slot
	}
	if err := writeState(h.dir, p.st); err != nil {
		return err
	}
	if err := p.send(scfg, int(logFile.Fd())); err != nil {
		return fmt.Errorf("send session config: %w", err)
	}
	p.closeControl()
	return nil
}

// sessionConfig builds what the init step needs from spec.
func (b *Backend) sessionConfig(spec sandbox.Spec, port int, mode sandbox.NetworkMode) (*sessionConfig, error) {
	c := &sessionConfig{
		Hostname: spec.Name,
		TmpBytes: spec.Limits.DiskBytes,
		Dir:      sandboxHome,
		Argv:     spec.Command,
	}
	home := sandboxHome
	if img := spec.Image; img != nil {
		if b.cfg.UserNamespace {
			return nil, fmt.Errorf("image sandboxes with user namespaces: %w", sandbox.ErrUnsupported)
		}
		if !filepath.IsAbs(img.Rootfs) || strings.ContainsAny(img.Rootfs, ",:") {
			return nil, fmt.Errorf("image root %q must be an absolute path without a comma or colon", img.Rootfs)
		}
		c.Image = &imageConfig{Rootfs: img.Rootfs, UID: img.UID, GID: img.GID, Groups: img.Groups}
		c.Dir = cmp.Or(spec.Dir, "/")
		home = cmp.Or(img.Home, "/")
	} else if spec.Dir != "" {
		dir, err := canonical(spec.Dir)
		if err != nil {
			return nil, fmt.Errorf("resolve dir: %w", err)
		}
		c.Dir = dir
		c.Binds = append(c.Binds, bindMount{Source: dir, Target: dir, ReadOnly: true})
	}
	// An absolute agent path outside the code dir (a built binary in a temp
	// dir, say) is bound in on its own.
	if p := spec.Command[0]; filepath.IsAbs(p) && spec.Image == nil {
		if p, err := canonical(p); err == nil && (spec.Dir == "" || !within(p, c.Dir)) {
			c.Binds = append(c.Binds, bindMount{Source: p, Target: p, ReadOnly: true})
		}
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, fmt.Errorf("mount %s:%s: paths must be absolute", m.Source, m.Target)
		}
		c.Binds = append(c.Binds, bindMount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if mode == sandbox.NetworkEgress {
		c.Binds = append(c.Binds, bindMount{Source: b.egress.resolv, Target: "/etc/resolv.conf", ReadOnly: true, Resolve: true})
	}
	env := map[string]string{"PATH": defaultPath}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	order = append(order, "PATH")
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	set("PORT", strconv.Itoa(port))
	if _, ok := env["HOME"]; !ok || spec.Image == nil {
		set("HOME", home)
	}
	if _, ok := env["TMPDIR"]; !ok || spec.Image == nil {
		set("TMPDIR", sandboxTmp)
	}
	for _, k := range order {
		c.Env = append(c.Env, k+"="+env[k])
	}
	return c, nil
}

// canonical makes p absolute and resolves its symlinks, as far as it exists.
// A bind target is resolved against berth's root, not the sandbox's, so it
// must hold no symlink; and hidden paths are compared as strings.
func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// takeSlot reserves a user-namespace uid range for p.
func (b *Backend) takeSlot(p *initProc) (uint32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	max := (uint32(1<<32-1) - b.cfg.UIDBase) / 65536
	for s := uint32(0); s < max; s++ {
		if !b.slots[s] {
			b.slots[s] = true
			p.slot, p.hasSlot = s, true
			return b.cfg.UIDBase + s*65536, nil
		}
	}
	return 0, errors.New("no free user namespace uid range")
}

func writeState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	return nil
}

// procStartTime is pid's start time, 0 if it is gone.
func procStartTime(pid int) uint64 {
	t, _ := procfs.StartTime(pid)
	return t
}

// removeDir removes a sandbox's directory without ever following a mount:
// rmdir on the root mount point fails if something is still mounted there.
func removeDir(dir string) error {
	for _, f := range []string{stateFile, exitFile, execSocket} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	root := filepath.Join(dir, "root")
	if err := unix.Rmdir(root); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove sandbox root mount point: %w", err)
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	return nil
}

// Reap implements sandbox.Backend: it removes sandboxes and warm inits a
// previous berth left behind (found by name under RootDir and the cgroup
// parent), killing their processes first, then their veths and this
// backend's egress rules.
func (b *Backend) Reap(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	b.mu.Lock()
	ours := make(map[string]bool, len(b.live)+len(b.procs))
	for n := range b.live {
		ours[n] = true
	}
	for n := range b.procs {
		ours[n] = true
	}
	b.mu.Unlock()

	var errs []error
	reaped := 0
	entries, err := os.ReadDir(b.cfg.RootDir)
	if err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !reapable(name) || ours[name] {
			continue
		}
		dir := filepath.Join(b.cfg.RootDir, name)
		var st state
		if raw, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
			_ = json.Unmarshal(raw, &st)
		}
		if st.Pid > 0 && st.StartTime != 0 && procStartTime(st.Pid) == st.StartTime {
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
		}
		cgroups.Kill(st.Cgroups, deadline)
		if err := cgroups.RemoveDirs(st.Cgroups, deadline); err != nil {
			errs = append(errs, err)
		}
		// The kernel drops a veth with its namespace, but only later.
		if st.Veth != "" {
			if err := deleteLink(st.Veth); err != nil {
				errs = append(errs, err)
			}
		}
		detachMountsUnder(dir)
		if err := removeDir(dir); err != nil {
			errs = append(errs, err)
		}
		reaped++
	}
	// Cgroups whose directory is gone (berth died between the two).
	for _, parent := range b.layout.Dirs() {
		entries, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !reapable(e.Name()) || ours[e.Name()] {
				continue
			}
			d := []string{filepath.Join(parent, e.Name())}
			cgroups.Kill(d, deadline)
			if err := cgroups.RemoveDirs(d, deadline); err != nil {
				errs = append(errs, err)
			}
			reaped++
		}
	}
	if err := b.egress.reapRules(); err != nil {
		errs = append(errs, err)
	}
	if reaped > 0 {
		b.log.Info("reaped leftover sandboxes", "count", reaped)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	return nil
}

// detachMountsUnder lazily unmounts anything mounted at or below dir in
// berth's own mount namespace (sandbox mounts normally live only in the
// sandbox's namespace, so this is a safety net).
func detachMountsUnder(dir string) {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && within(f[4], dir) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

// Close releases the backend's own resources: its warm inits, its egress
// rules (unless an egress sandbox still runs: they are what confines it),
// its handle on berth's network namespace and its cgroup parents, if empty.
// Live sandboxes are not stopped.
func (b *Backend) Close() error {
	b.pool.close()
	b.mu.Lock()
	egressLive := false
	for _, h := range b.live {
		egressLive = egressLive || (h != nil && h.mode == sandbox.NetworkEgress)
	}
	b.mu.Unlock()
	var err error
	if !egressLive {
		err = b.egress.uninstall()
	}
	b.hostNet.Close()
	for _, d := range b.layout.Dirs() {
		_ = unix.Rmdir(d)
	}
	return err
}

// Attach implements sandbox.Backend: it takes charge of a sandbox another
// backend over the same RootDir and cgroup parent started, from its state
// file. Its init is not our child; the exit file tells how the agent ended.
func (b *Backend) Attach(ctx context.Context, id string) (sandbox.Handle, error) {
	if !sandbox.ValidName(id) {
		return nil, fmt.Errorf("attach sandbox %s: not a sandbox name: %w", id, sandbox.ErrNotFound)
	}
	b.mu.Lock()
	if _, ok := b.live[id]; ok {
		b.mu.Unlock()
		return nil, fmt.Errorf("attach sandbox %s: %w", id, ErrExists)
	}
	b.live[id] = nil // reserve the name
	b.mu.Unlock()

	h, err := b.attach(id)
	b.mu.Lock()
	if err != nil {
		delete(b.live, id)
	} else {
		b.live[id] = h
	}
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("attach sandbox %s: %w", id, err)
	}
	go h.wait()
	h.log.Info("sandbox attached", "init_pid", h.p.st.Pid, "network", h.mode, "addr", h.addr)
	return h, nil
}

func (b *Backend) attach(id string) (_ *handle, err error) {
	dir := filepath.Join(b.cfg.RootDir, id)
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, sandbox.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if st.Network == "" || len(st.Cgroups) == 0 {
		return nil, sandbox.ErrNotFound // its start never finished
	}
	cg, ok := b.layout.Open(filepath.Base(st.Cgroups[0]), st.Cgroups)
	if !ok {
		return nil, fmt.Errorf("state names cgroups %v, not this backend's", st.Cgroups)
	}
	p := &initProc{b: b, name: filepath.Base(st.Cgroups[0]), mode: st.Network, ctl: -1, cg: cg, st: st}
	// Its cgroups are named for the init: Reap must spare them.
	b.mu.Lock()
	b.procs[p.name] = true
	b.mu.Unlock()
	h := &handle{b: b, name: id, log: b.log.With("sandbox", id), mode: st.Network, done: make(chan struct{}), dir: dir, p: p, madeDir: true}
	// On failure, release what was taken here, and nothing of the sandbox.
	defer func() {
		if err != nil {
			h.releaseAttach()
		}
	}()
	if p.proc, err = procfs.Open(st.Pid, st.StartTime); err != nil {
		if errors.Is(err, procfs.ErrGone) {
			return nil, sandbox.ErrNotFound
		}
		return nil, err
	}
	port := cmp.Or(st.AgentPort, sandbox.DefaultPort)
	switch st.Network {
	case sandbox.NetworkHost:
		if !b.ports.Hold(st.Port) {
			return nil, fmt.Errorf("port %d is held by another sandbox here", st.Port)
		}
		port, h.port = st.Port, st.Port
	case sandbox.NetworkNone, sandbox.NetworkEgress:
		if p.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", st.Pid)); err != nil {
			return nil, fmt.Errorf("open sandbox network namespace: %w", err)
		}
		// The namespace is the init's only if the init still is.
		if p.proc.Exited() {
			return nil, sandbox.ErrNotFound
		}
	default:
		return nil, fmt.Errorf("network mode %q: %w", st.Network, sandbox.ErrUnsupported)
	}
	h.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if st.Veth != "" {
		v, err := b.egress.adopt(st.Veth)
		if err != nil {
			return nil, err
		}
		p.veth = &v
	}
	if st.Slot != nil {
		b.mu.Lock()
		taken := b.slots[*st.Slot]
		b.slots[*st.Slot] = true
		b.mu.Unlock()
		if taken {
			return nil, fmt.Errorf("user-namespace uid range %d is held by another sandbox here", *st.Slot)
		}
		p.slot, p.hasSlot = *st.Slot, true
	}
	if h.exitFile, err = os.Open(filepath.Join(dir, exitFile)); err != nil {
		return nil, fmt.Errorf("open exit file: %w", err)
	}
	return h, nil
}

// releaseAttach undoes a failed attach: it frees what this backend took
// for the sandbox and leaves the sandbox itself alone (Reap's business).
func (h *handle) releaseAttach() {
	p := h.p
	if p.proc != nil {
		p.proc.Close()
	}
	if p.netns != nil {
		p.netns.Close()
	}
	if p.veth != nil {
		h.b.egress.free(*p.veth)
	}
	h.b.mu.Lock()
	if p.hasSlot {
		delete(h.b.slots, p.slot)
	}
	delete(h.b.procs, p.name)
	h.b.mu.Unlock()
	if h.port != 0 {
		h.b.ports.Release(h.port)
	}
	if h.exitFile != nil {
		h.exitFile.Close()
	}
}
