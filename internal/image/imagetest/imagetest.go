// Package imagetest builds OCI images inside tests and serves them from
// go-containerregistry's in-memory registry on loopback, so image tests
// reach nothing outside the machine. Images are made of Entries: files
// written by the test, or copied from the host (a binary with the shared
// libraries ldd names, a directory tree).
package imagetest

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one tar entry of a layer.
type Entry struct {
	// Path is where it goes in the image ("usr/bin/agent").
	Path string
	// Type is a tar type flag; zero is a regular file.
	Type byte
	// Mode defaults to 0644 for files, 0755 for directories.
	Mode     int64
	UID, GID int
	Data     []byte
	// Source is a host file whose content the entry holds (for large
	// files, read when the layer is written), instead of Data.
	Source string
	// Link is a symlink's or hard link's target.
	Link string
}

// File is a regular file holding data.
func File(p, data string, mode int64) Entry {
	return Entry{Path: p, Data: []byte(data), Mode: mode}
}

// Dir is a directory.
func Dir(p string, mode int64) Entry {
	return Entry{Path: p, Type: tar.TypeDir, Mode: mode}
}

// Symlink is a symbolic link.
func Symlink(p, target string) Entry {
	return Entry{Path: p, Type: tar.TypeSymlink, Link: target, Mode: 0o777}
}

// Whiteout deletes p from the layers below.
func Whiteout(p string) Entry {
	return Entry{Path: path.Join(path.Dir(p), ".wh."+path.Base(p))}
}

// Opaque hides what the layers below hold in dir.
func Opaque(dir string) Entry {
	return Entry{Path: path.Join(dir, ".wh..wh..opq")}
}

// Layer builds a gzip-compressed layer of entries, in order.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "layer-*.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := writeEntry(tw, e); err != nil {
			t.Fatalf("layer entry %s: %v", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromFile(f.Name(), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeEntry(tw *tar.Writer, e Entry) error {
	hdr := &tar.Header{Name: e.Path, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
		Linkname: e.Link, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
	if hdr.Typeflag == 0 {
		hdr.Typeflag = tar.TypeReg
	}
	if hdr.Mode == 0 {
		hdr.Mode = 0o644
		if hdr.Typeflag == tar.TypeDir {
			hdr.Mode = 0o755
		}
	}
	var body io.Reader
	if hdr.Typeflag == tar.TypeReg {
		hdr.Size = int64(len(e.Data))
		body = strings.NewReader(string(e.Data))
		if e.Source != "" {
			f, err := os.Open(e.Source)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			hdr.Size, body = fi.Size(), f
		}
	}
	if hdr.Typeflag == tar.TypeChar {
		hdr.Devmajor, hdr.Devminor = 1, 3
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if body != nil {
		_, err := io.Copy(tw, body)
		return err
	}
	return nil
}

// Image is an image for platform ("linux/amd64") with config and layers.
func Image(t testing.TB, platform string, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
}

// Index is a multi-platform index of imgs, each under its config's platform.
func Index(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}}})
	}
	return idx
}

// Registry is go-containerregistry's in-memory registry on loopback.
type Registry struct {
	// Host is its host:port.
	Host string
}

// NewRegistry starts a registry for t; wrap, if given, sits in front of
// it (to ask for credentials, or corrupt what it serves).
func NewRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *Registry {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Registry{Host: strings.TrimPrefix(srv.URL, "http://")}
}

// Ref names repo:tag ("team/agent:v1") in this registry.
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Push pushes img as repoTag and returns its digest.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image, opts ...remote.Option) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// PushIndex pushes idx as repoTag and returns its digest.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// lddRE matches the library paths in ldd's output.
var lddRE = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// HostFiles copies host files into an image at their own paths, with the
// shared libraries (and loader) ldd says each needs. Symlinks are
// followed: the image gets the files' content.
func HostFiles(t testing.TB, paths ...string) []Entry {
	t.Helper()
	seen := map[string]bool{}
	var out []Entry
	add := func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("host file %s: %v", p, err)
		}
		out = append(out, Entry{Path: strings.TrimPrefix(p, "/"), Source: p, Mode: int64(fi.Mode().Perm())})
	}
	for _, p := range paths {
		add(p)
		for _, lib := range Libraries(t, p) {
			add(lib)
		}
	}
	return out
}

// Libraries lists the shared libraries (and loader) ldd says p needs;
// none for a static binary or a script.
func Libraries(t testing.TB, p string) []string {
	t.Helper()
	out, err := exec.Command("ldd", p).Output()
	if err != nil {
		return nil // "not a dynamic executable"
	}
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := lddRE.FindStringSubmatch(sc.Text()); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs
}

// Tree copies the host directory src into the image at dst, skipping
// what skip says (relative to src; nil skips nothing).
func Tree(t testing.TB, src, dst string, skip func(rel string, d fs.DirEntry) bool) []Entry {
	t.Helper()
	var out []Entry
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if skip != nil && rel != "." && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		in := path.Join(strings.TrimPrefix(dst, "/"), filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out = append(out, Entry{Path: in, Type: tar.TypeDir, Mode: int64(fi.Mode().Perm())})
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, Symlink(in, link))
		case d.Type().IsRegular():
			out = append(out, Entry{Path: in, Source: p, Mode: int64(fi.Mode().Perm())})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s into an image: %v", src, err)
	}
	return out
}
