package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Collected is what a collection removed.
type Collected struct {
	Images []string // digests
	Blobs  int
	Bytes  int64 // freed: blobs and unpacked roots
}

// Remove deletes an image's record and root, then every blob no other
// image holds. Whether anything still runs it is the caller's to know.
func (s *Store) Remove(digest string) (Collected, error) {
	if _, err := s.Get(digest); err != nil {
		return Collected{}, err
	}
	s.gc.Lock()
	defer s.gc.Unlock()
	var c Collected
	if err := s.drop(digest, &c); err != nil {
		return c, err
	}
	err := s.sweepBlobs(&c)
	return c, err
}

// Keep removes every image not in keep (by digest) that was pulled before
// before, then every blob no remaining image holds. A zero before removes
// every image not kept.
func (s *Store) Keep(keep map[string]bool, before time.Time) (Collected, error) {
	s.gc.Lock()
	defer s.gc.Unlock()
	imgs, err := s.List()
	if err != nil {
		return Collected{}, err
	}
	var c Collected
	var errs []error
	for _, img := range imgs {
		if keep[img.Digest] || (!before.IsZero() && !img.PulledAt.Before(before)) {
			continue
		}
		if err := s.drop(img.Digest, &c); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.sweepBlobs(&c))
	if len(c.Images) > 0 || c.Blobs > 0 {
		s.log.Info("images collected", "images", len(c.Images), "blobs", c.Blobs, "freed", HumanBytes(c.Bytes))
	}
	return c, errors.Join(errs...)
}

// drop removes one image's record, then its root. Callers hold s.gc.
func (s *Store) drop(digest string, c *Collected) error {
	hex, err := hexOf(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	err = os.Remove(s.path("meta", hex+".json"))
	s.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove image %s: %w", digest, err)
	}
	root := s.path("rootfs", hex)
	c.Bytes += du(root)
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("remove image %s: %w", digest, err)
	}
	c.Images = append(c.Images, digest)
	s.log.Info("image removed", "digest", digest)
	return nil
}

// sweepBlobs removes the blobs no image's record holds. Callers hold s.gc.
func (s *Store) sweepBlobs(c *Collected) error {
	imgs, err := s.List()
	if err != nil {
		return err
	}
	held := map[string]bool{}
	for _, img := range imgs {
		for _, b := range img.Blobs {
			held[b] = true
		}
	}
	entries, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		return fmt.Errorf("sweep blobs: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if held["sha256:"+e.Name()] {
			continue
		}
		p := s.path("blobs", "sha256", e.Name())
		if fi, err := e.Info(); err == nil {
			c.Bytes += fi.Size()
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		c.Blobs++
	}
	return errors.Join(errs...)
}

// du is the disk space a tree takes, hard links counted once.
func du(root string) int64 {
	var n int64
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
			n += st.Blocks * 512
			return nil
		}
		n += fi.Size()
		return nil
	})
	return n
}
