//go:build linux

package linux_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
)

var (
	staticOnce sync.Once
	staticPath string
	staticErr  error
)

// staticAgent builds the test agent without cgo, so it runs in a root
// that holds nothing else.
func staticAgent(t testing.TB) string {
	t.Helper()
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-static-agent-")
		if err != nil {
			staticErr = err
			return
		}
		staticPath = filepath.Join(dir, "agent")
		cmd := exec.Command("go", "build", "-o", staticPath, "./testdata/agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = errors.New("build static test agent: " + err.Error() + "\n" + string(out))
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	return staticPath
}

// imageRootfs lays out an unpacked image as the image store would: the
// agent, an /etc/passwd, a file owned by the image's user.
func imageRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "home/app", "srv"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	agent, err := os.ReadFile(staticAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"bin/agent":  string(agent),
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/marker": "from the image",
	}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, "home/app"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestImageRoot: an image sandbox sees the image's root, not the host's,
// runs as the image's user with the usual confinement, and writes to a
// layer of its own that neither the image nor another sandbox sees.
func TestImageRoot(t *testing.T) {
	b := newBackend(t)
	rootfs := imageRootfs(t)
	imageSpec := func(s *sandbox.Spec) {
		s.Command = []string{"/bin/agent"}
		s.Dir = "/srv/work"
		s.Env = []string{"PATH=/bin", "FROM_IMAGE=yes"}
		s.Image = &sandbox.Image{Rootfs: rootfs, UID: 1000, GID: 1000, Groups: []uint32{1500}, Home: "/home/app"}
		s.Limits.DiskBytes = 8 << 20
	}
	s := spec(t, imageSpec)
	h := start(t, b, s)
	other := start(t, b, spec(t, imageSpec))

	checks := []struct {
		req  tryReq
		want func(r tryResult) bool
		what string
	}{
		{tryReq{Op: "read", Arg: "/etc/marker"}, func(r tryResult) bool { return r.Out == "from the image" }, "the image's files"},
		{tryReq{Op: "ls", Arg: "/"}, func(r tryResult) bool {
			return r.OK && !strings.Contains(r.Out, "usr") && strings.Contains(r.Out, "srv")
		}, "the image's root, not the host's"},
		{tryReq{Op: "read", Arg: "/proc/self/status"}, func(r tryResult) bool {
			return strings.Contains(r.Out, "Uid:\t1000\t1000\t1000\t1000") && strings.Contains(r.Out, "Gid:\t1000\t1000\t1000\t1000") &&
				strings.Contains(r.Out, "Groups:\t1500") && strings.Contains(r.Out, "Seccomp:\t2") &&
				strings.Contains(r.Out, "NoNewPrivs:\t1") && strings.Contains(r.Out, "CapEff:\t0000000000000000")
		}, "the image's user, groups, seccomp, no capabilities"},
		{tryReq{Op: "read", Arg: "/proc/1/status"}, func(r tryResult) bool { return strings.Contains(r.Out, "Uid:\t1000") }, "init runs as the user too"},
		{tryReq{Op: "write", Arg: "/home/app/notes"}, func(r tryResult) bool { return r.OK }, "the user's home is writable"},
		{tryReq{Op: "write", Arg: "/etc/marker"}, func(r tryResult) bool { return !r.OK }, "root's files are not the user's to write"},
		{tryReq{Op: "write", Arg: "/tmp/x"}, func(r tryResult) bool { return r.OK }, "/tmp is writable"},
		{tryReq{Op: "env", Arg: "HOME"}, func(r tryResult) bool { return r.Out == "/home/app" }, "HOME is the user's"},
		{tryReq{Op: "env", Arg: "FROM_IMAGE"}, func(r tryResult) bool { return r.Out == "yes" }, "env passed"},
		{tryReq{Op: "ls", Arg: "/srv"}, func(r tryResult) bool { return r.Out == "work" }, "a missing working directory is made"},
		{tryReq{Op: "ls", Arg: "/sys/class/net"}, func(r tryResult) bool { return r.Out == "lo" }, "own network namespace"},
		{tryReq{Op: "ls", Arg: "/dev"}, func(r tryResult) bool { return strings.Contains(r.Out, "null") && strings.Contains(r.Out, "pts") }, "berth's /dev"},
	}
	for _, c := range checks {
		if r := mustTry(t, h, c.req); !c.want(r) {
			t.Errorf("%s: got %+v", c.what, r)
		}
	}
	if r := mustTry(t, other, tryReq{Op: "read", Arg: "/home/app/notes"}); r.OK {
		t.Errorf("another sandbox of the image sees the first one's write: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "home/app/notes")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a sandbox's write reached the image's root: %v", err)
	}
	// The writable layer is capped like /tmp.
	if r := mustTry(t, h, tryReq{Op: "filldisk", Arg: "/home/app/fill", N: 64}); r.OK || !strings.Contains(r.Err, "no space") {
		t.Errorf("filling the writable layer: %+v; want no space left", r)
	}
}

// TestImageEscape: the escape attempts that matter for an image root, from
// image sandboxes running as the image's user and as its root.
func TestImageEscape(t *testing.T) {
	b := newBackend(t)
	rootfs := imageRootfs(t)
	// A set-user-ID root program in the image that says who it runs as.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Print(os.Geteuid()) }\n"), 0o644)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module euid\n\ngo 1.26\n"), 0o644)
	euid := filepath.Join(rootfs, "bin/euid")
	build := exec.Command("go", "build", "-o", euid, ".")
	build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build euid: %v\n%s", err, out)
	}
	if err := os.Chmod(euid, 0o4755); err != nil {
		t.Fatal(err)
	}
	as := func(uid uint32) func(*sandbox.Spec) {
		return func(s *sandbox.Spec) {
			s.Command = []string{"/bin/agent"}
			s.Env = []string{"PATH=/bin"}
			s.Image = &sandbox.Image{Rootfs: rootfs, UID: uid, GID: uid, Home: "/home/app"}
			s.Limits = sandbox.Limits{MemoryBytes: 128 << 20, Pids: 64, DiskBytes: 8 << 20}
		}
	}
	victim := start(t, b, spec(t, as(1000)))
	user := start(t, b, spec(t, as(1000)))
	root := start(t, b, spec(t, as(0)))
	mustTry(t, victim, tryReq{Op: "write", Arg: "/home/app/secret"})
	victimPid := hostPidInCgroup(linux.CgroupDirs(victim)[0])
	if victimPid == 0 {
		t.Fatal("cannot find the victim agent's host pid")
	}
	hostSecret := filepath.Join(os.TempDir(), "berth-image-escape-"+randHex(6))
	if err := os.WriteFile(hostSecret, []byte("host-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hostSecret)

	led := &escapeLedger{t: t}
	defer func() {
		testenv.Report(t, "image escape suite", fmt.Sprintf("%d attempts, %d contained", led.attempts, led.contained))
	}()
	for _, h := range []sandbox.Handle{user, root} {
		for _, p := range []string{fmt.Sprintf("/proc/%d/root/home/app/secret", victimPid), hostSecret,
			"/proc/1/root" + hostSecret, filepath.Join(rootfs, "etc/marker")} {
			r := mustTry(t, h, tryReq{Op: "read", Arg: p})
			led.attempt("read "+p, !r.OK, r)
		}
	}
	r := mustTry(t, root, tryReq{Op: "write", Arg: "/etc/marker"})
	got, _ := os.ReadFile(filepath.Join(rootfs, "etc/marker"))
	v := mustTry(t, victim, tryReq{Op: "read", Arg: "/etc/marker"})
	led.attempt("the image's root writes into the image", r.OK && string(got) == "from the image" && v.Out == "from the image", string(got))
	for _, c := range []struct {
		what string
		req  tryReq
	}{
		{"mount a filesystem", tryReq{Op: "mount", Arg: "/tmp"}},
		{"remount the root", tryReq{Op: "remount-rw", Arg: "/"}},
		{"chroot", tryReq{Op: "chroot", Arg: "/tmp"}},
		{"unshare a user namespace", tryReq{Op: "unshare-user"}},
		{"load a kernel module", tryReq{Op: "init_module"}},
		{"ptrace the init", tryReq{Op: "ptrace", Arg: "1"}},
	} {
		r := mustTry(t, root, c.req)
		led.attempt("as the image's root: "+c.what, denied(r, "not permitted", "operation not permitted"), r)
	}
	r = mustTry(t, user, tryReq{Op: "exec", Args: []string{"/bin/euid"}})
	led.attempt("gain root through a set-user-ID program in the image", r.Out == "1000", r)
}
