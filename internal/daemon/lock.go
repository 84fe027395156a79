package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile names the file in the data dir whose flock marks it as taken.
const lockFile = "berth.lock"

// lockDataDir takes the data dir for this process alone: an exclusive
// flock on <dir>/berth.lock, which holds the owner's pid. The kernel drops
// the lock when the process dies, however it dies, so a stale file never
// blocks a restart. A second berth on the same dir fails here, before it
// touches the store, the sandboxes or the logs of the first.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another berth (pid %s) is using %s", lockHolder(path), dir)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write data dir lock: %w", err)
	}
	return f, nil
}

// lockHolder reads the pid the lock's holder wrote; the holder writes it
// just after taking the lock, so a reader in between sees none.
func lockHolder(path string) string {
	data, err := os.ReadFile(path)
	if pid := strings.TrimSpace(string(data)); err == nil && pid != "" {
		return pid
	}
	return "unknown"
}
