package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testenv"
	"golang.org/x/sys/unix"
)

func openStore(t *testing.T, capBytes int64) *Store {
	t.Helper()
	testenv.Require(t, testenv.Root, Available())
	s, err := Open(t.TempDir(), capBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Recover() })
	return s
}

func TestStorageOutlivesItsSandbox(t *testing.T) {
	s := openStore(t, 64<<20)
	k := Key{RuntimeID: "rt-1", Endpoint: "DEFAULT", SessionID: "s1"}
	v, err := s.Attach(k, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(v.Dir); len(ents) != 1 || ents[0].Name() != "lost+found" {
		t.Fatalf("a new session's storage holds %v, want an empty filesystem", ents)
	}
	os.WriteFile(filepath.Join(v.Dir, "notes.txt"), []byte("kept"), 0o644)
	if _, err := s.Attach(k, 1); err == nil {
		t.Fatal("one session's storage attached twice")
	}
	if err := v.Detach(); err != nil {
		t.Fatal(err)
	}
	// The same session, the same version: the file is there.
	v, err = s.Attach(k, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Dir, "notes.txt")); err != nil || string(b) != "kept" {
		t.Fatalf("after a detach: %q %v", b, err)
	}
	// Another session sees nothing of it.
	other, err := s.Attach(Key{RuntimeID: "rt-1", Endpoint: "DEFAULT", SessionID: "s2"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other.Dir, "notes.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("another session sees the file: %v", err)
	}
	other.Detach()
	v.Detach()
	// A new version gets a fresh filesystem.
	v, err = s.Attach(k, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v.Dir, "notes.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("version 2 sees version 1's file: %v", err)
	}
	v.Detach()
}

func TestStorageCapIsENOSPC(t *testing.T) {
	s := openStore(t, 32<<20)
	v, err := s.Attach(Key{RuntimeID: "rt", Endpoint: "DEFAULT", SessionID: "big"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Detach()
	f, err := os.Create(filepath.Join(v.Dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var werr error
	written := 0
	for range 64 {
		if _, werr = f.Write(chunk); werr != nil {
			break
		}
		written++
	}
	if werr == nil {
		werr = f.Sync()
	}
	if !errors.Is(werr, unix.ENOSPC) {
		t.Fatalf("wrote %d MiB into a 32 MiB storage; last error %v, want ENOSPC", written, werr)
	}
}

func TestStorageExpiresAndDeletes(t *testing.T) {
	s := openStore(t, 16<<20)
	for _, k := range []Key{{"rt-a", "DEFAULT", "s1"}, {"rt-a", "prod", "s2"}, {"rt-b", "DEFAULT", "s3"}} {
		v, err := s.Attach(k, 1)
		if err != nil {
			t.Fatal(err)
		}
		v.Detach()
	}
	count := func() int {
		m, _ := filepath.Glob(filepath.Join(s.dir, "*", "*", "meta.json"))
		return len(m)
	}
	if err := s.Delete("rt-a", "prod"); err != nil || count() != 2 {
		t.Fatalf("after deleting an endpoint's storage: %d left (%v)", count(), err)
	}
	if err := s.Delete("rt-b", ""); err != nil || count() != 1 {
		t.Fatalf("after deleting a runtime's storage: %d left (%v)", count(), err)
	}
	if err := s.Expire(time.Now().Add(-time.Hour)); err != nil || count() != 1 {
		t.Fatalf("storage used just now expired: %d left (%v)", count(), err)
	}
	if err := s.Expire(time.Now().Add(time.Hour)); err != nil || count() != 0 {
		t.Fatalf("stale storage kept: %d left (%v)", count(), err)
	}
}

func TestStorageRecoverUnmountsLeftovers(t *testing.T) {
	s := openStore(t, 16<<20)
	v, err := s.Attach(Key{"rt", "DEFAULT", "s"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A new berth process over the same directory, as after a SIGKILL.
	s2, err := Open(s.dir, 16<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Recover(); err != nil {
		t.Fatal(err)
	}
	if len(mountsUnder(s.dir)) != 0 {
		t.Fatalf("mounts left: %v", mountsUnder(s.dir))
	}
	v2, err := s2.Attach(Key{"rt", "DEFAULT", "s"}, 1)
	if err != nil {
		t.Fatalf("attach after recovery: %v", err)
	}
	v2.Detach()
	_ = v
}
