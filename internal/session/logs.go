package session

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Each session incarnation's agent output goes to a log file of its own,
// kept for LogRetention after the session ends. The manager owns the files:
// where they are, how they are read and followed, and when they go.

// LogPath is where a session incarnation's agent output goes.
func (m *Manager) LogPath(runtimeID, recordID string) string {
	return filepath.Join(m.opts.LogDir, runtimeID, recordID+".log")
}

// Tail returns the last n lines of a session's log; none if it has none.
func (m *Manager) Tail(rec Record, n int) []string {
	f, err := os.Open(m.LogPath(rec.RuntimeID, rec.ID))
	if err != nil {
		return nil
	}
	defer f.Close()
	seekTail(f, n)
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// LogReader reads one session's log.
type LogReader struct {
	f     *os.File
	ended <-chan struct{} // closed once the session is no longer live here
}

// OpenLog opens a session's log.
func (m *Manager) OpenLog(rec Record) (*LogReader, error) {
	f, err := os.Open(m.LogPath(rec.RuntimeID, rec.ID))
	if err != nil {
		return nil, fmt.Errorf("no log for session %s (logs are kept for a while after a session ends): %w", rec.ID, errdefs.ErrNotFound)
	}
	return &LogReader{f: f, ended: m.endedChan(rec.ID)}, nil
}

// Close closes the log.
func (l *LogReader) Close() error { return l.f.Close() }

// Copy writes the log to w, from its last tail lines when tail is
// positive. With follow it keeps writing what the agent prints until the
// session ends or ctx is done; flush is called after each write.
func (l *LogReader) Copy(ctx context.Context, tail int, follow bool, w io.Writer, flush func()) error {
	if tail > 0 {
		seekTail(l.f, tail)
	}
	ended := l.ended
	if !follow {
		ended = nil
	}
	buf := make([]byte, 32<<10)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := l.f.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			flush()
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		if ended == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ended:
			// One last read picks up the agent's final lines.
			ended = nil
		case <-t.C:
		}
	}
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

// pruneLogs removes session logs older than keep.
func (m *Manager) pruneLogs(keep time.Duration) error {
	if m.opts.LogDir == "" {
		return nil
	}
	cutoff := time.Now().Add(-keep)
	return filepath.WalkDir(m.opts.LogDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(path)
		}
		return nil
	})
}

// seekTail positions f at the start of its last n lines (roughly: it
// reads back at most 64 KB).
func seekTail(f *os.File, n int) {
	fi, err := f.Stat()
	if err != nil {
		return
	}
	size := fi.Size()
	start := max(0, size-64<<10)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return
	}
	pos := len(buf)
	if pos > 0 && buf[pos-1] == '\n' {
		pos--
	}
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(buf[:pos], '\n')
		if j < 0 {
			pos = 0
			break
		}
		pos = j
	}
	if pos > 0 {
		pos++
	}
	f.Seek(start+int64(pos), io.SeekStart)
}
