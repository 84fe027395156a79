package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/sandbox"
)

// A command (InvokeAgentRuntimeCommand) runs beside a session's agent, in
// its sandbox: a fresh bash each time, as the sandbox's root, no stdin.

// ErrCommandsDisabled: the runtime says commands: false.
var ErrCommandsDisabled = fmt.Errorf("the runtime does not accept commands (commands: false): %w", errdefs.ErrPermissionDenied)

// Command is one command to run in a session.
type Command struct {
	// Text runs as bash -c Text.
	Text string
	// Timeout ends the command, with all it started, after that long.
	Timeout time.Duration
	// Stdout and Stderr receive the output as it is produced, each from a
	// goroutine of its own (see sandbox.ExecSpec).
	Stdout, Stderr io.Writer
	// Started, if set, is called once the command runs.
	Started func()
}

// CommandResult is how a command ended.
type CommandResult struct {
	// ExitCode is the shell's: 128+n after signal n, api.ExitCodeTimedOut
	// after the timeout.
	ExitCode int
	TimedOut bool
}

// errTimedOut is the cause a command's timeout cancels it with.
var errTimedOut = errors.New("command timed out")

// Exec runs cmd in the call's session (the call must come from
// AcquireCommand). It returns once the command and every process it
// started are gone. A non-zero exit is a result, not an error; errors are
// a command that could not run, a session that ended under it (ErrEnded),
// and ctx ending first, which kills the command's whole process tree.
func (c *Call) Exec(ctx context.Context, cmd Command) (CommandResult, error) {
	s := c.s
	if !c.command {
		return CommandResult{}, errors.New("exec: the call was not acquired for a command")
	}
	// The command's text, not its output, is the session's to keep.
	s.log.Info("command", "command", clip(cmd.Text), "timeout", cmd.Timeout)
	if out := s.agent.out; out != nil {
		out.Note("berth: command (timeout " + cmd.Timeout.String() + "): " + strconv.Quote(cmd.Text))
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.killCtx, func() { cancel(ErrEnded) })
	defer stop()
	run, done := context.WithTimeoutCause(ctx, cmd.Timeout, errTimedOut)
	defer done()

	st, err := s.agent.h.Exec(run, sandbox.ExecSpec{
		Argv:    []string{"bash", "-c", cmd.Text},
		Stdout:  cmd.Stdout,
		Stderr:  cmd.Stderr,
		Started: cmd.Started,
	})
	switch {
	case err == nil:
		return CommandResult{ExitCode: st.Code}, nil
	case ctx.Err() == nil && errors.Is(context.Cause(run), errTimedOut):
		s.log.Info("command timed out", "timeout", cmd.Timeout)
		return CommandResult{ExitCode: api.ExitCodeTimedOut, TimedOut: true}, nil
	case errors.Is(context.Cause(ctx), ErrEnded):
		reason, detail, _ := s.ended()
		return CommandResult{}, fmt.Errorf("session ended during the command (%s: %s): %w", reason, detail, ErrEnded)
	case ctx.Err() != nil:
		return CommandResult{}, fmt.Errorf("command: %w", context.Cause(ctx))
	}
	return CommandResult{}, fmt.Errorf("run command: %v: %w", err, errdefs.ErrAgent)
}

// clip shortens a command for berth's own log.
func clip(s string) string {
	const n = 1024
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
