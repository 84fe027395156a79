package codestore

import (
	"archive/zip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSnapshotPinsAndDeduplicates(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	write(t, src, map[string]string{"main.py": "v1", "lib/util.py": "x", "run.sh": "#!/bin/sh"})
	d1, p1, err := s.Snapshot(src)
	if err != nil {
		t.Fatal(err)
	}
	// The same tree elsewhere is the same snapshot.
	twin := t.TempDir()
	write(t, twin, map[string]string{"main.py": "v1", "lib/util.py": "x", "run.sh": "#!/bin/sh"})
	if d, _, err := s.Snapshot(twin); err != nil || d != d1 {
		t.Fatalf("identical tree: digest %s (%v), want %s", d, err, d1)
	}
	// The directory changes; the snapshot does not.
	write(t, src, map[string]string{"main.py": "v2"})
	d2, p2, err := s.Snapshot(src)
	if err != nil || d2 == d1 || p2 == p1 {
		t.Fatalf("changed tree: %s (%v), was %s", d2, err, d1)
	}
	if b, _ := os.ReadFile(filepath.Join(p1, "main.py")); string(b) != "v1" {
		t.Fatalf("snapshot 1 holds %q", b)
	}
	fi, err := os.Stat(filepath.Join(p1, "run.sh"))
	if err != nil || fi.Mode().Perm()&0o222 != 0 || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("run.sh in the snapshot: %v %v, want read-only and executable", fi.Mode(), err)
	}
	// An execute bit alone changes the digest.
	os.Chmod(filepath.Join(twin, "run.sh"), 0o644)
	if d, _, _ := s.Snapshot(twin); d == d1 {
		t.Fatal("a lost execute bit kept the digest")
	}
	// Keep removes what nothing refers to.
	if n, err := s.Keep(map[string]bool{d2: true}); err != nil || n != 2 {
		t.Fatalf("keep: removed %d (%v), want 2", n, err)
	}
	if _, err := os.Stat(p1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("snapshot 1 still there: %v", err)
	}
	if _, err := os.Stat(p2); err != nil {
		t.Fatalf("snapshot 2 gone: %v", err)
	}
}

func TestSnapshotRefusesLinksOut(t *testing.T) {
	s, _ := Open(t.TempDir())
	src := t.TempDir()
	write(t, src, map[string]string{"main.py": "x"})
	os.Symlink("main.py", filepath.Join(src, "inside"))
	if _, _, err := s.Snapshot(src); err != nil {
		t.Fatalf("a link inside the tree: %v", err)
	}
	os.Symlink("/etc/passwd", filepath.Join(src, "outside"))
	if _, _, err := s.Snapshot(src); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a link out of the tree: %v", err)
	}
}

func makeZip(t *testing.T, entries map[string]string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "code.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, body := range entries {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	zw.Close()
	f.Close()
	return p
}

func TestUnzip(t *testing.T) {
	s, _ := Open(t.TempDir())
	_, dir, err := s.Unzip(makeZip(t, map[string]string{"main.py": "print(1)", "pkg/a.py": "a"}, 0o644))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pkg", "a.py")); err != nil || string(b) != "a" {
		t.Fatalf("unpacked pkg/a.py: %q %v", b, err)
	}
	_, dir, err = s.Unzip(makeZip(t, map[string]string{"agent": "#!/bin/sh"}, 0o755))
	if fi, err2 := os.Stat(filepath.Join(dir, "agent")); err != nil || err2 != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("an executable entry lost its bit: %v %v", err, err2)
	}
	for name, entries := range map[string]map[string]string{
		"a .. entry":       {"../escape.py": "x"},
		"a nested ..":      {"a/../../escape.py": "x"},
		"an absolute path": {"/etc/cron.d/x": "x"},
		"a backslash path": {`..\escape.py`: "x"},
	} {
		if _, _, err := s.Unzip(makeZip(t, entries, 0o644)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	link := makeZip(t, map[string]string{"l": "/etc/passwd"}, fs.ModeSymlink|0o777)
	if _, _, err := s.Unzip(link); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a symlink entry: %v", err)
	}
	notZip := filepath.Join(t.TempDir(), "x.zip")
	os.WriteFile(notZip, []byte("not a zip"), 0o644)
	if _, _, err := s.Unzip(notZip); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("not a zip: %v", err)
	}
	// A zip bomb: small archive, unpacked size past the limit.
	bomb := filepath.Join(t.TempDir(), "bomb.zip")
	f, _ := os.Create(bomb)
	zw := zip.NewWriter(f)
	w, _ := zw.Create("big")
	chunk := make([]byte, 1<<20)
	for range MaxUnpackedBytes>>20 + 1 {
		w.Write(chunk)
	}
	zw.Close()
	f.Close()
	if _, _, err := s.Unzip(bomb); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "unpacks to more") {
		t.Errorf("a zip bomb: %v", err)
	}
	// Nothing half-written is left behind.
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("scratch left in the store: %s", e.Name())
		}
	}
}
