//go:build linux

package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Tracker gives each sandbox one cgroup in a single hierarchy, so every
// process of the sandbox is found and killed wherever it went in the
// process tree (setsid, a double fork). It sets no limits.
type Tracker struct {
	// parent is the directory sandbox cgroups go under.
	parent string
	v2     bool
	// own is berth's own cgroup in a v1 hierarchy, where the forking
	// thread returns after a start.
	own string
}

// Tracker picks the hierarchy to track sandboxes in: v2 where it is mounted
// and the kernel can clone a process straight into a cgroup (Linux 5.7), so
// a process is tracked from its first instruction and killed with one
// write; else v1's freezer, else another v1 hierarchy. With allowV2 false
// it takes v1 only (tests force it). It creates the parent directory; the
// error says why no hierarchy will do.
func (l *Layout) Tracker(allowV2 bool) (*Tracker, error) {
	var errs []error
	try := func(t *Tracker) bool {
		if err := os.MkdirAll(t.parent, 0o755); err != nil {
			errs = append(errs, err)
			return false
		}
		if err := unix.Access(t.parent, unix.W_OK); err != nil {
			errs = append(errs, fmt.Errorf("cgroup %s: %w", t.parent, err))
			return false
		}
		return true
	}
	if allowV2 && l.v2Parent != "" && cloneIntoCgroup() {
		if t := (&Tracker{parent: l.v2Parent, v2: true}); try(t) {
			return t, nil
		}
	}
	for _, c := range []string{Freezer, Pids, Memory, CPU, CPUAcct} {
		if p, ok := l.parent[c]; ok {
			if t := (&Tracker{parent: p, own: l.own[c]}); try(t) {
				return t, nil
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no cgroup hierarchy mounted"))
	}
	return nil, fmt.Errorf("track sandboxes by cgroup: %w", errors.Join(errs...))
}

// cloneIntoCgroup reports whether the kernel has CLONE_INTO_CGROUP (5.7).
func cloneIntoCgroup() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	major, rest, _ := strings.Cut(unix.ByteSliceToString(u.Release[:]), ".")
	minor, _, _ := strings.Cut(rest, ".")
	maj, err1 := strconv.Atoi(major)
	mnr, err2 := strconv.Atoi(strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' }))
	return err1 == nil && err2 == nil && (maj > 5 || maj == 5 && mnr >= 7)
}

// Parent is the directory the sandbox cgroups go under, for Reap to sweep.
func (t *Tracker) Parent() string { return t.parent }

// Create makes the cgroup for sandbox name and returns its directory.
func (t *Tracker) Create(name string) (string, error) {
	dir := filepath.Join(t.parent, name)
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrNotExist) {
		// Someone removed the (then empty) parent: make it again.
		if err = os.MkdirAll(t.parent, 0o755); err == nil {
			err = os.Mkdir(dir, 0o755)
		}
	}
	if err != nil {
		return "", fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	return dir, nil
}

// Start calls start, which must fork and exec one child with attr, so that
// the child begins life in the cgroup at dir: on v2 the kernel clones it
// there; on v1 the forking thread moves in for the fork and back out
// after, and the child inherits the thread's cgroup.
func (t *Tracker) Start(dir string, attr *syscall.SysProcAttr, start func() error) error {
	if t.v2 {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", dir, err)
		}
		defer unix.Close(fd)
		attr.UseCgroupFD, attr.CgroupFD = true, fd
		return start()
	}
	// os/exec forks on the calling thread, which the lock pins.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := []byte(strconv.Itoa(unix.Gettid()))
	if err := os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); err != nil {
		return fmt.Errorf("enter cgroup %s: %w", dir, err)
	}
	err := start()
	if rerr := os.WriteFile(filepath.Join(t.own, "tasks"), tid, 0); rerr != nil {
		// The thread stays in the sandbox's cgroup; Kill never signals
		// berth, but the cgroup cannot be removed while it is there.
		err = errors.Join(err, fmt.Errorf("leave cgroup %s: %w", dir, rerr))
	}
	return err
}
