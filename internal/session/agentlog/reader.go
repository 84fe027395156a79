package agentlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// Reader reads one log from its oldest rotated file to its current one,
// and can follow the current one across rotations.
type Reader struct {
	path  string
	files []*os.File // oldest first; the last was the current file when opened
	cur   int        // the file being read
}

// Open opens the log at path and its rotated files (up to files in all).
// A log with no current file is os.ErrNotExist.
func Open(path string, files int) (*Reader, error) {
	for attempt := 0; ; attempt++ {
		r, err := open(path, max(files, 1))
		if err != nil {
			return nil, err
		}
		// A rotation while the files were opened would skip one: retry.
		if r.settled() || attempt == 2 {
			return r, nil
		}
		r.Close()
	}
}

func open(path string, files int) (*Reader, error) {
	r := &Reader{path: path}
	for i := files - 1; i >= 0; i-- {
		f, err := os.Open(name(path, i))
		if err != nil {
			if i > 0 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			r.Close()
			return nil, err
		}
		r.files = append(r.files, f)
	}
	return r, nil
}

// settled reports whether every open file is still the one at its name.
func (r *Reader) settled() bool {
	for i, f := range r.files {
		at, err := os.Stat(name(r.path, len(r.files)-1-i))
		fi, ferr := f.Stat()
		if err != nil || ferr != nil || !os.SameFile(at, fi) {
			return false
		}
	}
	return true
}

// Close closes every file.
func (r *Reader) Close() error {
	for _, f := range r.files {
		if f != nil {
			f.Close()
		}
	}
	r.files = nil
	return nil
}

// SeekTail positions the reader at the start of the last n lines (roughly:
// it looks back at most 64 KB per file).
func (r *Reader) SeekTail(n int) {
	for i := len(r.files) - 1; i >= 0; i-- {
		found, whole := seekTail(r.files[i], n)
		r.cur = i
		// A file read back to its start leaves the rest to the one before.
		if n -= found; n <= 0 || !whole {
			return
		}
	}
}

// Lines reads what is left as lines, keeping only the last n.
func (r *Reader) Lines(n int) []string {
	readers := make([]io.Reader, 0, len(r.files))
	for _, f := range r.files[r.cur:] {
		readers = append(readers, f)
	}
	var lines []string
	sc := bufio.NewScanner(io.MultiReader(readers...))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = append(lines[:0], lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// Copy writes the log to w from the reader's position, calling flush
// after each write. With a nil ended it stops at the log's end; otherwise
// it follows the log as the agent writes and rotates it, until ended is
// closed (then it makes one last pass) or ctx is done.
func (r *Reader) Copy(ctx context.Context, ended <-chan struct{}, w io.Writer, flush func()) error {
	follow := ended != nil
	buf := make([]byte, 32<<10)
	var tick *time.Ticker
	for {
		if err := r.drain(w, buf, flush); err != nil {
			return err
		}
		if r.cur < len(r.files)-1 {
			r.files[r.cur].Close() // read to its end: it is done
			r.files[r.cur] = nil
			r.cur++
			continue
		}
		if next, err := r.rotated(); err != nil {
			return err
		} else if next {
			continue
		}
		if !follow {
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ended:
			// One last pass picks up the agent's final lines.
			follow = false
		case <-tick.C:
		}
	}
}

// drain copies the current file to its end.
func (r *Reader) drain(w io.Writer, buf []byte, flush func()) error {
	for {
		n, err := r.files[r.cur].Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			flush()
			continue
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// rotated opens the log's new current file when the one being read was
// rotated away (read to its end first: nothing is written to it after).
func (r *Reader) rotated() (bool, error) {
	at, err := os.Stat(r.path)
	if err != nil {
		return false, nil // mid-rotation, or pruned: look again later
	}
	fi, err := r.files[r.cur].Stat()
	if err != nil || os.SameFile(at, fi) {
		return false, err
	}
	f, err := os.Open(r.path)
	if err != nil {
		return false, nil
	}
	r.files = append(r.files, f)
	return true, nil
}

// seekTail positions f at the start of its last n lines, looking back at
// most 64 KB. It returns how many lines it found, and whether it reached
// the file's start (so an earlier file may hold more).
func seekTail(f *os.File, n int) (found int, whole bool) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false
	}
	size := fi.Size()
	start := max(0, size-64<<10)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return 0, false
	}
	pos := len(buf)
	if pos > 0 && buf[pos-1] == '\n' {
		pos--
	}
	for found < n {
		j := bytes.LastIndexByte(buf[:pos], '\n')
		if j < 0 {
			if pos > 0 {
				found++ // the first line, with no newline before it
			}
			pos = 0
			break
		}
		found++
		pos = j
	}
	if pos > 0 {
		pos++
	}
	f.Seek(start+int64(pos), io.SeekStart)
	return found, start == 0 && pos == 0
}
