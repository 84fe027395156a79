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
	"time"

	"golang.org/x/sys/unix"
)

// initArg is argv[1] of the re-exec'd init step.
const initArg = "__berth_sandbox_init"

// File descriptors the parent hands the init step.
const (
	fdConfig  = 3 // the parent writes initConfig here
	fdStatus  = 4 // the init step writes statusMsg lines here
	fdRelease = 5 // one byte here once the init is in its cgroups
)

// initConfig is everything the init step needs, sent over fdConfig.
type initConfig struct {
	Hostname string
	// NewRoot is an empty host directory the new root is assembled on.
	NewRoot string
	// Hide lists host paths covered by an empty read-only tmpfs (berth's
	// data and sandbox directories, /run): other sessions live there.
	Hide []string
	// Binds are bind mounts applied after Hide, so they may re-expose paths
	// inside hidden ones (the code dir, the agent binary, runtime mounts).
	Binds []bindMount
	// TmpBytes caps the writable tmpfs (/tmp, $HOME, /dev/shm); 0 = kernel default.
	TmpBytes int64
	Dir      string
	Argv     []string
	Env      []string
	OwnNet   bool
	T0       int64
}

type bindMount struct {
	Source, Target string
	ReadOnly       bool
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

var initT0 int64

func imark(s string) {
	if initT0 != 0 {
		fmt.Fprintf(os.Stderr, "TRACE init %s %d\n", s, (time.Now().UnixNano()-initT0)/1000)
	}
}
func runInit() int {
	entry := time.Now()
	defer func() { _ = entry }()
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
	// Keep our pipes out of the agent.
	unix.CloseOnExec(fdConfig)
	unix.CloseOnExec(fdStatus)
	unix.CloseOnExec(fdRelease)

	// Handle TERM/INT before anything else: PID 1 ignores signals it has no
	// handler for, so an early Stop would otherwise wait for its grace.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	raw, err := io.ReadAll(os.NewFile(fdConfig, "config"))
	if err != nil {
		return fail(fmt.Errorf("read config: %w", err))
	}
	var cfg initConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fail(fmt.Errorf("decode config: %w", err))
	}
	initT0 = cfg.T0
	fmt.Fprintf(os.Stderr, "TRACE init entry %d\n", (entry.UnixNano()-initT0)/1000)
	imark("cfg")
	if err := setupRoot(&cfg); err != nil {
		return fail(fmt.Errorf("set up mounts: %w", err))
	}
	imark("setuproot")
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fail(fmt.Errorf("set hostname: %w", err))
	}
	if cfg.OwnNet {
		if err := loopbackUp(); err != nil {
			return fail(err)
		}
	}
	path, err := lookPath(cfg.Argv[0], cfg.Dir, cfg.Env)
	if err != nil {
		return fail(err)
	}
	// Mount setup above overlaps with the parent's cgroup placement, which
	// can take milliseconds on v1; no agent code runs before this returns.
	imark("mounted")
	var one [1]byte
	if n, _ := os.NewFile(fdRelease, "release").Read(one[:]); n != 1 {
		return fail(errors.New("parent did not release the sandbox"))
	}
	imark("released")
	if err := dropCapabilities(); err != nil {
		return fail(err)
	}
	imark("caps")
	if err := loadSeccomp(); err != nil {
		return fail(err)
	}
	imark("seccomp")
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(err)
	}
	agent, err := os.StartProcess(path, cfg.Argv, &os.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []*os.File{devnull, os.Stdout, os.Stderr},
		// Its own session, so a terminal-style group signal from the agent
		// never reaches init.
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return fail(fmt.Errorf("start agent: %w", err))
	}
	devnull.Close()
	imark("agentstarted")
	report(statusMsg{Pid: agent.Pid})

	go func() {
		for s := range sigs {
			_ = syscall.Kill(agent.Pid, s.(syscall.Signal))
		}
	}()
	// PID 1 reaps every orphan; the agent's own status decides ours.
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("wait for agent: %w", err))
		}
		if pid != agent.Pid {
			continue
		}
		m := statusMsg{Exited: true, Code: ws.ExitStatus()}
		code := ws.ExitStatus()
		if ws.Signaled() {
			m.Code, m.Signal = -1, unix.SignalName(ws.Signal())
			code = 128 + int(ws.Signal())
		}
		report(m)
		// Exiting tears down the pid namespace: leftovers die with us.
		return code
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
// the bounding set, so no exec can give them back.
func dropCapabilities() error {
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
