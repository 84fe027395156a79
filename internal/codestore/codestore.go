// Package codestore keeps immutable snapshots of agents' code, content
// addressed: a runtime version runs its own snapshot, so an endpoint pinned
// to version 1 runs version 1's code whatever the directory holds today.
// Identical trees are stored once. A snapshot comes from a directory, or
// from a .zip archive unpacked with AgentCore's limits.
package codestore

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// AgentCore's limits on a code zip.
const (
	MaxZipBytes      = 250 << 20
	MaxUnpackedBytes = 750 << 20
)

// Store is a directory of snapshots, one subdirectory per digest.
type Store struct {
	dir string
	// mu serialises writers, so two snapshots of one tree do not race to
	// the same name.
	mu sync.Mutex
}

// Open returns the store in dir, creating it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create code store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Path is where the snapshot with digest lives.
func (s *Store) Path(digest string) string { return filepath.Join(s.dir, digest) }

// Snapshot copies the tree at src into the store, unless an identical tree
// is there already, and returns its digest and path. Symlinks are kept as
// links; ones that lead out of the tree are refused. Paths in skip (berth's
// data dir, when the code directory holds it) are left out.
func (s *Store) Snapshot(src string, skip ...string) (digest, dir string, err error) {
	entries, err := scan(src, append(skip, s.dir))
	if err != nil {
		return "", "", err
	}
	digest = entries.digest()
	return s.put(digest, func(tmp string) error { return entries.copyTo(src, tmp) })
}

// Unzip unpacks a zip archive into the store, unless an identical tree is
// there already, with AgentCore's limits: 250 MB zipped, 750 MB unpacked,
// no absolute or ".." entries, no links.
func (s *Store) Unzip(zipPath string) (digest, dir string, err error) {
	fi, err := os.Stat(zipPath)
	if err != nil {
		return "", "", fmt.Errorf("zip: %w", err)
	}
	if fi.Size() > MaxZipBytes {
		return "", "", fmt.Errorf("zip of %d bytes exceeds the %d-byte limit: %w", fi.Size(), MaxZipBytes, errdefs.ErrInvalidArgument)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return "", "", fmt.Errorf("not a zip archive: %w", errdefs.ErrInvalidArgument)
	}
	defer zr.Close()
	var total uint64
	for _, f := range zr.File {
		name := f.Name
		clean := path.Clean(name)
		switch {
		case strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) || filepath.IsAbs(name):
			return "", "", fmt.Errorf("zip entry %q is absolute: %w", name, errdefs.ErrInvalidArgument)
		case clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(name, `\`):
			return "", "", fmt.Errorf("zip entry %q leads out of the archive: %w", name, errdefs.ErrInvalidArgument)
		case f.Mode()&fs.ModeSymlink != 0 || f.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			return "", "", fmt.Errorf("zip entry %q is not a file or directory: %w", name, errdefs.ErrInvalidArgument)
		}
		total += f.UncompressedSize64
		if total > MaxUnpackedBytes {
			return "", "", fmt.Errorf("zip unpacks to more than %d bytes: %w", MaxUnpackedBytes, errdefs.ErrInvalidArgument)
		}
	}
	// Unpack into a scratch dir, then snapshot it: the digest is of the
	// tree, so a zip and a directory with the same files share a snapshot.
	scratch, err := os.MkdirTemp(s.dir, ".unzip-")
	if err != nil {
		return "", "", fmt.Errorf("unzip: %w", err)
	}
	defer os.RemoveAll(scratch)
	var written int64
	for _, f := range zr.File {
		dst := filepath.Join(scratch, filepath.FromSlash(path.Clean(f.Name)))
		if f.FileInfo().IsDir() {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return "", "", fmt.Errorf("unzip: %w", err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", "", fmt.Errorf("unzip: %w", err)
		}
		n, err := unzipFile(f, dst, MaxUnpackedBytes-written)
		if err != nil {
			return "", "", err
		}
		written += n
	}
	return s.Snapshot(scratch)
}

// unzipFile writes one entry, executable when the archive says so (as
// AgentCore keeps an entry's execute bit), and at most limit bytes: the
// archive's declared sizes are not trusted.
func unzipFile(f *zip.File, dst string, limit int64) (int64, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("zip entry %q: %w", f.Name, errdefs.ErrInvalidArgument)
	}
	defer rc.Close()
	mode := os.FileMode(0o644)
	if f.Mode()&0o111 != 0 {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, fmt.Errorf("zip entry %q: %w", f.Name, err)
	}
	n, err := io.Copy(out, io.LimitReader(rc, limit+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return n, fmt.Errorf("zip entry %q: %v: %w", f.Name, err, errdefs.ErrInvalidArgument)
	case n > limit:
		return n, fmt.Errorf("zip unpacks to more than %d bytes: %w", MaxUnpackedBytes, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// put stores a tree under digest, filling a scratch dir with fill unless
// the snapshot exists.
func (s *Store) put(digest string, fill func(tmp string) error) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst := s.Path(digest)
	if _, err := os.Stat(dst); err == nil {
		return digest, dst, nil
	}
	tmp, err := os.MkdirTemp(s.dir, ".snapshot-")
	if err != nil {
		return "", "", fmt.Errorf("snapshot: %w", err)
	}
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", "", fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return "", "", fmt.Errorf("snapshot: %w", err)
	}
	return digest, dst, nil
}

// Keep removes every snapshot whose digest is not in keep, and any
// scratch left by an interrupted write.
func (s *Store) Keep(keep map[string]bool) (removed int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("list code store: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if strings.HasPrefix(e.Name(), ".") {
			// Scratch of a write that may still run; gone once stale.
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// entry is one item of a tree, in the order the digest reads it.
type entry struct {
	rel  string
	mode fs.FileMode
	size int64
	hash string // file content, or a symlink's target
}

type tree []entry

// scan reads the tree at root: every directory, file and symlink.
func scan(root string, skip []string) (tree, error) {
	var t tree
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, sk := range skip {
			if p == sk {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{rel: filepath.ToSlash(rel), mode: fi.Mode()}
		switch {
		case fi.Mode().IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			resolved := target
			if !filepath.IsAbs(resolved) {
				resolved = filepath.Join(filepath.Dir(p), target)
			}
			if r, err := filepath.Rel(root, filepath.Clean(resolved)); err != nil || r == ".." || strings.HasPrefix(r, "../") {
				return fmt.Errorf("%s links out of the code directory: %w", e.rel, errdefs.ErrInvalidArgument)
			}
			e.hash = target
		case fi.Mode().IsRegular():
			h, err := hashFile(p)
			if err != nil {
				return err
			}
			e.size, e.hash = fi.Size(), h
		default:
			return fmt.Errorf("%s is not a file, directory or link: %w", e.rel, errdefs.ErrInvalidArgument)
		}
		t = append(t, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read code: %w", err)
	}
	sort.Slice(t, func(i, j int) bool { return t[i].rel < t[j].rel })
	return t, nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// digest names the tree by its paths, kinds, execute bits and contents.
func (t tree) digest() string {
	h := sha256.New()
	for _, e := range t {
		kind := "f"
		switch {
		case e.mode.IsDir():
			kind = "d"
		case e.mode&fs.ModeSymlink != 0:
			kind = "l"
		case e.mode&0o111 != 0:
			kind = "x"
		}
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", kind, e.rel, e.hash)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// copyTo copies the tree from src into dst, its files read-only. (The
// linux sandbox binds the whole snapshot read-only; directories stay
// writable to berth so that an unprivileged berth can remove them.)
func (t tree) copyTo(src, dst string) error {
	for _, e := range t {
		from, to := filepath.Join(src, e.rel), filepath.Join(dst, filepath.FromSlash(e.rel))
		switch {
		case e.mode.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
		case e.mode&fs.ModeSymlink != 0:
			if err := os.Symlink(e.hash, to); err != nil {
				return err
			}
		default:
			mode := os.FileMode(0o444)
			if e.mode&0o111 != 0 {
				mode = 0o555
			}
			if err := copyFile(from, to, mode); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
