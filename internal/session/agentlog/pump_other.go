//go:build !linux

package agentlog

import (
	"errors"
	"log/slog"
	"os"
	"sync"
)

// Pump copies every sandbox's output into its log. Off Linux it runs a
// goroutine per capture; Linux's pump shares one among all.
type Pump struct {
	lim Limits
	log *slog.Logger
	wg  sync.WaitGroup // the captures' goroutines

	// mu guards the fields that follow.
	mu     sync.Mutex
	caps   map[*Capture]bool
	closed bool
}

// source is the pipe's read end.
type source struct{ r *os.File }

// NewPump returns a pump. Close stops it.
func NewPump(lim Limits, log *slog.Logger) (*Pump, error) {
	return &Pump{lim: lim.withDefaults(), log: log, caps: map[*Capture]bool{}}, nil
}

func (p *Pump) add(c *Capture) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.src.r = r
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		r.Close()
		w.Close()
		return nil, errors.New("agent log pump is closed")
	}
	p.caps[c] = true
	p.wg.Go(func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				c.write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		r.Close()
		p.mu.Lock()
		delete(p.caps, c)
		p.mu.Unlock()
		c.closeLog()
	})
	return w, nil
}

// Close stops capturing: whatever the pipe still holds is dropped and the
// log closed. It returns once the capture is done.
func (c *Capture) Close() {
	c.Started()
	c.src.r.Close()
	<-c.done
}

// Close stops the pump and every capture still open, and waits.
func (p *Pump) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.caps {
		c.src.r.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
