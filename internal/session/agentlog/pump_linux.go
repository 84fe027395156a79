//go:build linux

package agentlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Pump copies every sandbox's output into its log on one goroutine, woken
// by one epoll instance: an idle session costs a pipe, not a goroutine
// and a buffer. Reads are level-triggered and at most one buffer per pipe
// per turn, so a chatty agent cannot starve the others.
type Pump struct {
	lim  Limits
	log  *slog.Logger
	ep   int           // the epoll instance
	wake int           // an eventfd in ep: Capture.Close and Close ring it
	done chan struct{} // closed when the pump's goroutine has returned

	// mu guards the fields that follow.
	mu     sync.Mutex
	caps   map[int32]*Capture // by read end
	ending []*Capture         // for the pump to close at its next turn
	closed bool               // Close was called; no new captures
	gone   bool               // ep and wake are closed
}

// source is the pipe's read end, non-blocking.
type source struct{ fd int }

const bufSize = 32 << 10

// NewPump starts a pump. Close stops it.
func NewPump(lim Limits, log *slog.Logger) (*Pump, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("agent log pump: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)})
	}
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("agent log pump: eventfd: %w", err)
	}
	p := &Pump{lim: lim.withDefaults(), log: log, ep: ep, wake: wake, done: make(chan struct{}), caps: map[int32]*Capture{}}
	go p.run()
	return p, nil
}

// add makes c's pipe and watches its read end; it returns the write end.
func (p *Pump) add(c *Capture) (*os.File, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	c.src.fd = fds[0]
	p.mu.Lock()
	defer p.mu.Unlock()
	err := errors.New("agent log pump is closed")
	if !p.closed {
		p.caps[int32(fds[0])] = c
		if err = unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, fds[0], &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fds[0])}); err != nil {
			delete(p.caps, int32(fds[0]))
		}
	}
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	// The write end stays blocking: it becomes the agent's stdout.
	return os.NewFile(uintptr(fds[1]), "agent-output"), nil
}

// Close stops capturing: whatever the pipe still holds is dropped and the
// log closed. It returns once the capture is done.
func (c *Capture) Close() {
	c.Started()
	p := c.p
	p.mu.Lock()
	if p.caps[int32(c.src.fd)] == c {
		p.ending = append(p.ending, c)
	}
	p.mu.Unlock()
	p.ring()
	<-c.done
}

// Close stops the pump and every capture still open, and waits.
func (p *Pump) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ring()
	<-p.done
}

func (p *Pump) ring() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.gone {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(p.wake, one[:]) // EAGAIN: it is ringing already
	}
}

// run is the pump's goroutine. It alone reads and closes read ends, so a
// descriptor number is never reused under it.
func (p *Pump) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, bufSize)
	for {
		n, err := unix.EpollWait(p.ep, events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			p.log.Error("agent log pump: epoll_wait failed; agent output is no longer captured", "err", err)
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == p.wake {
				var b [8]byte
				unix.Read(p.wake, b[:])
				continue
			}
			p.mu.Lock()
			c := p.caps[ev.Fd]
			p.mu.Unlock()
			if c != nil {
				p.pump(c, buf)
			}
		}
		p.mu.Lock()
		ending, closed := p.ending, p.closed
		p.ending = nil
		if closed {
			for _, c := range p.caps {
				ending = append(ending, c)
			}
		}
		p.mu.Unlock()
		for _, c := range ending {
			p.finish(c)
		}
		if closed {
			p.mu.Lock()
			p.gone = true
			unix.Close(p.wake)
			unix.Close(p.ep)
			p.mu.Unlock()
			return
		}
	}
}

// pump moves one read's worth of c's output into its log.
func (p *Pump) pump(c *Capture, buf []byte) {
	n, err := unix.Read(c.src.fd, buf)
	switch {
	case n > 0:
		c.write(buf[:n])
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
	default:
		// End of file: every process holding the write end is gone.
		p.finish(c)
	}
}

// finish stops watching c's pipe, closes it and c's log.
func (p *Pump) finish(c *Capture) {
	fd := int32(c.src.fd)
	p.mu.Lock()
	ours := p.caps[fd] == c
	delete(p.caps, fd)
	p.mu.Unlock()
	if !ours {
		return // finished already
	}
	unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, int(fd), nil)
	unix.Close(int(fd))
	c.closeLog()
}
