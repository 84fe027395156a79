//go:build linux

package linux

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// initArg is argv[1] of the re-exec'd init step.
const initArg = "__berth_sandbox_init"

// File descriptors the parent hands the init step.
const (
	// fdControl is a unix SOCK_SEQPACKET socket. The parent sends a
	// warmConfig at once, and a sessionConfig (with the log file attached)
	// when the init is taken for a session.
	fdControl = 3
	fdStatus  = 4 // the init step writes statusMsg lines here
	// fdExit is the sandbox directory's exit file, where the init also
	// writes the agent's exit, for a berth that attached after a restart
	// and so cannot read the status pipe.
	fdExit = 5
	// fdExec listens (SOCK_SEQPACKET) at the sandbox directory's exec
	// socket: one connection per command berth runs in the sandbox
	// (initexec.go).
	fdExec = 6
)

// warmConfig is what an init needs before it knows its session: the
// backend-wide parts of the sandbox, set up while it waits in the pool.
type warmConfig struct {
	// NewRoot is an empty host directory the new root is assembled on.
	NewRoot string
	// Hide lists host paths covered by an empty read-only tmpfs (berth's
	// data and sandbox directories, /run): other sessions live there.
	Hide   []string
	OwnNet bool
}

// sessionConfig arrives when the init is taken for a session. The parent
// sends it only after the init is in its cgroups and the limits are
// written, so everything the agent does is limited.
type sessionConfig struct {
	Hostname string
	// Binds are bind mounts applied after Hide, so they may re-expose paths
	// inside hidden ones (the code dir, the agent binary, runtime mounts).
	Binds []bindMount
	// TmpBytes caps the writable tmpfs (/tmp, $HOME, /dev/shm); 0 = kernel default.
	TmpBytes int64
	Dir      string
	Argv     []string
	Env      []string
	// Image, when set, makes an image's root the sandbox's (see imageRoot).
	Image *imageConfig `json:",omitempty"`
}

// imageConfig is an image sandbox's root and who its agent runs as.
type imageConfig struct {
	Rootfs   string
	UID, GID uint32
	Groups   []uint32
}

type bindMount struct {
	Source, Target string
	ReadOnly       bool
	// Resolve binds over the file a symlinked Target points to, inside the
	// new root (/etc/resolv.conf often links into /run).
	Resolve bool `json:",omitempty"`
}

// statusMsg is one line the init step reports to the parent.
type statusMsg struct {
	// Pid is the agent's pid inside the sandbox, sent once it runs.
	Pid int `json:",omitempty"`
	// Error says why the sandbox could not start.
	Error string `json:",omitempty"`
	// Exited is set when the agent ended.
	Exited bool   `json:",omitempty"`
	Code   int    `json:",omitempty"`
	Signal string `json:",omitempty"`
}

// Paths inside the sandbox.
const (
	sandboxTmp  = "/tmp"
	sandboxHome = "/tmp/home"
	sandboxShm  = "/tmp/.berth-shm"
)

// MaybeRunInit runs the sandbox init step and exits if this process was
// started as one; otherwise it returns at once. Call it first thing in main
// and in TestMain of every test package that starts linux sandboxes.
func MaybeRunInit() {
	if len(os.Args) < 2 || os.Args[1] != initArg {
		return
	}
	// Capabilities are per thread and the agent inherits the forking
	// thread's: keep every step on this one thread.
	runtime.LockOSThread()
	os.Exit(runInit())
}

func runInit() int {
	status := os.NewFile(fdStatus, "status")
	report := func(m statusMsg) {
		b, _ := json.Marshal(m)
		_, _ = status.Write(append(b, '\n'))
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "berth-init: %v\n", err)
		report(statusMsg{Error: err.Error()})
		return 127
	}
	// Keep our descriptors out of the agent.
	unix.CloseOnExec(fdControl)
	unix.CloseOnExec(fdStatus)
	unix.CloseOnExec(fdExit)
	unix.CloseOnExec(fdExec)

	// Handle TERM/INT before anything else: PID 1 ignores signals it has no
	// handler for, so an early Stop would otherwise wait for its grace.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	// Warm phase: everything that does not depend on the session.
	var warm warmConfig
	if _, err := recvConfig(fdControl, &warm); err != nil {
		return fail(fmt.Errorf("read warm config: %w", err))
	}
	hidden, err := prepareRoot(&warm)
	if err != nil {
		return fail(fmt.Errorf("set up mounts: %w", err))
	}
	if warm.OwnNet {
		if err := loopbackUp(); err != nil {
			return fail(err)
		}
	}
	filter, err := assembleSeccomp()
	if err != nil {
		return fail(err)
	}

	// Session phase: the parent has placed us in our cgroups and set the
	// limits before sending this.
	var cfg sessionConfig
	logFd, err := recvConfig(fdControl, &cfg)
	if errors.Is(err, io.EOF) {
		return 0 // discarded from the pool unused
	}
	if err != nil {
		return fail(fmt.Errorf("read session config: %w", err))
	}
	if logFd >= 0 {
		// The agent's (and our) stdout and stderr go to the session log.
		for _, fd := range []int{1, 2} {
			if err := unix.Dup3(logFd, fd, 0); err != nil {
				return fail(fmt.Errorf("attach log: %w", err))
			}
		}
		unix.Close(logFd)
	}
	if err := finishRoot(warm.NewRoot, hidden, warm.Hide, &cfg); err != nil {
		return fail(fmt.Errorf("set up mounts: %w", err))
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fail(fmt.Errorf("set hostname: %w", err))
	}
	// The clone made our cgroup namespace while we sat in berth's cgroup;
	// a new one now roots the agent's view at its own cgroup.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fail(fmt.Errorf("new cgroup namespace: %w", err))
	}
	path, err := lookPath(cfg.Argv[0], cfg.Dir, cfg.Env)
	if err != nil {
		return fail(err)
	}
	var cred *imageConfig
	if cfg.Image != nil && (cfg.Image.UID != 0 || cfg.Image.GID != 0 || len(cfg.Image.Groups) > 0) {
		cred = cfg.Image
	}
	if err := dropCapabilities(cred); err != nil {
		return fail(err)
	}
	if err := installSeccomp(filter); err != nil {
		return fail(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(err)
	}
	// The exec server forks commands from this thread, which is what makes
	// them the agent's equals: same capabilities (none), same filter. Its
	// lock, held across the fork, keeps the reaper from finding a command
	// before it is registered.
	x := newExecServer(&cfg, devnull)
	x.mu.Lock()
	// syscall.ForkExec, not os.StartProcess: the latter first forks a probe
	// child to test pidfd support, a millisecond we need not spend.
	agentPid, err := syscall.ForkExec(path, cfg.Argv, &syscall.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []uintptr{devnull.Fd(), 1, 2},
		// Its own session, so a terminal-style group signal from the agent
		// never reaches init.
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	x.mu.Unlock()
	if err != nil {
		return fail(fmt.Errorf("start agent: %w", err))
	}
	report(statusMsg{Pid: agentPid})

	go func() {
		for s := range sigs {
			_ = syscall.Kill(agentPid, s.(syscall.Signal))
		}
	}()
	agentExit := make(chan syscall.WaitStatus, 1)
	go x.reap(agentPid, agentExit)
	go x.accept(fdExec)
	// This thread forks every command until the agent exits.
	var ws syscall.WaitStatus
	for done := false; !done; {
		select {
		case ws = <-agentExit:
			done = true
		case f := <-x.forks:
			f.reply <- x.fork(f)
		}
	}
	m := statusMsg{Exited: true, Code: ws.ExitStatus()}
	code := ws.ExitStatus()
	if ws.Signaled() {
		m.Code, m.Signal = -1, unix.SignalName(ws.Signal())
		code = 128 + int(ws.Signal())
	}
	report(m)
	if b, err := json.Marshal(m); err == nil {
		_, _ = unix.Write(fdExit, append(b, '\n'))
	}
	// Exiting tears down the pid namespace: leftovers die with us.
	return code
}

// recvConfig reads one JSON message from the control socket into v and
// returns the file descriptor attached to it, or -1. io.EOF means the
// parent closed the socket.
func recvConfig(fd int, v any) (int, error) {
	fds, err := recvMsg(fd, v)
	for i := 1; i < len(fds); i++ {
		unix.Close(fds[i])
	}
	if len(fds) == 0 {
		return -1, err
	}
	return fds[0], err
}

// recvMsg reads one JSON message from a SOCK_SEQPACKET socket into v and
// returns the file descriptors attached to it (close-on-exec). io.EOF
// means the peer closed the socket.
func recvMsg(fd int, v any) ([]int, error) {
	var n int
	var err error
	for {
		// Peek at the size first, so any message fits.
		n, _, _, _, err = unix.Recvmsg(fd, nil, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	buf := make([]byte, n)
	oob := make([]byte, unix.CmsgSpace(4*maxPassedFDs))
	var oobn int
	for {
		n, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("parse control message: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err != nil {
				closeAll(fds)
				return nil, fmt.Errorf("parse control message: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		return fds, fmt.Errorf("decode: %w", err)
	}
	return fds, nil
}

// maxPassedFDs is the most descriptors one message carries (a command's
// stdout and stderr).
const maxPassedFDs = 2

func closeAll(fds []int) {
	for _, f := range fds {
		unix.Close(f)
	}
}

// lookPath resolves argv[0] the way a shell would, with the agent's PATH.
func lookPath(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		return name, nil
	}
	pathEnv := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for d := range strings.SplitSeq(pathEnv, ":") {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find agent command %q in PATH: %w", name, os.ErrNotExist)
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Secure bits: root gets no capabilities from exec, and the agent may not
// raise ambient ones; both locked.
const secureBits = 1<<0 | 1<<1 | 1<<6 | 1<<7

// dropCapabilities empties every capability set of this thread, including
// the bounding set, so no exec can give them back. With cred it also
// becomes that user (an image's), while it still may.
func dropCapabilities(cred *imageConfig) error {
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secureBits, 0, 0, 0); err != nil {
		return fmt.Errorf("set securebits: %w", err)
	}
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the last capability this kernel knows
		}
		if err != nil {
			return fmt.Errorf("drop bounding capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if cred != nil {
		// Go applies these to every thread of the init, not just this one.
		groups := make([]int, len(cred.Groups))
		for i, g := range cred.Groups {
			groups[i] = int(g)
		}
		if err := unix.Setgroups(groups); err != nil {
			return fmt.Errorf("set groups: %w", err)
		}
		if err := unix.Setresgid(int(cred.GID), int(cred.GID), int(cred.GID)); err != nil {
			return fmt.Errorf("set gid %d: %w", cred.GID, err)
		}
		if err := unix.Setresuid(int(cred.UID), int(cred.UID), int(cred.UID)); err != nil {
			return fmt.Errorf("set uid %d: %w", cred.UID, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}

// loopbackUp brings up lo in the sandbox's fresh network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}

// readStatus decodes status lines from the init step.
func readStatus(r *bufio.Reader) (statusMsg, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return statusMsg{}, err
	}
	var m statusMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return statusMsg{}, fmt.Errorf("decode init status: %w", err)
	}
	return m, nil
}
