package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// unpack writes r, an image's filesystem flattened by go-containerregistry
// (mutate.Extract: upper layers first, whiteouts and opaque directories
// already applied, each path once), into the empty directory root. It
// returns the bytes of file content written, and fails past limit.
//
// Ownership, permissions and times are kept. Device nodes are not made,
// nor extended attributes set (file capabilities among them). An entry
// that leads out of root, directly or through a symlink, fails the unpack.
// What already exists came from an upper layer and wins.
func unpack(r io.Reader, root string, limit int64) (int64, error) {
	u := &unpacker{root: root, known: map[string]bool{"/": true}, buf: make([]byte, 1<<20)}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// The flattening writes the tar's end before it reports
			// an error (an unsafe path, a layer that failed its digest):
			// read on to hear it.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return 0, fmt.Errorf("read layers: %v: %w", err, errdefs.ErrInvalidArgument)
			}
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read layers: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := u.entry(hdr, tr); err != nil {
			return 0, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if u.size > limit {
			return 0, fmt.Errorf("the image unpacks to more than %s (%d times max_image_bytes): %w",
				HumanBytes(limit), unpackFactor, errdefs.ErrInvalidArgument)
		}
	}
	// Hard links last: their targets may come later in the stream.
	for _, hdr := range u.links {
		if err := u.link(hdr); err != nil {
			return 0, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	for _, hdr := range u.dirs {
		if err := u.meta(u.host(hdr.Name), hdr, false); err != nil {
			return 0, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	return u.size, nil
}

type unpacker struct {
	root  string
	known map[string]bool // in-image paths known to be real directories
	dirs  []*tar.Header   // directory entries, whose metadata is set last
	links []*tar.Header
	size  int64
	buf   []byte
}

// clean returns the in-image absolute path of name, or an error if it
// leads out of the image's root.
func clean(name string) (string, error) {
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("leads outside the image's root: %w", errdefs.ErrInvalidArgument)
	}
	return path.Clean("/" + c), nil
}

func (u *unpacker) host(p string) string { return filepath.Join(u.root, filepath.FromSlash(p)) }

// parent makes sure every directory above p exists as a real directory,
// creating missing ones. A symlink or file in the way fails: writing
// through it could land outside the root.
func (u *unpacker) parent(p string) error {
	dir := path.Dir(p)
	if u.known[dir] {
		return nil
	}
	if err := u.parent(dir); err != nil {
		return err
	}
	fi, err := os.Lstat(u.host(dir))
	switch {
	case err == nil && fi.IsDir():
	case err == nil:
		return fmt.Errorf("%s is not a directory in the image (a %s): %w", dir, fi.Mode().Type(), errdefs.ErrInvalidArgument)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(u.host(dir), 0o755); err != nil {
			return err
		}
	default:
		return err
	}
	u.known[dir] = true
	return nil
}

func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) error {
	p, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	hdr.Name = p
	if p == "/" {
		if hdr.Typeflag == tar.TypeDir {
			u.dirs = append(u.dirs, hdr)
		}
		return nil
	}
	if err := u.parent(p); err != nil {
		return err
	}
	target := u.host(p)
	fi, err := os.Lstat(target)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if exists && !fi.IsDir() {
			return nil // an upper layer put a file here
		}
		if !exists {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		}
		u.known[p] = true
		u.dirs = append(u.dirs, hdr)
		return nil
	case tar.TypeLink:
		if !exists {
			u.links = append(u.links, hdr)
		}
		return nil
	}
	if exists {
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(f, io.LimitReader(tr, hdr.Size), u.buf)
		u.size += n
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("layer ends inside the file: %w", errdefs.ErrInvalidArgument)
		}
		if err == nil {
			err = u.fileMeta(f, hdr)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return times(target, hdr)
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
		return u.meta(target, hdr, true)
	case tar.TypeFifo:
		if err := unix.Mkfifo(target, 0o600); err != nil {
			return err
		}
		return u.meta(target, hdr, false)
	}
	// Device nodes, and whatever else a tar can hold, are left out.
	return nil
}

func (u *unpacker) link(hdr *tar.Header) error {
	old, err := clean(hdr.Linkname)
	if err != nil {
		return err
	}
	// The target's directories must be real ones too.
	for d := path.Dir(old); d != "/"; d = path.Dir(d) {
		if fi, err := os.Lstat(u.host(d)); err != nil || !fi.IsDir() {
			return nil // gone under a whiteout: nothing to link to
		}
	}
	fi, err := os.Lstat(u.host(old))
	if err != nil || fi.IsDir() {
		return nil
	}
	target := u.host(hdr.Name)
	if _, err := os.Lstat(target); err == nil {
		return nil
	}
	return os.Link(u.host(old), target)
}

// fileMeta sets an open regular file's owner and mode; the owner first,
// since a change of owner clears set-user-ID bits.
func (u *unpacker) fileMeta(f *os.File, hdr *tar.Header) error {
	if err := unix.Fchown(int(f.Fd()), hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(int(f.Fd()), uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// meta sets the owner, mode (not of a symlink) and times of p.
func (u *unpacker) meta(p string, hdr *tar.Header, symlink bool) error {
	if err := unix.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if !symlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return times(p, hdr)
}

func times(p string, hdr *tar.Header) error {
	mt := hdr.ModTime
	if mt.IsZero() {
		return nil
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = mt
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
