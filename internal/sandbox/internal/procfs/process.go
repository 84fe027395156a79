//go:build linux

package procfs

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrGone means the process recorded for a PID no longer runs.
var ErrGone = errors.New("process gone")

// Process is a process that need not be this one's child, named for good:
// a pidfd opened first and then checked against the start time recorded
// for its PID, so a reused PID is never mistaken for it.
type Process struct {
	f *os.File
}

// Open opens the process pid that started at startTime, or fails with
// ErrGone.
func Open(pid int, startTime uint64) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, syscall.ESRCH) {
		return nil, ErrGone
	}
	if err != nil {
		return nil, fmt.Errorf("open pidfd %d: %w", pid, err)
	}
	p := &Process{f: os.NewFile(uintptr(fd), "pidfd")}
	if st, err := ReadStat(pid); err != nil || st.StartTime != startTime || st.Dead() || p.Exited() {
		p.Close()
		return nil, ErrGone
	}
	return p, nil
}

// readable reports whether a pidfd says its process exited.
func readable(fd uintptr) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	return err == nil && n > 0
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return true
	}
	done := true
	_ = rc.Control(func(fd uintptr) { done = readable(fd) })
	return done
}

// Wait blocks, parked on the netpoller rather than a thread, until the
// process exits. The exit status is its parent's to learn.
func (p *Process) Wait() {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(readable)
}

// Signal sends sig to the process, and to no other that took its PID.
func (p *Process) Signal(sig syscall.Signal) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	if errors.Is(serr, syscall.ESRCH) {
		return ErrGone
	}
	return serr
}

// Close releases the pidfd.
func (p *Process) Close() { _ = p.f.Close() }
