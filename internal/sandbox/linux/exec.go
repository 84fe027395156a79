//go:build linux

package linux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/internal/execout"
)

// execSocket is the init's exec socket in a sandbox's (or pooled init's)
// directory: only berth, as root on the host, reaches it; sandboxes see
// the directory hidden.
const execSocket = "exec.sock"

// killWait bounds a command's kill, and drainPatience the wait for its
// output to close after its processes are gone (only a process that left
// the command's cgroup, which takes berth's privileges, could hold it).
const (
	killWait      = 10 * time.Second
	drainPatience = 5 * time.Second
)

// listenExec makes the exec socket in dir and returns its listening end,
// for the init. The path goes through /proc/self/fd, so a long RootDir
// never exceeds a socket path's 108 bytes.
func listenExec(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	defer d.Close()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "exec")
	path := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), execSocket)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		f.Close()
		return nil, fmt.Errorf("bind exec socket: %w", err)
	}
	if err := unix.Fchmodat(int(d.Fd()), execSocket, 0o600, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		f.Close()
		return nil, fmt.Errorf("listen on exec socket: %w", err)
	}
	return f, nil
}

// dialExec connects to the exec socket of the sandbox at dir.
func dialExec(ctx context.Context, dir string) (*net.UnixConn, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	defer d.Close()
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unixpacket", fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), execSocket))
	if err != nil {
		return nil, fmt.Errorf("connect to the sandbox's init: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// Exec implements sandbox.Handle: the sandbox's init forks the command (see
// initexec.go), in a cgroup of its own below the sandbox's, which is how
// berth finds and kills all of its processes.
func (h *handle) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.ExecStatus, error) {
	st, err := h.exec(ctx, spec)
	if err != nil {
		return st, fmt.Errorf("exec in sandbox %s: %w", h.name, err)
	}
	return st, nil
}

func (h *handle) exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.ExecStatus, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return sandbox.ExecStatus{}, errors.New("empty command")
	}
	select {
	case <-h.done:
		return sandbox.ExecStatus{}, errors.New("the agent has exited")
	default:
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	sub, err := h.p.cg.NewSub("x" + hex.EncodeToString(id[:]))
	if err != nil {
		return sandbox.ExecStatus{}, err
	}
	defer func() {
		if err := sub.Remove(time.Now().Add(killWait)); err != nil {
			h.log.Warn("remove command cgroup", "err", err)
		}
	}()
	conn, err := dialExec(ctx, h.dir)
	if err != nil {
		return sandbox.ExecStatus{}, err
	}
	defer conn.Close()
	pipes, err := execout.Open()
	if err != nil {
		return sandbox.ExecStatus{}, err
	}
	err = h.fork(conn, sub, spec.Argv, pipes)
	pipes.CloseWrite()
	if err != nil {
		pipes.Close()
		return sandbox.ExecStatus{}, err
	}
	if spec.Started != nil {
		spec.Started()
	}
	pipes.Copy(spec.Stdout, spec.Stderr)

	ended := make(chan statusMsg, 1)
	go func() {
		m, err := readExecMsg(conn)
		if err != nil {
			// The init is gone, and the sandbox with it.
			m = statusMsg{Exited: true, Code: -1, Error: "the sandbox ended during the command"}
		}
		ended <- m
	}()
	var m statusMsg
	var cause error
	select {
	case m = <-ended:
	case <-ctx.Done():
		cause = context.Cause(ctx)
		sub.Kill(time.Now().Add(killWait))
		m = <-ended
	}
	// Whatever the command left running ends with it.
	sub.Kill(time.Now().Add(killWait))
	if err := pipes.Wait(drainPatience); err != nil {
		h.log.Warn("command output", "err", err)
	}
	st := sandbox.ExecStatus{Code: m.Code, Signal: m.Signal}
	switch {
	case cause != nil:
		return st, fmt.Errorf("command stopped: %w", cause)
	case m.Error != "":
		return st, errors.New(m.Error)
	}
	return st, nil
}

// fork has the init start the command inside sub: the init sits in sub
// from the request until its first answer, so the fork lands there. One
// fork at a time per sandbox.
func (h *handle) fork(conn *net.UnixConn, sub interface {
	Enter(int) error
	Leave(int) error
}, argv []string, pipes *execout.Pipes) error {
	req, err := json.Marshal(execRequest{Argv: argv})
	if err != nil {
		return err
	}
	initPid := h.p.st.Pid
	h.forkMu.Lock()
	defer h.forkMu.Unlock()
	if err := sub.Enter(initPid); err != nil {
		return err
	}
	defer func() {
		if err := sub.Leave(initPid); err != nil {
			// The init stays in the command's cgroup: a kill of the command
			// would take the sandbox with it.
			h.log.Error("move the sandbox's init back from a command's cgroup", "err", err)
		}
	}()
	oob := unix.UnixRights(int(pipes.Stdout.Fd()), int(pipes.Stderr.Fd()))
	if _, _, err := conn.WriteMsgUnix(req, oob, nil); err != nil {
		return fmt.Errorf("send command to the sandbox's init: %w", err)
	}
	m, err := readExecMsg(conn)
	if err != nil {
		return fmt.Errorf("start command: the sandbox's init did not answer: %w", err)
	}
	if m.Error != "" {
		return errors.New(m.Error)
	}
	return nil
}

// readExecMsg reads one answer from the init's exec connection.
func readExecMsg(conn *net.UnixConn) (statusMsg, error) {
	buf := make([]byte, 4<<10)
	n, err := conn.Read(buf)
	if err != nil {
		return statusMsg{}, err
	}
	if n == 0 {
		return statusMsg{}, errors.New("connection closed")
	}
	var m statusMsg
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return statusMsg{}, fmt.Errorf("decode init answer: %w", err)
	}
	return m, nil
}
