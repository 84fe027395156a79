package image_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/imagetest"
	"github.com/berth-dev/berth/internal/testenv"
)

func requireRoot(t *testing.T) {
	t.Helper()
	var err error
	if os.Geteuid() != 0 {
		err = errors.New("unpacking keeps file ownership, which needs root")
	}
	testenv.Require(t, testenv.Root, err)
}

// open is a store over a fresh directory; edit adjusts its options.
func open(t *testing.T, edit ...func(*image.Options)) (*image.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	opts := image.Options{Dir: dir, DockerConfig: t.TempDir(), Platform: "linux/amd64",
		Emulates: func(p string) error { return fmt.Errorf("no emulator for %s in this test", p) },
		Logger:   slog.New(slog.DiscardHandler)}
	for _, e := range edit {
		e(&opts)
	}
	s, err := image.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// leftovers lists what a store holds besides empty directories.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		if err == nil && d.IsDir() && filepath.Dir(p) == filepath.Join(dir, "rootfs") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

// TestPullMetadata: what the image's config says comes through, the
// layers flatten as overlay would (a whiteout deletes a lower file, an
// opaque directory hides a lower one's entries), ownership and modes are
// kept, and device nodes are not made.
func TestPullMetadata(t *testing.T) {
	requireRoot(t)
	reg := imagetest.NewRegistry(t, nil)
	base := imagetest.Layer(t,
		imagetest.Dir("etc", 0o755),
		imagetest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n", 0o644),
		imagetest.File("etc/group", "root:x:0:\napp:x:1000:\ntools:x:1500:app,other\n", 0o644),
		imagetest.Dir("app", 0o755),
		imagetest.File("app/doomed.txt", "deleted above", 0o644),
		imagetest.File("app/kept.txt", "kept", 0o640),
		imagetest.Dir("cache", 0o755),
		imagetest.File("cache/old", "hidden by an opaque dir", 0o644),
		imagetest.Entry{Path: "dev/null", Type: 0x33 /* tar.TypeChar */},
		imagetest.Entry{Path: "app/owned", Data: []byte("x"), Mode: 0o4750, UID: 1000, GID: 1500},
	)
	top := imagetest.Layer(t,
		imagetest.Whiteout("app/doomed.txt"),
		imagetest.Opaque("cache"),
		imagetest.File("cache/new", "fresh", 0o600),
		imagetest.Symlink("app/link", "kept.txt"),
		imagetest.Entry{Path: "app/hard", Type: '1', Link: "app/kept.txt"},
		imagetest.Dir("home/app", 0o700),
	)
	cfg := v1.Config{
		Entrypoint:   []string{"/app/agent", "--serve"},
		Cmd:          []string{"--port", "8080"},
		Env:          []string{"PATH=/usr/bin:/bin", "GREETING=hello world"},
		WorkingDir:   "/app",
		User:         "app",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9000/tcp": {}},
	}
	digest := reg.Push(t, "team/agent:v1", imagetest.Image(t, "linux/amd64", cfg, base, top))

	s, dir := open(t)
	var phases []image.Phase
	img, err := s.Pull(context.Background(), reg.Ref("team/agent:v1"), func(p image.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != digest || img.Platform != "linux/amd64" || img.Emulated {
		t.Errorf("pulled %s for %s (emulated %v); want %s for linux/amd64 natively", img.Digest, img.Platform, img.Emulated, digest)
	}
	if want := []image.Phase{image.PhaseResolving, image.PhaseDownloading, image.PhaseUnpacking, image.PhaseDone}; !slices.Equal(phases, want) {
		t.Errorf("progress went through %v, want %v", phases, want)
	}
	c := img.Config
	if got := c.Argv(); !slices.Equal(got, []string{"/app/agent", "--serve", "--port", "8080"}) {
		t.Errorf("Argv = %q: Entrypoint then Cmd", got)
	}
	if c.WorkingDir != "/app" || !slices.Contains(c.Env, "GREETING=hello world") {
		t.Errorf("WorkingDir %q, Env %q", c.WorkingDir, c.Env)
	}
	if c.UID != 1000 || c.GID != 1000 || !slices.Equal(c.Groups, []uint32{1500}) || c.Home != "/home/app" {
		t.Errorf("user app resolved to uid %d gid %d groups %v home %q; want 1000 1000 [1500] /home/app", c.UID, c.GID, c.Groups, c.Home)
	}
	if !slices.Equal(c.ExposedPorts, []string{"8080/tcp", "9000/tcp"}) {
		t.Errorf("ExposedPorts = %q", c.ExposedPorts)
	}

	root, _ := s.Rootfs(digest)
	read := func(p string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, p))
		return string(b), err
	}
	if _, err := os.Lstat(filepath.Join(root, "app/doomed.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a whiteout's file is still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "cache/old")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an opaque directory shows a lower layer's entry: %v", err)
	}
	if got, err := read("cache/new"); got != "fresh" {
		t.Errorf("cache/new = %q, %v", got, err)
	}
	if got, err := read("app/link"); got != "kept" {
		t.Errorf("symlink reads %q, %v", got, err)
	}
	var kept, hard syscall.Stat_t
	syscall.Stat(filepath.Join(root, "app/kept.txt"), &kept)
	syscall.Stat(filepath.Join(root, "app/hard"), &hard)
	if kept.Ino == 0 || kept.Ino != hard.Ino || kept.Mode&0o7777 != 0o640 {
		t.Errorf("kept.txt inode %d mode %o; hard link inode %d: want one file, mode 0640", kept.Ino, kept.Mode&0o7777, hard.Ino)
	}
	var owned syscall.Stat_t
	syscall.Stat(filepath.Join(root, "app/owned"), &owned)
	if owned.Uid != 1000 || owned.Gid != 1500 || owned.Mode&0o7777 != 0o4750 {
		t.Errorf("app/owned is %d:%d mode %o, want 1000:1500 mode 4750", owned.Uid, owned.Gid, owned.Mode&0o7777)
	}
	var home syscall.Stat_t
	syscall.Stat(filepath.Join(root, "home/app"), &home)
	if home.Mode&0o7777 != 0o700 {
		t.Errorf("home/app mode %o, want 700", home.Mode&0o7777)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a device node was made: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the store is %v (%v); only root may reach the images' set-user-ID files", fi.Mode(), err)
	}
	got, err := s.Get(digest)
	if err != nil || got.Refs[0] != reg.Ref("team/agent:v1") || got.Size != img.Size || img.Size == 0 {
		t.Errorf("Get = %+v, %v", got, err)
	}

	// A pinned reference to an image already here needs no registry.
	pinned, err := image.Pinned(reg.Ref("team/agent:v1"), digest)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := image.Open(image.Options{Dir: dir, Transport: failingTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s2.Pull(context.Background(), pinned, nil); err != nil || again.Digest != digest {
		t.Errorf("pull of a pinned image already here: %v, %v", again.Digest, err)
	}
}

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("this test reaches no registry")
}

// TestPullIndex: from a multi-platform index berth takes the host's
// platform; an image with none runs under emulation where the host has
// it, and is refused with a ValidationException where it has not.
func TestPullIndex(t *testing.T) {
	requireRoot(t)
	reg := imagetest.NewRegistry(t, nil)
	variant := func(platform string) v1.Image {
		return imagetest.Image(t, platform, v1.Config{Cmd: []string{"/agent"}},
			imagetest.Layer(t, imagetest.File("platform", platform, 0o644)))
	}
	multi := reg.PushIndex(t, "team/multi:v1", imagetest.Index(t, variant("linux/arm64"), variant("linux/amd64")))
	armOnly := reg.PushIndex(t, "team/arm:v1", imagetest.Index(t, variant("linux/arm64")))
	reg.Push(t, "team/armimage:v1", variant("linux/arm64"))

	s, dir := open(t)
	img, err := s.Pull(context.Background(), reg.Ref("team/multi:v1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := s.Rootfs(multi)
	if b, _ := os.ReadFile(filepath.Join(root, "platform")); img.Digest != multi || img.Platform != "linux/amd64" || string(b) != "linux/amd64" || img.Emulated {
		t.Errorf("pulled %s platform %s (emulated %v) holding %q; want the index's amd64 image", img.Digest, img.Platform, img.Emulated, b)
	}

	for _, ref := range []string{"team/arm:v1", "team/armimage:v1"} {
		before := leftovers(t, dir)
		_, err = s.Pull(context.Background(), reg.Ref(ref), nil)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "linux/arm64") || !strings.Contains(err.Error(), "emulat") {
			t.Errorf("%s without emulation: %v; want an invalid-argument error naming linux/arm64 and emulation", ref, err)
		}
		if after := leftovers(t, dir); !slices.Equal(before, after) {
			t.Errorf("%s: a refused pull left %v", ref, slices.DeleteFunc(after, func(p string) bool { return slices.Contains(before, p) }))
		}
	}

	emu, _ := open(t, func(o *image.Options) { o.Emulates = func(p string) error { return nil } })
	img, err = emu.Pull(context.Background(), reg.Ref("team/arm:v1"), nil)
	if err != nil || img.Digest != armOnly || img.Platform != "linux/arm64" || !img.Emulated {
		t.Errorf("arm64-only index with emulation: %+v, %v; want it pulled, marked emulated", img, err)
	}
}

// TestBadImages: each bad image fails with a clear reason and leaves
// nothing in the store.
func TestBadImages(t *testing.T) {
	requireRoot(t)
	var corrupt atomic.Value // blob path → how to corrupt it
	corrupt.Store(map[string]string{})
	reg := imagetest.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); strings.Contains(r.URL.Path, "/private/") && (!ok || u != "berth" || p != "right") {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
				return
			}
			how := corrupt.Load().(map[string]string)[r.URL.Path]
			if how == "" || r.Method != http.MethodGet {
				h.ServeHTTP(w, r)
				return
			}
			rec := &recorder{header: http.Header{}}
			h.ServeHTTP(rec, r)
			body := rec.body
			switch how {
			case "truncate":
				body = body[:len(body)/2]
			case "flip":
				body = append([]byte(nil), body...)
				body[len(body)/2] ^= 0xff
			}
			w.Header().Set("Content-Type", rec.header.Get("Content-Type"))
			w.Header().Set("Content-Length", rec.header.Get("Content-Length"))
			w.WriteHeader(rec.code)
			w.Write(body)
		})
	})
	agent := func(extra ...imagetest.Entry) v1.Image {
		return imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/agent"}},
			imagetest.Layer(t, append([]imagetest.Entry{imagetest.File("agent", strings.Repeat("agent bytes ", 4096), 0o755)}, extra...)...))
	}
	blobPath := func(img v1.Image, repo string) string {
		ls, _ := img.Layers()
		d, _ := ls[0].Digest()
		return "/v2/" + repo + "/blobs/" + d.String()
	}
	reg.Push(t, "team/ok:v1", agent())
	reg.Push(t, "private/agent:v1", agent(), remote.WithAuth(&authn.Basic{Username: "berth", Password: "right"}))
	traversal := imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/agent"}},
		imagetest.Layer(t, imagetest.File("../../escaped", "out of the root", 0o644)))
	reg.Push(t, "team/traversal:v1", traversal)
	truncated, mismatched := agent(imagetest.File("t", "1", 0o644)), agent(imagetest.File("m", "2", 0o644))
	reg.Push(t, "team/truncated:v1", truncated)
	reg.Push(t, "team/mismatch:v1", mismatched)
	corrupt.Store(map[string]string{
		blobPath(truncated, "team/truncated"): "truncate",
		blobPath(mismatched, "team/mismatch"): "flip",
	})
	big := imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/agent"}},
		imagetest.Layer(t, imagetest.Entry{Path: "blob", Data: randomBytes(3 << 20)}))
	reg.Push(t, "team/big:v1", big)
	bomb := imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/agent"}},
		imagetest.Layer(t, imagetest.Entry{Path: "zeros", Data: make([]byte, 20<<20)}))
	reg.Push(t, "team/bomb:v1", bomb)
	noUser := imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/agent"}, User: "ghost"},
		imagetest.Layer(t, imagetest.File("agent", "x", 0o755)))
	reg.Push(t, "team/nouser:v1", noUser)

	docker := t.TempDir()
	os.WriteFile(filepath.Join(docker, "config.json"), fmt.Appendf(nil,
		`{"auths":{%q:{"auth":%q}}}`, reg.Host, "YmVydGg6d3Jvbmc=" /* berth:wrong */), 0o600)
	for _, tc := range []struct {
		ref   string
		class error
		says  string
	}{
		{"team/nosuch:v1", errdefs.ErrNotFound, "no image"},
		{"team/ok:v2", errdefs.ErrNotFound, "no image"},
		{"private/agent:v1", errdefs.ErrPermissionDenied, "refused the credentials"},
		{"team/traversal:v1", errdefs.ErrInvalidArgument, "unsafe tar path"},
		{"team/truncated:v1", nil, "unexpected EOF"},
		{"team/mismatch:v1", nil, "error verifying sha256"},
		{"team/big:v1", errdefs.ErrInvalidArgument, "over this berth's max_image_bytes"},
		{"team/bomb:v1", errdefs.ErrInvalidArgument, "unpacks to more than"},
		{"team/nouser:v1", errdefs.ErrInvalidArgument, `user "ghost" is not in the image's /etc/passwd`},
	} {
		t.Run(strings.NewReplacer("/", "_", ":", "_").Replace(tc.ref), func(t *testing.T) {
			s, dir := open(t, func(o *image.Options) { o.DockerConfig, o.MaxBytes = docker, 2<<20 })
			_, err := s.Pull(context.Background(), reg.Ref(tc.ref), nil)
			if err == nil || (tc.class != nil && !errors.Is(err, tc.class)) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("pull %s: %v; want an error of class %v saying %q", tc.ref, err, tc.class, tc.says)
			}
			if left := leftovers(t, dir); len(left) > 0 {
				t.Errorf("pull %s left %v", tc.ref, left)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(dir)), "escaped")); err == nil {
				t.Errorf("a layer wrote outside the image's root")
			}
		})
	}
}

type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	f, _ := os.Open("/dev/urandom")
	defer f.Close()
	f.Read(b)
	return b
}

// TestCredentials: credentials come from Docker's config.json, directly
// or through a credential helper on PATH.
func TestCredentials(t *testing.T) {
	requireRoot(t)
	var gets atomic.Int64
	reg := imagetest.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "berth" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			gets.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	img := imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/agent"}}, imagetest.Layer(t, imagetest.File("agent", "x", 0o755)))
	// Pushing needs the credentials too.
	reg.Push(t, "team/agent:v1", img, remote.WithAuth(&authn.Basic{Username: "berth", Password: "s3cret"}))

	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, "config.json"), fmt.Appendf(nil, `{"auths":{%q:{"auth":"YmVydGg6czNjcmV0"}}}`, reg.Host), 0o600)
	s, _ := open(t, func(o *image.Options) { o.DockerConfig = plain })
	if _, err := s.Pull(context.Background(), reg.Ref("team/agent:v1"), nil); err != nil {
		t.Fatalf("pull with config.json auth: %v", err)
	}

	bin := t.TempDir()
	helper := "#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"berth\",\"Secret\":\"s3cret\"}'\n"
	os.WriteFile(filepath.Join(bin, "docker-credential-berthtest"), []byte(helper), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	helped := t.TempDir()
	os.WriteFile(filepath.Join(helped, "config.json"), fmt.Appendf(nil, `{"credHelpers":{%q:"berthtest"}}`, reg.Host), 0o600)
	s, _ = open(t, func(o *image.Options) { o.DockerConfig = helped })
	if _, err := s.Pull(context.Background(), reg.Ref("team/agent:v1"), nil); err != nil {
		t.Fatalf("pull with a credential helper: %v", err)
	}
}

// TestPlainHTTP: a registry that is neither loopback nor listed in
// insecure_registries is never reached over plain HTTP.
func TestPlainHTTP(t *testing.T) {
	requireRoot(t)
	ip := ""
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			ip = n.IP.String()
			break
		}
	}
	if ip == "" {
		t.Skip("no non-loopback address to serve a registry on")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		registry.New(registry.Logger(log.New(io.Discard, "", 0))).ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host := ln.Addr().String()

	s, _ := open(t)
	_, err = s.Pull(context.Background(), host+"/team/agent:v1", nil)
	if err == nil || hits.Load() != 0 {
		t.Fatalf("pull over plain HTTP from %s: %v, %d requests reached it; want refused before any", host, err, hits.Load())
	}
	s, _ = open(t, func(o *image.Options) { o.Insecure = []string{host} })
	_, err = s.Pull(context.Background(), host+"/team/agent:v1", nil)
	if !errors.Is(err, errdefs.ErrNotFound) || hits.Load() == 0 {
		t.Errorf("listed in insecure_registries: %v after %d requests; want the registry reached (and no such image)", err, hits.Load())
	}
}

// TestSharedPullsAndGC: concurrent pulls of one image download it once;
// a collection removes what is not kept and the blobs only it held, and
// keeps a layer another image shares.
func TestSharedPullsAndGC(t *testing.T) {
	requireRoot(t)
	var blobGets sync.Map
	reg := imagetest.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				n, _ := blobGets.LoadOrStore(r.URL.Path, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	shared := imagetest.Layer(t, imagetest.File("shared", strings.Repeat("s", 1<<20), 0o644))
	a := reg.Push(t, "team/a:v1", imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/a"}}, shared, imagetest.Layer(t, imagetest.File("a", "a", 0o755))))
	b := reg.Push(t, "team/b:v1", imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/b"}}, shared, imagetest.Layer(t, imagetest.File("b", "b", 0o755))))

	s, dir := open(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := s.Pull(context.Background(), reg.Ref("team/a:v1"), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	blobGets.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("%s fetched %d times by 4 concurrent pulls; want once", k, n)
		}
		return true
	})
	if _, err := s.Pull(context.Background(), reg.Ref("team/b:v1"), nil); err != nil {
		t.Fatal(err)
	}
	sharedDigest, _ := shared.Digest()
	// Pulled just now: a collection of what is older than an hour spares it.
	if c, err := s.Keep(map[string]bool{a: true}, time.Now().Add(-time.Hour)); err != nil || len(c.Images) != 0 {
		t.Fatalf("Keep with a grace period removed %v (%v)", c.Images, err)
	}
	c, err := s.Keep(map[string]bool{a: true}, time.Time{})
	if err != nil || !slices.Equal(c.Images, []string{b}) || c.Bytes == 0 {
		t.Fatalf("Keep(a) removed %v, %d bytes (%v); want b", c.Images, c.Bytes, err)
	}
	if _, err := s.Get(b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("b after collection: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs/sha256", sharedDigest.Hex)); err != nil {
		t.Errorf("the layer a shares with b went: %v", err)
	}
	if _, err := s.Remove(a); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, dir); len(left) > 0 {
		t.Errorf("after removing every image the store holds %v", left)
	}
}

// TestEmulatedPull: with the host's real binfmt_misc handlers, an image
// only for another architecture is pulled and marked emulated.
func TestEmulatedPull(t *testing.T) {
	requireRoot(t)
	foreign := "linux/arm64"
	if image.HostPlatform() == foreign {
		foreign = "linux/amd64"
	}
	missing := image.Emulation(foreign)
	if _, err := exec.LookPath("qemu-aarch64-static"); err != nil && missing != nil {
		missing = fmt.Errorf("%w (and qemu-user-static is not installed)", missing)
	}
	testenv.Require(t, testenv.Qemu, missing)
	reg := imagetest.NewRegistry(t, nil)
	d := reg.Push(t, "team/foreign:v1", imagetest.Image(t, foreign, v1.Config{Cmd: []string{"/agent"}},
		imagetest.Layer(t, imagetest.File("agent", "x", 0o755))))
	s, err := image.Open(image.Options{Dir: t.TempDir(), DockerConfig: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Pull(context.Background(), reg.Ref("team/foreign:v1"), nil)
	if err != nil || img.Digest != d || img.Platform != foreign || !img.Emulated {
		t.Fatalf("pull of a %s image on %s: %+v, %v; want it pulled and marked emulated", foreign, image.HostPlatform(), img, err)
	}
}
