//go:build unix

package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/internal/execout"
)

// drainPatience bounds how long Exec waits, after a command's processes are
// gone, for its output pipes to close: only a process that escaped the
// command's tracking can hold them longer.
const drainPatience = 5 * time.Second

// Exec implements sandbox.Handle. The command is a child of berth in a
// session of its own, with the agent's environment and working directory,
// tracked as sandboxes are: in a cgroup below its sandbox's, else by a
// marker of its own in the environment of each of its processes.
func (h *handle) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.ExecStatus, error) {
	st, err := h.exec(ctx, spec)
	if err != nil {
		return st, fmt.Errorf("exec in sandbox %s: %w", h.rec.Name, err)
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
	cmd, err := h.command(spec.Argv)
	if err != nil {
		return sandbox.ExecStatus{}, err
	}
	pipes, err := execout.Open()
	if err != nil {
		return sandbox.ExecStatus{}, err
	}
	cmd.Stdout, cmd.Stderr = pipes.Stdout, pipes.Stderr
	tc, err := h.b.tree.startCommand(h.rec, cmd)
	pipes.CloseWrite()
	if err != nil {
		pipes.Close()
		return sandbox.ExecStatus{}, fmt.Errorf("start command: %w", err)
	}
	if spec.Started != nil {
		spec.Started()
	}
	pipes.Copy(spec.Stdout, spec.Stderr)

	exited := make(chan struct{})
	reaped := false
	go func() {
		defer close(exited)
		reaped = awaitCommand(cmd)
	}()
	var cause error
	select {
	case <-exited:
	case <-ctx.Done():
		cause = context.Cause(ctx)
		h.b.tree.killCommand(tc, true)
		<-exited
	}
	// Whatever the command left running ends with it.
	h.b.tree.killCommand(tc, !reaped)
	if !reaped {
		_ = cmd.Wait()
	}
	h.b.tree.endCommand(tc)
	st := execStatus(cmd.ProcessState)
	if err := pipes.Wait(drainPatience); err != nil {
		h.logger.Warn("command output", "err", err)
	}
	if cause != nil {
		return st, fmt.Errorf("command stopped: %w", cause)
	}
	return st, nil
}

// command builds a command's exec.Cmd: the agent's environment and
// working directory, no stdin, a session of its own.
func (h *handle) command(argv []string) (*exec.Cmd, error) {
	wd := h.rec.Dir
	if wd == "" {
		wd = filepath.Join(h.dir, "home")
	}
	path, err := lookPath(argv[0], wd, h.rec.Env)
	if err != nil {
		return nil, fmt.Errorf("find command: %w", err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = wd
	cmd.Env = agentEnv(h.rec.Env, h.rec.Name, filepath.Join(h.dir, "home"), filepath.Join(h.dir, "tmp"), h.rec.Port)
	cmd.SysProcAttr = commandProcAttr()
	return cmd, nil
}

// execStatus is how a command ended, as a shell reports it.
func execStatus(ps *os.ProcessState) sandbox.ExecStatus {
	if ps == nil {
		return sandbox.ExecStatus{Code: -1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return sandbox.ExecStatus{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}
	}
	return sandbox.ExecStatus{Code: ps.ExitCode()}
}
