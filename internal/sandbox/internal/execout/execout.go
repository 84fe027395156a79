// Package execout carries a command's stdout and stderr from the pipes the
// command writes to the writers of sandbox.ExecSpec, for both backends.
package execout

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Pipes are a command's two output pipes. The write ends go to the
// command; Copy relays the read ends until every holder of a write end has
// closed it.
type Pipes struct {
	// Stdout and Stderr are the write ends, for the command.
	Stdout, Stderr *os.File
	outR, errR     *os.File
	wg             sync.WaitGroup
}

// Open makes the two pipes.
func Open() (*Pipes, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("create stderr pipe: %w", err)
	}
	return &Pipes{Stdout: outW, Stderr: errW, outR: outR, errR: errR}, nil
}

// CloseWrite closes berth's copies of the write ends, once the command
// holds its own.
func (p *Pipes) CloseWrite() {
	p.Stdout.Close()
	p.Stderr.Close()
}

// Copy starts relaying each pipe to its writer (nil discards), each from
// a goroutine that Wait waits for.
func (p *Pipes) Copy(stdout, stderr io.Writer) {
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{p.outR, stdout}, {p.errR, stderr}} {
		p.wg.Go(func() { relay(c.w, c.r) })
	}
}

// relay copies r to w as it arrives; after a write error it drains r, so
// the command never blocks on a full pipe.
func relay(w io.Writer, r io.Reader) {
	if w == nil {
		w = io.Discard
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != io.Discard {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = io.Discard
			}
		}
		if err != nil {
			return
		}
	}
}

// ErrHeld means a process outside the command's tracked tree still held an
// output pipe after the command ended.
var ErrHeld = errors.New("output still held open by a process that escaped the command")

// Wait waits until both pipes reach end of file, or patience runs out
// (then it stops reading and reports ErrHeld), and closes the read ends.
func (p *Pipes) Wait(patience time.Duration) error {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(patience)
	defer t.Stop()
	var err error
	select {
	case <-done:
	case <-t.C:
		err = ErrHeld
	}
	// Closing unblocks a pending read; then the relays return.
	p.outR.Close()
	p.errR.Close()
	<-done
	return err
}

// Close closes every end, for a command that never started.
func (p *Pipes) Close() {
	for _, f := range []*os.File{p.Stdout, p.Stderr, p.outR, p.errR} {
		f.Close()
	}
}
