//go:build linux

package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The init step runs the commands berth asks for (Handle.Exec). berth
// connects to the exec socket once per command and sends an execRequest
// with the command's stdout and stderr attached; the init forks it from
// the thread that started the agent, and so with the agent's namespaces,
// cgroups, environment, working directory, capabilities and seccomp
// filter, and answers twice on the connection: statusMsg{Pid} once it
// runs (or {Error}), then statusMsg{Exited, Code, Signal} once it ends.
//
// berth tracks the command's processes by cgroup: before it sends the
// request it moves the init into the command's own cgroup, below the
// sandbox's, so the fork lands there; when the first answer comes it moves
// the init back.

// execRequest is what berth sends on an exec connection.
type execRequest struct {
	Argv []string
}

// forkReq is one command for the forking thread.
type forkReq struct {
	argv  []string
	fds   []int // stdout, stderr
	reply chan forkResult
}

type forkResult struct {
	pid    int
	exited chan syscall.WaitStatus // receives the command's end
	err    error
}

// execServer accepts exec connections and hands their forks to the init's
// main thread.
type execServer struct {
	cfg     *sessionConfig
	devnull *os.File
	forks   chan forkReq

	// mu is held across each fork and each lookup of a reaped process,
	// so a command is registered before the reaper can find it. It guards
	// cmds.
	mu   sync.Mutex
	cmds map[int]chan syscall.WaitStatus
}

func newExecServer(cfg *sessionConfig, devnull *os.File) *execServer {
	return &execServer{cfg: cfg, devnull: devnull, forks: make(chan forkReq), cmds: map[int]chan syscall.WaitStatus{}}
}

// reap waits for every child and orphan (the init is PID 1); the agent's
// end goes to agentExit, a command's to its connection.
func (x *execServer) reap(agentPid int, agentExit chan<- syscall.WaitStatus) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			// No children left: the agent is gone (an init never loses
			// its agent any other way).
			agentExit <- syscall.WaitStatus(0xff << 8)
			return
		}
		if pid == agentPid {
			agentExit <- ws
			return
		}
		x.mu.Lock()
		ch, ok := x.cmds[pid]
		delete(x.cmds, pid)
		x.mu.Unlock()
		if ok {
			ch <- ws
		}
	}
}

// accept serves exec connections until the init exits.
func (x *execServer) accept(fd int) {
	for {
		conn, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "berth-init: exec socket: %v\n", err)
			return
		}
		go x.serve(conn)
	}
}

// serve runs the one command a connection asks for.
func (x *execServer) serve(conn int) {
	defer unix.Close(conn)
	send := func(m statusMsg) {
		b, _ := json.Marshal(m)
		_ = unix.Sendmsg(conn, b, nil, nil, unix.MSG_NOSIGNAL)
	}
	var req execRequest
	fds, err := recvMsg(conn, &req)
	if err == nil && (len(fds) != 2 || len(req.Argv) == 0) {
		err = fmt.Errorf("want a command and two descriptors, got %d arguments and %d descriptors", len(req.Argv), len(fds))
	}
	if err != nil {
		closeAll(fds)
		send(statusMsg{Error: "exec request: " + err.Error()})
		return
	}
	reply := make(chan forkResult, 1)
	x.forks <- forkReq{argv: req.Argv, fds: fds, reply: reply}
	r := <-reply
	closeAll(fds)
	if r.err != nil {
		send(statusMsg{Error: r.err.Error()})
		return
	}
	send(statusMsg{Pid: r.pid})
	ws := <-r.exited
	m := statusMsg{Exited: true, Code: ws.ExitStatus()}
	if ws.Signaled() {
		m.Code, m.Signal = 128+int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	send(m)
}

// fork starts a command; it runs on the init's main thread.
func (x *execServer) fork(f forkReq) forkResult {
	path, err := lookPath(f.argv[0], x.cfg.Dir, x.cfg.Env)
	if err != nil {
		return forkResult{err: err}
	}
	exited := make(chan syscall.WaitStatus, 1)
	x.mu.Lock()
	defer x.mu.Unlock()
	pid, err := syscall.ForkExec(path, f.argv, &syscall.ProcAttr{
		Dir:   x.cfg.Dir,
		Env:   x.cfg.Env,
		Files: []uintptr{x.devnull.Fd(), uintptr(f.fds[0]), uintptr(f.fds[1])},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return forkResult{err: fmt.Errorf("start command: %w", err)}
	}
	x.cmds[pid] = exited
	return forkResult{pid: pid, exited: exited}
}
