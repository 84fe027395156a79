// Package storage is AgentCore's session storage: a filesystem of each
// session's own that outlives its sandbox. The session's first call sees an
// empty directory; what it writes there is there again when the same
// session ID comes back after a stop, an idle timeout, a crash or a berth
// restart. It is wiped when the session's runtime version changes, after a
// time without use, and with its runtime or endpoint.
//
// Each session's storage is an ext4 image of the cap's size, sparse on
// disk, loop-mounted on the host while a sandbox uses it and bind-mounted
// into the sandbox. The filesystem's own size is the cap: a write past it
// fails with ENOSPC inside the sandbox, at once, with nothing to poll.
package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultCap is AgentCore's limit on one session's storage.
const DefaultCap = 1 << 30

// Key names one session's storage.
type Key struct {
	RuntimeID, Endpoint, SessionID string
}

// Store keeps every session's storage under one directory.
type Store struct {
	dir string
	cap int64
	log *slog.Logger
	// mu guards open and serialises image creation and mounts.
	mu   sync.Mutex
	open map[string]*Volume // by key directory
}

// Available reports why session storage cannot work here, or nil: it needs
// root (loop devices, mounts) and mkfs.ext4.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("session storage needs berth to run as root (loop devices and mounts)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return errors.New("session storage needs mkfs.ext4 (Debian's e2fsprogs)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("session storage needs loop devices: %w", err)
	}
	return nil
}

// Open returns the store in dir with a per-session cap in bytes.
func Open(dir string, capBytes int64, log *slog.Logger) (*Store, error) {
	if capBytes <= 0 {
		capBytes = DefaultCap
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create session storage dir: %w", err)
	}
	return &Store{dir: dir, cap: capBytes, log: log, open: map[string]*Volume{}}, nil
}

// meta is what berth remembers of one session's storage.
type meta struct {
	Key      Key       `json:"key"`
	Version  int       `json:"version"`
	LastUsed time.Time `json:"last_used"`
}

func (s *Store) keyDir(k Key) string {
	sum := sha256.Sum256([]byte(k.RuntimeID + "\x00" + k.Endpoint + "\x00" + k.SessionID))
	return filepath.Join(s.dir, k.RuntimeID, hex.EncodeToString(sum[:12]))
}

// Volume is one session's storage, mounted on the host at Dir while a
// sandbox uses it.
type Volume struct {
	s   *Store
	dir string // the key's directory
	// Dir is the host directory to bind into the sandbox.
	Dir string
}

// Attach mounts a session's storage for the sandbox about to serve it,
// creating it empty on first use and wiping it when version is not the
// one that wrote it.
func (s *Store) Attach(k Key, version int) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.keyDir(k)
	if v := s.open[dir]; v != nil {
		return nil, fmt.Errorf("session storage of %s is still attached to another sandbox", k.SessionID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("session storage: %w", err)
	}
	image, mnt := filepath.Join(dir, "image.ext4"), filepath.Join(dir, "mnt")
	var m meta
	if data, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil {
		json.Unmarshal(data, &m)
	}
	if m.Version != version {
		// A new version gets a fresh filesystem, as on AgentCore.
		if err := os.Remove(image); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("session storage: wipe: %w", err)
		}
	}
	if _, err := os.Stat(image); errors.Is(err, fs.ErrNotExist) {
		if err := s.create(image); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, fmt.Errorf("session storage: %w", err)
	}
	if err := mountImage(image, mnt); err != nil {
		return nil, fmt.Errorf("session storage: %w", err)
	}
	m = meta{Key: k, Version: version, LastUsed: time.Now().UTC()}
	if err := writeMeta(dir, m); err != nil {
		unix.Unmount(mnt, 0)
		return nil, err
	}
	v := &Volume{s: s, dir: dir, Dir: mnt}
	s.open[dir] = v
	return v, nil
}

// create makes an empty filesystem of the cap's size: a template made once
// per store, copied sparse, so a new session costs a copy of the metadata.
func (s *Store) create(image string) error {
	template := filepath.Join(s.dir, fmt.Sprintf("template-%d.ext4", s.cap))
	if _, err := os.Stat(template); errors.Is(err, fs.ErrNotExist) {
		tmp := template + ".tmp"
		if err := os.Truncate(tmp, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("session storage template: %w", err)
		}
		f, err := os.Create(tmp)
		if err != nil {
			return fmt.Errorf("session storage template: %w", err)
		}
		err = f.Truncate(s.cap)
		f.Close()
		if err != nil {
			return fmt.Errorf("session storage template: %w", err)
		}
		// The root is writable by whoever the agent runs as; lazy init
		// keeps a fresh filesystem's blocks unwritten (sparse).
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", tmp).CombinedOutput()
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("session storage template: mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
		}
		if err := os.Rename(tmp, template); err != nil {
			return fmt.Errorf("session storage template: %w", err)
		}
	}
	if out, err := exec.Command("cp", "--sparse=always", template, image).CombinedOutput(); err != nil {
		os.Remove(image)
		return fmt.Errorf("session storage: copy template: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Detach flushes and unmounts the volume; its data stays for the next
// sandbox of the session.
func (v *Volume) Detach() error {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, v.dir)
	if err := unmount(v.Dir); err != nil {
		return fmt.Errorf("session storage: %w", err)
	}
	return nil
}

func writeMeta(dir string, m meta) error {
	data, _ := json.Marshal(m)
	tmp := filepath.Join(dir, "meta.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("session storage: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "meta.json")); err != nil {
		return fmt.Errorf("session storage: %w", err)
	}
	return nil
}

// Recover unmounts what a previous berth process left mounted. Call it
// before any Attach.
func (s *Store) Recover() error {
	var errs []error
	for _, mnt := range mountsUnder(s.dir) {
		if err := unmount(mnt); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Delete wipes every storage of a runtime, or of one of its endpoints
// (endpoint non-empty), unless attached.
func (s *Store) Delete(runtimeID, endpoint string) error {
	return s.sweep(func(m meta) bool {
		return m.Key.RuntimeID == runtimeID && (endpoint == "" || m.Key.Endpoint == endpoint)
	})
}

// Expire wipes storage unused since before.
func (s *Store) Expire(before time.Time) error {
	return s.sweep(func(m meta) bool { return m.LastUsed.Before(before) })
}

// sweep removes every unattached storage gone says goes.
func (s *Store) sweep(gone func(meta) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	metas, _ := filepath.Glob(filepath.Join(s.dir, "*", "*", "meta.json"))
	var errs []error
	n := 0
	for _, p := range metas {
		dir := filepath.Dir(p)
		var m meta
		data, err := os.ReadFile(p)
		if err != nil || json.Unmarshal(data, &m) != nil || s.open[dir] != nil || !gone(m) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		s.log.Info("session storage wiped", "count", n)
	}
	return errors.Join(errs...)
}

// Used reports how many bytes a mounted volume holds.
func (v *Volume) Used() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(v.Dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * int64(st.Bsize), nil
}
