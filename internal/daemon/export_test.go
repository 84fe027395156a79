package daemon

import (
	"log/slog"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
)

// Test-only views into a running daemon.

// Sessions is the daemon's session manager.
func (d *Daemon) Sessions() *session.Manager { return d.sessions }

// DataDir is the daemon's absolute data directory.
func (d *Daemon) DataDir() string { return d.dataDir }

// Store is the daemon's store.
func (d *Daemon) Store() *store.DB { return d.db }

// ReleaseLock lets go of the data dir, as the kernel does for a berth that
// dies: tests that play a crash leave the rest of d running.
func (d *Daemon) ReleaseLock() { d.unlock() }

// OpenBackends opens the sandbox backends a daemon would, on dataDir.
func OpenBackends(dataDir string, userNS bool) (map[string]sandbox.Backend, error) {
	b, _, err := openBackends(dataDir, userNS, slog.New(slog.DiscardHandler))
	return b, err
}
