package daemon

import (
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
