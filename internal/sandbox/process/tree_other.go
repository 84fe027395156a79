//go:build unix && !linux

package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"syscall"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Without procfs and cgroups this backend cannot prove a recorded PID is
// still the process it started: teardown kills the process group alone,
// Reap removes leftover dirs but kills nothing, Attach is unsupported and
// handles report no stats.

type trackMode int

const (
	trackAuto trackMode = iota
	trackV1
	trackMarker
)

type tracking struct{}

func newTracking(string, trackMode, *slog.Logger) tracking { return tracking{} }

func (tracking) create(string) (string, error)                           { return "", nil }
func (tracking) start(_ string, cmd *exec.Cmd) error                     { return cmd.Start() }
func (tracking) remove(record)                                           {}
func (tracking) cgroupOf(record) string                                  { return "" }
func (tracking) kill(context.Context, record, map[int]bool) (int, error) { return 0, nil }
func (tracking) reapOrphans(func(string) bool) error                     { return nil }

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func waitExitNoReap(int) bool { return false }

func procStartTime(int) (uint64, error) {
	return 0, errors.New("process start time needs procfs")
}

type leader struct{}

func openLeader(record) (leader, error) {
	return leader{}, fmt.Errorf("attach needs Linux: %w", sandbox.ErrUnsupported)
}

func (leader) exited() bool { return true }
func (leader) wait()        {}
func (leader) close()       {}

// Commands are tracked by their process group alone.
type commandTrack struct{ pid int }

func (tracking) startCommand(_ record, cmd *exec.Cmd) (commandTrack, error) {
	if err := cmd.Start(); err != nil {
		return commandTrack{}, err
	}
	return commandTrack{pid: cmd.Process.Pid}, nil
}

func (tracking) killCommand(tc commandTrack, leaderHeld bool) {
	if leaderHeld {
		_ = syscall.Kill(-tc.pid, syscall.SIGKILL)
	}
}

func (tracking) endCommand(commandTrack) {}

func commandProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// awaitCommand reaps cmd: without waitid's WNOWAIT the group is ours only
// until then.
func awaitCommand(cmd *exec.Cmd) bool {
	_ = cmd.Wait()
	return true
}
