package session

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session/agentlog"
)

// Each session incarnation's agent output goes through a pipe into a log
// of its own, capped and rotated (package agentlog), kept for LogRetention
// after the session ends. The manager owns the files: where they are, how
// they are read and followed, and when they go.

// LogPath is where a session incarnation's agent output goes.
func (m *Manager) LogPath(runtimeID, recordID string) string {
	return filepath.Join(m.opts.LogDir, runtimeID, recordID+".log")
}

// openOutput starts capturing a sandbox's output into the log at path;
// nil when the manager keeps no logs.
func (m *Manager) openOutput(path string) (*agentlog.Capture, error) {
	m.pumpOnce.Do(func() {
		if m.opts.LogDir != "" && m.shutdownCtx.Err() == nil {
			m.pump, m.pumpErr = agentlog.NewPump(m.opts.LogLimits, m.log)
		}
	})
	if m.pump == nil {
		return nil, m.pumpErr
	}
	return m.pump.Open(path)
}

// Tail returns the last n lines of a session's log; none if it has none.
func (m *Manager) Tail(rec Record, n int) []string {
	r, err := agentlog.Open(m.LogPath(rec.RuntimeID, rec.ID), m.opts.LogLimits.Files)
	if err != nil {
		return nil
	}
	defer r.Close()
	r.SeekTail(n)
	return r.Lines(n)
}

// LogReader reads one session's log, across its rotated files.
type LogReader struct {
	r     *agentlog.Reader
	ended <-chan struct{} // closed once the session is no longer live here
}

// OpenLog opens a session's log.
func (m *Manager) OpenLog(rec Record) (*LogReader, error) {
	r, err := agentlog.Open(m.LogPath(rec.RuntimeID, rec.ID), m.opts.LogLimits.Files)
	if err != nil {
		return nil, fmt.Errorf("no log for session %s (logs are kept for a while after a session ends): %w", rec.ID, errdefs.ErrNotFound)
	}
	return &LogReader{r: r, ended: m.endedChan(rec.ID)}, nil
}

// Close closes the log.
func (l *LogReader) Close() error { return l.r.Close() }

// Copy writes the log to w, from its last tail lines when tail is
// positive. With follow it keeps writing what the agent prints until the
// session ends or ctx is done; flush is called after each write.
func (l *LogReader) Copy(ctx context.Context, tail int, follow bool, w io.Writer, flush func()) error {
	if tail > 0 {
		l.r.SeekTail(tail)
	}
	var ended <-chan struct{}
	if follow {
		ended = l.ended
	}
	return l.r.Copy(ctx, ended, w, flush)
}

// endedChan is closed once the incarnation recordID is no longer live on
// this node (at once if it is not).
func (m *Manager) endedChan(recordID string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		if s.rec.ID == recordID {
			return s.done
		}
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// pruneLogs removes session logs, rotated files included, older than keep.
func (m *Manager) pruneLogs(keep time.Duration) error {
	if m.opts.LogDir == "" {
		return nil
	}
	cutoff := time.Now().Add(-keep)
	return filepath.WalkDir(m.opts.LogDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !agentlog.IsLog(d.Name(), ".log") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(path)
		}
		return nil
	})
}
