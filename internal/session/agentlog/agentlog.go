// Package agentlog keeps what agents print. A sandbox's stdout and stderr
// go to the write end of a pipe; berth copies the read end into the
// session's log, a file of capped size that rotates: path, then path.1 up
// to path.(Files-1), oldest last. The agent never holds a descriptor into
// berth's data dir, so it cannot write past the cap or around its
// sandbox's disk limit. Readers read across the rotation.
package agentlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits cap one log: MaxBytes per file, Files files in all (the current
// one and Files-1 rotated ones).
type Limits struct {
	MaxBytes int64
	Files    int
}

// Defaults: 10 MiB × 2 files, at most 20 MiB per session.
const (
	DefaultMaxBytes = 10 << 20
	DefaultFiles    = 2
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.Files <= 0 {
		l.Files = DefaultFiles
	}
	return l
}

// name is the i-th file of the log at path: the current one for 0, the
// i-th most recently rotated one after.
func name(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// IsLog reports whether file (a base name) is a log file or a rotated one
// of a log whose current file ends in suffix.
func IsLog(file, suffix string) bool {
	if strings.HasSuffix(file, suffix) {
		return true
	}
	i := strings.LastIndexByte(file, '.')
	if i < 0 || !strings.HasSuffix(file[:i], suffix) {
		return false
	}
	_, err := strconv.Atoi(file[i+1:])
	return err == nil
}

// Rename moves a log's files from old to path; the capture that writes it
// must be stopped or hold its lock.
func rename(old, path string, files int) error {
	var errs []error
	for i := range files {
		err := os.Rename(name(old, i), name(path, i))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// file is the writing side of one log. Its owner serialises calls.
type file struct {
	lim  Limits
	path string
	f    *os.File
	size int64
}

func create(path string, lim Limits) (*file, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create agent log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create agent log: %w", err)
	}
	return &file{lim: lim, path: path, f: f, size: fi.Size()}, nil
}

// write appends p, rotating whenever the current file would pass the cap.
func (l *file) write(p []byte) error {
	for len(p) > 0 {
		if l.f == nil {
			return errors.New("agent log is closed")
		}
		room := l.lim.MaxBytes - l.size
		if room <= 0 {
			if err := l.rotate(); err != nil {
				return err
			}
			continue
		}
		chunk := p[:min(int64(len(p)), room)]
		if len(chunk) < len(p) {
			// Rotate at a line's end where there is one, so no line
			// straddles two files.
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				chunk = chunk[:i+1]
			} else if l.size > 0 {
				if err := l.rotate(); err != nil {
					return err
				}
				continue
			}
		}
		n, err := l.f.Write(chunk)
		l.size += int64(n)
		p = p[n:]
		if err != nil {
			return err
		}
	}
	return nil
}

// rotate shifts every file one place older, dropping the oldest, and
// starts an empty current file. The current name never goes missing, so a
// reader opening the log mid-rotation finds it: the full file is linked
// to its older name, then an empty one is renamed over it.
func (l *file) rotate() error {
	l.f.Close()
	l.f = nil
	if l.lim.Files > 1 {
		if err := os.Remove(name(l.path, l.lim.Files-1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate agent log: %w", err)
		}
	}
	for i := l.lim.Files - 1; i >= 2; i-- {
		if err := os.Rename(name(l.path, i-1), name(l.path, i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate agent log: %w", err)
		}
	}
	if l.lim.Files > 1 {
		if err := os.Link(l.path, name(l.path, 1)); err != nil {
			return fmt.Errorf("rotate agent log: %w", err)
		}
	}
	tmp := l.path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("rotate agent log: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		f.Close()
		return fmt.Errorf("rotate agent log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

func (l *file) close() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
