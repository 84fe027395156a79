//go:build linux

// Package linux is the sandbox backend that isolates each session with
// Linux namespaces (pid, mount, network, ipc, uts, cgroup and optionally
// user), cgroup limits (v1 and v2), a read-only host root with private
// writable areas, dropped capabilities, no_new_privs and a seccomp filter.
//
// berth re-execs itself as the sandbox's init (PID 1 of the new pid
// namespace): see MaybeRunInit. The parent places the init in its cgroups
// before the init runs any agent code, so limits hold from the agent's
// first instruction.
package linux

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Config configures the backend.
type Config struct {
	// RootDir holds one small directory per sandbox (its state file and the
	// empty mount point its root is assembled on). Put it under berth's data
	// directory. Sandboxes never see it.
	RootDir string
	// CgroupParent names the cgroup every sandbox's cgroups go under. A
	// relative name nests under berth's own cgroup in each hierarchy (the
	// delegation pattern); an absolute one starts at the hierarchy root.
	// Default "berth".
	CgroupParent string
	// HidePaths are host paths every sandbox sees as empty: berth's data
	// directory, secrets. RootDir, /run, /root, /etc/shadow, /etc/gshadow
	// and /etc/ssh are always hidden; /tmp is always replaced.
	HidePaths []string
	// DefaultNetwork applies when a Spec leaves Network empty. Default none.
	DefaultNetwork sandbox.NetworkMode
	// UserNamespace maps root inside each sandbox to its own unprivileged
	// host uid/gid range (UIDBase + k*65536, size 65536). Stronger, but the
	// agent's code, binary and bind-mount sources must then be readable by
	// "other" on the host. Default off: see docs/isolation.md.
	UserNamespace bool
	// UIDBase is the first host uid used for user namespaces. Default 100000.
	UIDBase uint32
	// Logger receives lifecycle logs. Default slog.Default().
	Logger *slog.Logger
}

// Backend starts linux sandboxes.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	layout *cgroupLayout
	// hostNet is berth's own network namespace, to return to after dialing
	// into a sandbox's.
	hostNet *os.File

	// mu guards the fields that follow.
	mu    sync.Mutex
	live  map[string]*handle
	slots map[uint32]bool // user-namespace uid ranges in use
}

var _ sandbox.Backend = (*Backend)(nil)

// ErrExists means a sandbox with the spec's name is already running here.
var ErrExists = errors.New("sandbox already exists")

// namePattern matches sandbox.Name's output; anything else under RootDir or
// the cgroup parent is not ours to reap.
var namePattern = regexp.MustCompile(`^b[0-9a-f]{16}$`)

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
	l, err := detectCgroups("berth")
	if err != nil {
		return fmt.Errorf("linux sandbox: %w", err)
	}
	if m := l.missing(); len(m) > 0 {
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
	root, err := filepath.Abs(cfg.RootDir)
	if err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	cfg.RootDir = root
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("new linux backend: create root dir: %w", err)
	}
	layout, err := detectCgroups(cfg.CgroupParent)
	if err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	if err := layout.prepare(); err != nil {
		return nil, fmt.Errorf("new linux backend: %w", err)
	}
	hostNet, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("new linux backend: open own network namespace: %w", err)
	}
	return &Backend{
		cfg: cfg, log: cfg.Logger.With("backend", "linux"), layout: layout, hostNet: hostNet,
		live: map[string]*handle{}, slots: map[uint32]bool{},
	}, nil
}

// Name implements sandbox.Backend.
func (b *Backend) Name() string { return "linux" }

// state is persisted per sandbox so a later berth can reap it.
type state struct {
	Pid       int
	StartTime uint64 // from /proc/<pid>/stat, to tell a reused pid apart
	Cgroups   []string
}

// Start implements sandbox.Backend.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if !namePattern.MatchString(spec.Name) {
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
		return nil, fmt.Errorf("start sandbox: network mode egress (needs a veth pair and NAT; not built yet): %w", sandbox.ErrUnsupported)
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
	t0 := time.Now()
	mark := func(s string) { fmt.Fprintf(os.Stderr, "TRACE parent %s %d\n", s, time.Since(t0).Microseconds()) }
	defer mark("end")
	log := b.log.With("sandbox", spec.Name, "runtime", spec.RuntimeID, "session", spec.SessionID)
	h := &handle{b: b, name: spec.Name, log: log, done: make(chan struct{}),
		dir: filepath.Join(b.cfg.RootDir, spec.Name)}
	// On failure, everything made so far goes; h.cleanup knows the pieces.
	defer func() {
		if err != nil {
			// The init may have said why it died; that beats our symptom.
			if h.status == nil && h.statusPipe != nil {
				_ = h.statusPipe.SetReadDeadline(time.Now().Add(time.Second))
				if m, rerr := readStatus(bufio.NewReader(h.statusPipe)); rerr == nil && m.Error != "" {
					err = fmt.Errorf("%w (init: %s)", err, m.Error)
				}
			}
			if h.cmd != nil && h.cmd.Process != nil {
				_ = h.cmd.Process.Kill()
				_ = h.cmd.Wait()
			}
			if cerr := h.cleanup(); cerr != nil {
				log.Warn("clean up failed start", "err", cerr)
			}
		}
	}()

	if err := os.Mkdir(h.dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("leftover directory %s (run Reap): %w", h.dir, ErrExists)
		}
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	h.madeDir = true
	newRoot := filepath.Join(h.dir, "root")
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return nil, fmt.Errorf("create root mount point: %w", err)
	}
	mark("dirs")
	h.cg, err = b.layout.create(spec.Name, spec.Limits)
	if err != nil {
		return nil, err
	}
	mark("cgcreate")

	port := 8080
	if mode == sandbox.NetworkHost {
		if port, err = freeLoopbackPort(); err != nil {
			return nil, err
		}
	}
	h.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	icfg, err := b.initConfig(spec, newRoot, port, mode != sandbox.NetworkHost)
	if err != nil {
		return nil, err
	}

	logFile, err := openLog(spec.LogPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create config pipe: %w", err)
	}
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return nil, fmt.Errorf("create status pipe: %w", err)
	}
	h.statusPipe = stR
	relR, relW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		stW.Close()
		return nil, fmt.Errorf("create release pipe: %w", err)
	}
	defer relW.Close()

	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if mode != sandbox.NetworkHost {
		flags |= unix.CLONE_NEWNET
	}
	attr := &syscall.SysProcAttr{
		Cloneflags: flags,
		// The init dies with berth, and its pid namespace with it. Pdeathsig
		// fires when the forking thread exits; Go only retires threads whose
		// goroutine exits while locked, which Start never does.
		Pdeathsig: syscall.SIGKILL,
	}
	if b.cfg.UserNamespace {
		hostID, err := b.takeSlot(h)
		if err != nil {
			return nil, err
		}
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(hostID), Size: 65536}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(hostID), Size: 65536}}
		attr.GidMappingsEnableSetgroups = false
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	cmd := exec.Command("/proc/self/exe", initArg, spec.Name)
	cmd.Env = []string{"GOMAXPROCS=1", "GOTRACEBACK=single"}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{cfgR, stW, relR}
	cmd.SysProcAttr = attr
	err = cmd.Start()
	cfgR.Close()
	stW.Close()
	relR.Close()
	if err != nil {
		return nil, fmt.Errorf("start init: %w", err)
	}
	h.cmd = cmd
	mark("cmdstart")
	icfg.T0 = t0.UnixNano()
	// The init sets up its mounts while we place it in its cgroups; it
	// starts no agent code until released.
	if err := json.NewEncoder(cfgW).Encode(icfg); err != nil {
		return nil, fmt.Errorf("send init config: %w", err)
	}
	cfgW.Close()

	st := state{Pid: cmd.Process.Pid, StartTime: procStartTime(cmd.Process.Pid), Cgroups: h.cg.Dirs}
	if err := writeState(h.dir, st); err != nil {
		return nil, err
	}
	mark("cfgsent")
	if err := h.cg.add(cmd.Process.Pid); err != nil {
		return nil, err
	}
	mark("cgadd")
	if mode != sandbox.NetworkHost {
		if h.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)); err != nil {
			return nil, fmt.Errorf("open sandbox network namespace: %w", err)
		}
	}
	// Release the init: it is in its cgroups now.
	if _, err := relW.Write([]byte{1}); err != nil {
		return nil, fmt.Errorf("release init: %w", err)
	}
	relW.Close()
	mark("released")

	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = stR.SetReadDeadline(deadline)
	h.status = bufio.NewReader(stR)
	msg, err := readStatus(h.status)
	if err != nil {
		return nil, fmt.Errorf("wait for init (see the sandbox log): %w", err)
	}
	if msg.Error != "" {
		return nil, fmt.Errorf("init: %s", msg.Error)
	}
	_ = stR.SetReadDeadline(time.Time{})
	log.Debug("sandbox started", "init_pid", cmd.Process.Pid, "network", mode, "addr", h.addr)
	return h, nil
}

// alwaysHidden are host paths no sandbox sees: host daemons' sockets, and
// secrets the sandbox's uid 0 could read as their owner when no user
// namespace is in use.
var alwaysHidden = []string{"/run", "/var/run", "/root", "/etc/shadow", "/etc/gshadow", "/etc/ssh"}

// initConfig builds what the init step needs from spec.
func (b *Backend) initConfig(spec sandbox.Spec, newRoot string, port int, ownNet bool) (*initConfig, error) {
	c := &initConfig{
		Hostname: spec.Name,
		NewRoot:  newRoot,
		Hide:     append(append([]string{b.cfg.RootDir}, alwaysHidden...), b.cfg.HidePaths...),
		TmpBytes: spec.Limits.DiskBytes,
		Dir:      sandboxHome,
		Argv:     spec.Command,
		OwnNet:   ownNet,
	}
	if spec.Dir != "" {
		dir, err := filepath.Abs(spec.Dir)
		if err != nil {
			return nil, fmt.Errorf("resolve dir: %w", err)
		}
		c.Dir = dir
		c.Binds = append(c.Binds, bindMount{Source: dir, Target: dir, ReadOnly: true})
	}
	// An absolute agent path outside the code dir (a built binary in a temp
	// dir, say) is bound in on its own.
	if p := spec.Command[0]; filepath.IsAbs(p) && (spec.Dir == "" || !within(p, c.Dir)) {
		c.Binds = append(c.Binds, bindMount{Source: p, Target: p, ReadOnly: true})
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, fmt.Errorf("mount %s:%s: paths must be absolute", m.Source, m.Target)
		}
		c.Binds = append(c.Binds, bindMount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
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
	set("HOME", sandboxHome)
	set("TMPDIR", sandboxTmp)
	for _, k := range order {
		c.Env = append(c.Env, k+"="+env[k])
	}
	return c, nil
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func openLog(path string) (*os.File, error) {
	if path == "" {
		path = os.DevNull
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sandbox log: %w", err)
	}
	return f, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// takeSlot reserves a user-namespace uid range for h.
func (b *Backend) takeSlot(h *handle) (uint32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	max := (uint32(1<<32-1) - b.cfg.UIDBase) / 65536
	for s := uint32(0); s < max; s++ {
		if !b.slots[s] {
			b.slots[s] = true
			h.slot, h.hasSlot = s, true
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
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	return nil
}

// procStartTime reads field 22 of /proc/<pid>/stat (0 if gone).
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces; fields restart after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// removeDir removes a sandbox's directory without ever following a mount:
// rmdir on the root mount point fails if something is still mounted there.
func removeDir(dir string) error {
	_ = os.Remove(filepath.Join(dir, "state.json"))
	root := filepath.Join(dir, "root")
	if err := unix.Rmdir(root); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove sandbox root mount point: %w", err)
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	return nil
}

// Reap implements sandbox.Backend: it removes sandboxes a previous berth
// left behind (found by name under RootDir and the cgroup parent), killing
// their processes first.
func (b *Backend) Reap(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	b.mu.Lock()
	live := make(map[string]bool, len(b.live))
	for n := range b.live {
		live[n] = true
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
		if !namePattern.MatchString(name) || live[name] {
			continue
		}
		dir := filepath.Join(b.cfg.RootDir, name)
		var st state
		if raw, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil {
			_ = json.Unmarshal(raw, &st)
		}
		if st.Pid > 0 && st.StartTime != 0 && procStartTime(st.Pid) == st.StartTime {
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
		}
		killCgroupDirs(st.Cgroups, deadline)
		if err := removeCgroupDirs(st.Cgroups, deadline); err != nil {
			errs = append(errs, err)
		}
		detachMountsUnder(dir)
		if err := removeDir(dir); err != nil {
			errs = append(errs, err)
		}
		reaped++
	}
	// Cgroups whose directory is gone (berth died between the two).
	for _, parent := range b.layout.dirs() {
		entries, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !namePattern.MatchString(e.Name()) || live[e.Name()] {
				continue
			}
			d := []string{filepath.Join(parent, e.Name())}
			killCgroupDirs(d, deadline)
			if err := removeCgroupDirs(d, deadline); err != nil {
				errs = append(errs, err)
			}
			reaped++
		}
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

// Close releases the backend's own resources: its handle on berth's network
// namespace and its cgroup parents, if empty. Live sandboxes are not stopped.
func (b *Backend) Close() error {
	b.hostNet.Close()
	for _, d := range b.layout.dirs() {
		_ = unix.Rmdir(d)
	}
	return nil
}
