//go:build linux

package linux

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/internal/cgroups"
	"github.com/berth-dev/berth/internal/sandbox/internal/procfs"
)

// Most of a cold start is not the session's: fork and exec of berth's own
// binary, the Go runtime and every package init, new namespaces, the
// session-independent mounts, compiling the seccomp filter, and the first
// write into a v1 cgroup (which can wait for an RCU grace period). A warm
// init has done all of that and sits blocked on its control socket, inside
// cgroups of its own with no limits yet, running no agent code. Start takes
// one, writes the session's limits into its cgroups, then sends the session
// config: only the /tmp mount, the binds, pivot_root, dropping capabilities,
// loading seccomp and exec of the agent remain.

// initProc is one started init step and everything it holds on the host.
type initProc struct {
	b    *Backend
	name string // "p" + 16 hex: names its cgroups and, while pooled, its directory
	mode sandbox.NetworkMode
	dir  string // its pool directory (state.json) until a session takes it

	cmd *exec.Cmd
	// proc is the init of an attached sandbox, which another berth
	// started: not our child, so no cmd.
	proc   *procfs.Process
	ctl    int      // parent end of the control socket; -1 once closed
	status *os.File // read end of the status pipe
	cg     *cgroups.Group
	// nsMu guards netns once the init serves a session: dials use the
	// descriptor while release closes it, and a closed number may be
	// reused at once by another sandbox's namespace.
	nsMu  sync.RWMutex
	netns *os.File // nil when sharing the host network, or once released
	veth  *veth    // egress mode only
	slot  uint32
	// hasSlot is set when a user-namespace uid range is held.
	hasSlot bool
	niced   bool // started at backgroundNice
	st      state
}

func newProcName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "p" + hex.EncodeToString(b[:])
}

// spawn starts an init for mode and waits until it is in its cgroups (and,
// for egress, wired to its veth). It does not wait for the warm phase.
func (b *Backend) spawn(mode sandbox.NetworkMode) (_ *initProc, err error) {
	p := &initProc{b: b, name: newProcName(), mode: mode, ctl: -1}
	p.dir = filepath.Join(b.cfg.RootDir, p.name)
	b.mu.Lock()
	b.procs[p.name] = true
	b.mu.Unlock()
	defer func() {
		if err != nil {
			p.discard()
		}
	}()
	if err := os.Mkdir(p.dir, 0o711); err != nil {
		return nil, fmt.Errorf("create init dir: %w", err)
	}
	if p.cg, err = b.layout.Create(p.name, sandbox.Limits{}); err != nil {
		return nil, err
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create control socket: %w", err)
	}
	p.ctl = fds[0]
	child := os.NewFile(uintptr(fds[1]), "control")
	defer child.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create status pipe: %w", err)
	}
	p.status = stR
	defer stW.Close()
	exit, err := os.OpenFile(filepath.Join(p.dir, exitFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create exit file: %w", err)
	}
	defer exit.Close()
	execLn, err := listenExec(p.dir)
	if err != nil {
		return nil, err
	}
	defer execLn.Close()

	// The warm config waits in the socket until the init reads it.
	warm := warmConfig{
		NewRoot: b.newRoot,
		Hide:    append(append([]string{b.cfg.RootDir}, sandbox.HiddenPaths...), b.cfg.HidePaths...),
		OwnNet:  mode != sandbox.NetworkHost,
	}
	if err := p.send(warm, -1); err != nil {
		return nil, fmt.Errorf("send warm config: %w", err)
	}

	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if mode != sandbox.NetworkHost {
		flags |= unix.CLONE_NEWNET
	}
	attr := &syscall.SysProcAttr{
		Cloneflags: flags,
		// The init dies with berth, and its pid namespace with it. Pdeathsig
		// fires when the forking thread exits; Go only retires threads whose
		// goroutine exits while locked, which spawn never does.
		Pdeathsig: syscall.SIGKILL,
	}
	if b.cfg.UserNamespace {
		hostID, err := b.takeSlot(p)
		if err != nil {
			return nil, err
		}
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(hostID), Size: 65536}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(hostID), Size: 65536}}
		attr.GidMappingsEnableSetgroups = false
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	cmd := exec.Command("/proc/self/exe", initArg)
	cmd.Env = []string{"GOMAXPROCS=1", "GOTRACEBACK=single"}
	// stdout and stderr stay /dev/null until the session's log arrives.
	cmd.ExtraFiles = []*os.File{child, stW, exit, execLn}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start init: %w", err)
	}
	p.cmd = cmd
	pid := cmd.Process.Pid
	p.st = state{Pid: pid, StartTime: procStartTime(pid), Cgroups: p.cg.Dirs}
	if err := writeState(p.dir, p.st); err != nil {
		return nil, err
	}
	if err := p.cg.Add(pid); err != nil {
		return nil, err
	}
	if mode != sandbox.NetworkHost {
		if p.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
			return nil, fmt.Errorf("open sandbox network namespace: %w", err)
		}
	}
	if mode == sandbox.NetworkEgress {
		v, err := b.egress.attach(p.netns, func(name string) error {
			p.st.Veth = name
			return writeState(p.dir, p.st)
		})
		if err != nil {
			return nil, err
		}
		p.veth = &v
	}
	return p, nil
}

// signal sends sig to the init.
func (p *initProc) signal(sig syscall.Signal) {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
		return
	}
	_ = p.proc.Signal(sig)
}

// send writes one config message, with fd attached unless it is -1.
func (p *initProc) send(v any, fd int) error {
	if p.ctl < 0 {
		return errors.New("control socket closed")
	}
	msg, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	for {
		err = unix.Sendmsg(p.ctl, msg, oob, nil, unix.MSG_NOSIGNAL)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (p *initProc) closeControl() {
	if p.ctl >= 0 {
		unix.Close(p.ctl)
		p.ctl = -1
	}
}

// release frees what the init held on the host: cgroups (killing anything
// left in them), the netns reference, the veth, the uid range and its pool
// directory. The process must be dead or about to be.
func (p *initProc) release() error {
	var errs []error
	p.closeControl()
	if p.cg != nil {
		if err := p.cg.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.proc != nil {
		p.proc.Close()
	}
	p.nsMu.Lock()
	if p.netns != nil {
		p.netns.Close()
		p.netns = nil
	}
	p.nsMu.Unlock()
	if p.veth != nil {
		if err := p.b.egress.detach(*p.veth); err != nil {
			errs = append(errs, err)
		}
	}
	if p.dir != "" {
		if err := removeDir(p.dir); err != nil {
			errs = append(errs, err)
		}
	}
	p.b.mu.Lock()
	if p.hasSlot {
		delete(p.b.slots, p.slot)
	}
	delete(p.b.procs, p.name)
	p.b.mu.Unlock()
	return errors.Join(errs...)
}

// discard kills an init no session will use and frees its resources.
func (p *initProc) discard() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
	if p.status != nil {
		p.status.Close()
	}
	if err := p.release(); err != nil {
		p.b.log.Warn("discard warm init", "init", p.name, "err", err)
	}
}

// pool keeps up to size warm inits per network mode, for each mode a Start
// has asked for. One goroutine refills it; Close stops and waits for it.
type pool struct {
	b    *Backend
	size int
	kick chan struct{} // buffered: a refill is wanted
	stop chan struct{}
	wg   sync.WaitGroup

	// mu guards the fields below.
	mu      sync.Mutex
	idle    map[sandbox.NetworkMode][]*initProc
	wanted  []sandbox.NetworkMode // modes to keep warm, in first-use order
	started bool                  // the refill goroutine runs
	closed  bool
}

func newPool(b *Backend, size int) *pool {
	return &pool{
		b: b, size: size, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		idle: map[sandbox.NetworkMode][]*initProc{},
	}
}

// take returns a warm init for mode, or spawns one if none is ready.
func (pl *pool) take(mode sandbox.NetworkMode) (*initProc, bool, error) {
	if pl.size <= 0 {
		p, err := pl.b.spawn(mode)
		return p, false, err
	}
	pl.mu.Lock()
	var p *initProc
	if q := pl.idle[mode]; len(q) > 0 {
		p, pl.idle[mode] = q[0], q[1:]
	}
	known := false
	for _, m := range pl.wanted {
		known = known || m == mode
	}
	if !known {
		pl.wanted = append(pl.wanted, mode)
	}
	// Started under mu, so close never waits before the Add.
	if !pl.started && !pl.closed {
		pl.started = true
		pl.wg.Add(1)
		go pl.refill()
	}
	pl.mu.Unlock()
	select {
	case pl.kick <- struct{}{}:
	default:
	}
	if p != nil {
		return p, true, nil
	}
	p, err := pl.b.spawn(mode)
	return p, false, err
}

// refill tops the pool up whenever a take kicks it.
func (pl *pool) refill() {
	defer pl.wg.Done()
	for {
		select {
		case <-pl.stop:
			return
		case <-pl.kick:
		}
		for {
			mode, ok := pl.short()
			if !ok {
				break
			}
			p, err := pl.spawnBackground(mode)
			if err != nil {
				pl.b.log.Warn("refill warm inits", "network", mode, "err", err)
				// Back off rather than spin on a persistent failure.
				t := time.NewTimer(time.Second)
				select {
				case <-pl.stop:
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
			pl.mu.Lock()
			if pl.closed {
				pl.mu.Unlock()
				p.discard()
				return
			}
			pl.idle[mode] = append(pl.idle[mode], p)
			pl.mu.Unlock()
		}
	}
}

// backgroundNice is the nice value refills run at, so starting spare inits
// never slows a session's start or a running agent.
const backgroundNice = 10

// spawnBackground spawns from a thread with a raised nice value, which the
// init inherits; take puts the init back at berth's own priority. The
// thread is restored before it goes back to Go's pool: retiring it would
// fire the Pdeathsig of every init it started.
func (pl *pool) spawnBackground(mode sandbox.NetworkMode) (*initProc, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, pl.b.nice+backgroundNice); err != nil {
		return pl.b.spawn(mode)
	}
	p, err := pl.b.spawn(mode)
	if rerr := unix.Setpriority(unix.PRIO_PROCESS, tid, pl.b.nice); rerr != nil {
		pl.b.log.Warn("restore thread priority", "err", rerr)
	}
	if p != nil {
		p.niced = true
	}
	return p, err
}

// unnice gives a pooled init (its main thread, which forks the agent) back
// berth's priority.
func (p *initProc) unnice() error {
	if !p.niced {
		return nil
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, p.cmd.Process.Pid, p.b.nice); err != nil {
		return fmt.Errorf("restore init priority: %w", err)
	}
	p.niced = false
	return nil
}

// short returns a mode with fewer than size idle inits.
func (pl *pool) short() (sandbox.NetworkMode, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		return "", false
	}
	for _, m := range pl.wanted {
		if len(pl.idle[m]) < pl.size {
			return m, true
		}
	}
	return "", false
}

// close stops the refill goroutine and discards every idle init.
func (pl *pool) close() {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return
	}
	pl.closed = true
	pl.mu.Unlock()
	close(pl.stop)
	pl.wg.Wait()
	pl.mu.Lock()
	idle := pl.idle
	pl.idle = map[sandbox.NetworkMode][]*initProc{}
	pl.mu.Unlock()
	for _, q := range idle {
		for _, p := range q {
			p.discard()
		}
	}
}

// idleNames lists the pooled inits, for tests and leak checks.
func (pl *pool) idleNames() []string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []string
	for _, q := range pl.idle {
		for _, p := range q {
			out = append(out, p.name)
		}
	}
	return out
}
