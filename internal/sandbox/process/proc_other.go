//go:build unix && !linux

package process

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// Without procfs this backend cannot prove a recorded PID is still the
// process it started, so Reap removes leftover dirs but kills nothing, and
// handles report no stats.

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func waitExitNoReap(int) bool { return false }

func procStartTime(int) (uint64, error) {
	return 0, errors.New("process start time needs procfs")
}

func awaitGroupGone(int, uint64, time.Duration) {}

func killLeftover(context.Context, record) (int, error) { return 0, nil }
