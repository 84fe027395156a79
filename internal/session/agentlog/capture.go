package agentlog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Capture is one sandbox's output on its way into its log.
type Capture struct {
	p    *Pump
	src  source        // the pipe's read end; only the pump reads or closes it
	w    *os.File      // the pipe's write end, until Started
	done chan struct{} // closed once the log holds everything and is closed

	// mu guards log and dropped: the pump writes, Rename moves.
	mu      sync.Mutex
	log     *file
	dropped bool // a write failed; said once in berth's log
}

// Writer is the pipe's write end, for sandbox.Spec.Output.
func (c *Capture) Writer() *os.File { return c.w }

// Started closes berth's copy of the write end, once the sandbox holds
// its own or failed to start: from then on the output ends when the last
// process of the sandbox is gone.
func (c *Capture) Started() {
	if c.w != nil {
		c.w.Close()
		c.w = nil
	}
}

// Done is closed once everything the sandbox printed is in the log, or
// the capture was closed.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Rename moves the log, rotated files and all, to path: a warm sandbox's
// log becomes its session's.
func (c *Capture) Rename(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := rename(c.log.path, path, c.log.lim.Files); err != nil {
		return fmt.Errorf("move agent log: %w", err)
	}
	c.log.path = path
	return nil
}

// write appends what the pump read. A failed write drops the output (the
// agent must never block on berth's disk) and is reported once.
func (c *Capture) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeLocked(p)
}

// Note appends a line of berth's own to the log (the text of a command run
// in the sandbox), between what the sandbox printed. Once the log is
// closed it does nothing.
func (c *Capture) Note(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log.f != nil {
		c.writeLocked([]byte(line + "\n"))
	}
}

func (c *Capture) writeLocked(p []byte) {
	err := c.log.write(p)
	if err == nil || c.dropped {
		return
	}
	c.dropped = true
	lvl := slog.LevelWarn
	if errdefs.NoSpace(err) {
		err, lvl = errdefs.DiskFull(err), slog.LevelError
	}
	c.p.log.Log(context.Background(), lvl, "agent output dropped", "log", c.log.path, "err", err)
}

// closeLog closes the log and marks the capture done; the pump calls it
// once, after its last write.
func (c *Capture) closeLog() {
	c.mu.Lock()
	c.log.close()
	c.mu.Unlock()
	close(c.done)
}

// Open starts capturing into the log at path, created if missing.
func (p *Pump) Open(path string) (*Capture, error) {
	log, err := create(path, p.lim)
	if err != nil {
		return nil, errdefs.DiskFull(err)
	}
	c := &Capture{p: p, log: log, done: make(chan struct{})}
	if c.w, err = p.add(c); err != nil {
		log.close()
		return nil, fmt.Errorf("capture agent output: %w", err)
	}
	return c, nil
}
