//go:build linux

package linux_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
)

func TestStartPingStop(t *testing.T) {
	b := newBackend(t)
	s := spec(t, func(s *sandbox.Spec) {
		s.Limits = sandbox.Limits{MemoryBytes: 256 << 20, CPUMillis: 500, Pids: 64, DiskBytes: 16 << 20}
	})
	h, err := b.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	waitPing(t, h)
	if h.Addr() != "127.0.0.1:8080" {
		t.Errorf("addr = %q, want the contract port inside the sandbox", h.Addr())
	}
	st, err := h.(sandbox.StatsReporter).Stats()
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if st.MemoryBytes <= 0 || st.Pids < 2 || st.CPUUsage <= 0 {
		t.Errorf("stats = %+v, want memory, cpu and at least init+agent", st)
	}
	if err := h.Stop(context.Background(), 2*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-h.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := h.Stop(context.Background(), time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
	// SIGTERM forwarded by init: Go's default action kills the agent by signal.
	if ex := h.Exit(); ex.Signal != "SIGTERM" || ex.OOMKilled {
		t.Errorf("exit = %+v, want killed by forwarded SIGTERM", ex)
	}
	assertGone(t, b)
}

// assertGone checks that no directory, cgroup or veth is left except those
// of live sandboxes and of inits the pool holds.
func assertGone(t *testing.T, b *linux.Backend) {
	t.Helper()
	if left := linux.Leftovers(b); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestInsideView(t *testing.T) {
	b := newBackend(t)
	s := spec(t, func(s *sandbox.Spec) { s.Env = []string{"FOO=bar", "PORT=1"} })
	h := start(t, b, s)

	checks := []struct {
		req  tryReq
		want func(r tryResult) bool
		what string
	}{
		{tryReq{Op: "read", Arg: "/proc/1/cmdline"}, func(r tryResult) bool { return strings.Contains(r.Out, "__berth_sandbox_init") }, "pid 1 is berth's init"},
		{tryReq{Op: "hostname"}, func(r tryResult) bool { return r.Out == s.Name }, "hostname is the sandbox name"},
		{tryReq{Op: "read", Arg: "/proc/self/status"}, func(r tryResult) bool {
			return strings.Contains(r.Out, "Seccomp:\t2") && strings.Contains(r.Out, "NoNewPrivs:\t1") &&
				strings.Contains(r.Out, "CapEff:\t0000000000000000") && strings.Contains(r.Out, "CapBnd:\t0000000000000000")
		}, "seccomp filter, no_new_privs, no capabilities"},
		{tryReq{Op: "write", Arg: "/usr/berth-test"}, func(r tryResult) bool { return !r.OK && strings.Contains(r.Err, "read-only") }, "host root is read-only"},
		{tryReq{Op: "write", Arg: "/tmp/x"}, func(r tryResult) bool { return r.OK }, "/tmp is writable"},
		{tryReq{Op: "env", Arg: "HOME"}, func(r tryResult) bool { return r.Out == "/tmp/home" }, "HOME set"},
		{tryReq{Op: "env", Arg: "PORT"}, func(r tryResult) bool { return r.Out == "8080" }, "PORT is the backend's"},
		{tryReq{Op: "env", Arg: "FOO"}, func(r tryResult) bool { return r.Out == "bar" }, "spec env passed"},
		{tryReq{Op: "ls", Arg: "/sys/class/net"}, func(r tryResult) bool { return r.Out == "lo" }, "only loopback in own netns"},
		{tryReq{Op: "ls", Arg: filepath.Dir(t.TempDir())}, func(r tryResult) bool { return r.OK && r.Out == "" || !r.OK }, "host temp dirs invisible"},
	}
	for _, c := range checks {
		r := mustTry(t, h, c.req)
		if !c.want(r) {
			t.Errorf("%s: got %+v", c.what, r)
		}
	}
}

func TestExitStatus(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, spec(t))
	mustTry(t, h, tryReq{Op: "exit", N: 3})
	select {
	case <-h.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("agent exit not noticed")
	}
	if ex := h.Exit(); ex.Code != 3 || ex.Signal != "" || ex.OOMKilled {
		t.Errorf("exit = %+v, want code 3", ex)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, spec(t, func(s *sandbox.Spec) { s.Env = []string{"AGENT_MODE=ignore-term"} }))
	t0 := time.Now()
	if err := h.Stop(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("stop took %v, should have waited the grace for an agent ignoring SIGTERM", d)
	}
	if ex := h.Exit(); ex.Signal != "SIGKILL" {
		t.Errorf("exit = %+v, want SIGKILL", ex)
	}
}

func TestStartFailures(t *testing.T) {
	b := newBackend(t)
	s := spec(t, func(s *sandbox.Spec) { s.Command = []string{"/nonexistent/agent"} })
	if _, err := b.Start(context.Background(), s); err == nil {
		t.Fatal("start of a missing binary succeeded")
	}
	assertGone(t, b)

	s = spec(t, func(s *sandbox.Spec) { s.Network = "bridge" })
	if _, err := b.Start(context.Background(), s); !errors.Is(err, sandbox.ErrUnsupported) {
		t.Fatalf("unknown network mode: err = %v, want ErrUnsupported", err)
	}

	s = spec(t)
	start(t, b, s)
	if _, err := b.Start(context.Background(), s); !errors.Is(err, linux.ErrExists) {
		t.Fatalf("duplicate start: err = %v, want ErrExists", err)
	}
}

func TestHostNetwork(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, spec(t, func(s *sandbox.Spec) { s.Network = sandbox.NetworkHost }))
	if strings.HasSuffix(h.Addr(), ":8080") {
		t.Errorf("host mode addr %s: want an allocated loopback port", h.Addr())
	}
	r := mustTry(t, h, tryReq{Op: "env", Arg: "PORT"})
	if !strings.HasSuffix(h.Addr(), ":"+r.Out) {
		t.Errorf("PORT=%s but addr %s", r.Out, h.Addr())
	}
}

func TestReapAfterAbandon(t *testing.T) {
	root := filepath.Join(t.TempDir(), "sandboxes")
	parent := "berth-test-" + randHex(4)
	cfg := func(c *linux.Config) { c.RootDir, c.CgroupParent = root, parent }
	old := newBackend(t, cfg)
	var names []string
	var handles []sandbox.Handle
	for range 3 {
		s := spec(t)
		h, err := old.Start(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		waitPing(t, h)
		names = append(names, s.Name)
		handles = append(handles, h)
	}
	// A dead berth's pool is not refilling: let this one settle first.
	waitIdle(t, old, 2)
	// The old backend is abandoned, as if berth had been SIGKILLed; a new
	// one (same root and cgroup parent) must find and remove everything.
	fresh := newBackend(t, cfg)
	if err := fresh.Reap(context.Background()); err != nil {
		t.Fatalf("reap: %v", err)
	}
	for i, h := range handles {
		select {
		case <-h.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("sandbox %s still running after reap", names[i])
		}
	}
	assertGone(t, fresh)
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("root dir holds %s after reap", e.Name())
		}
	}
}

// waitIdle waits until b's pool holds n warm inits.
func waitIdle(t testing.TB, b *linux.Backend, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); linux.IdleInits(b) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d warm inits, want %d", linux.IdleInits(b), n)
		}
	}
}

func TestUserNamespace(t *testing.T) {
	// The mapped root must be able to traverse to RootDir and the agent:
	// t.TempDir() is 0700, so open it up. The log is opened by berth.
	root, err := os.MkdirTemp("", "berth-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, func(c *linux.Config) {
		c.UserNamespace = true
		c.RootDir = filepath.Join(root, "sandboxes")
	})
	h := start(t, b, spec(t))
	r := mustTry(t, h, tryReq{Op: "read", Arg: "/proc/self/uid_map"})
	f := strings.Fields(r.Out)
	if len(f) != 3 || f[0] != "0" || f[1] == "0" {
		t.Fatalf("uid_map = %q, want root mapped to an unprivileged host range", r.Out)
	}
	if r := mustTry(t, h, tryReq{Op: "write", Arg: "/tmp/home/x"}); !r.OK {
		t.Errorf("write own home under userns: %+v", r)
	}
	if r := mustTry(t, h, tryReq{Op: "unshare-user"}); r.OK {
		t.Errorf("nested user namespace allowed")
	}
}

func TestWarmPool(t *testing.T) {
	b := newBackend(t)
	start(t, b, spec(t)) // the first start is cold and fills the pool
	waitIdle(t, b, 2)
	warm := linux.IdleInitPids(b)
	h := start(t, b, spec(t))
	if pid := linux.InitPid(h); !slices.Contains(warm, pid) {
		t.Errorf("sandbox init %d is not one of the warm inits %v", pid, warm)
	}
	// The agent's cgroup namespace is rooted at its own cgroups, so it sees
	// "/" in every hierarchy, never berth's path.
	r := mustTry(t, h, tryReq{Op: "read", Arg: "/proc/self/cgroup"})
	for l := range strings.SplitSeq(strings.TrimSpace(r.Out), "\n") {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("agent's cgroup view is not rooted at its own cgroup: %q", l)
		}
	}
	// Taken from the pool, the init runs at berth's priority again.
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, linux.InitPid(h))
	if own, _ := unix.Getpriority(unix.PRIO_PROCESS, 0); err != nil || prio != own {
		t.Errorf("taken init priority %d (err %v), want berth's %d", prio, err, own)
	}
	waitIdle(t, b, 2)

	// Warm inits that died in the pool (an OOM kill, say), or are dying as
	// the start takes one, are replaced.
	for _, pid := range linux.IdleInitPids(b) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	start(t, b, spec(t))
	assertGone(t, b)
}

// TestDirContainsHiddenPath is berth's own layout with `workdir: .` and
// `data_dir: ./.berth`: the agent's code dir holds berth's data dir, which
// holds the backend's root. The data dir must look empty inside.
func TestDirContainsHiddenPath(t *testing.T) {
	// Under /tmp, which sandboxes replace, and outside it.
	t.Run("Tmp", func(t *testing.T) { testDirContainsHiddenPath(t, t.TempDir()) })
	t.Run("VarTmp", func(t *testing.T) { testDirContainsHiddenPath(t, hostDir(t)) })
}

// hostDir is a fresh directory outside /tmp, removed when t ends.
func hostDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "berth-linux-test-")
	testenv.Require(t, testenv.Linux, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testDirContainsHiddenPath(t *testing.T, work string) {
	data := filepath.Join(work, ".berth")
	if err := os.MkdirAll(filepath.Join(data, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "berth.db"), []byte("host-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "code.txt"), []byte("agent code"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, func(c *linux.Config) {
		c.RootDir = filepath.Join(data, "sandboxes", "linux")
		c.HidePaths = []string{data}
	})
	h := start(t, b, spec(t, func(s *sandbox.Spec) { s.Dir = work }))
	if r := mustTry(t, h, tryReq{Op: "read", Arg: filepath.Join(work, "code.txt")}); r.Out != "agent code" {
		t.Errorf("code dir not visible: %+v", r)
	}
	if r := mustTry(t, h, tryReq{Op: "read", Arg: filepath.Join(data, "berth.db")}); r.OK {
		t.Errorf("data dir below the code dir is visible: read %q", r.Out)
	}
	if r := mustTry(t, h, tryReq{Op: "ls", Arg: data}); r.Out != "" {
		t.Errorf("data dir below the code dir lists %q, want it empty", r.Out)
	}
}
