//go:build unix

package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/process"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/testenv"
)

func TestMain(m *testing.M) {
	sandboxtest.BerthMain(func(root, variant string) (sandbox.Backend, error) {
		return process.NewTracking(root, nil, variants[variant]), nil
	})
	os.Exit(m.Run())
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// variants are the ways a process backend tracks a sandbox's processes.
var variants = map[string]process.TrackMode{
	"Cgroup":   process.TrackAuto,
	"CgroupV1": process.TrackV1,
	"Marker":   process.TrackMarker,
}

func TestConformance(t *testing.T) {
	for name, mode := range variants {
		t.Run(name, func(t *testing.T) {
			sandboxtest.RunWithOptions(t, sandboxtest.Options{Variant: name}, func(t *testing.T) sandbox.Backend {
				return process.NewTracking(sandboxtest.Root(t), testLogger(t), mode)
			})
		})
	}
}

func startAgent(t *testing.T, b *process.Backend, edit func(*sandbox.Spec)) sandbox.Handle {
	t.Helper()
	spec := sandbox.Spec{
		Name:    sandbox.Name("rt", t.Name()),
		Command: []string{sandboxtest.BuildAgent(t)},
		Output:  sandboxtest.Output(t),
	}
	if edit != nil {
		edit(&spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(context.Background(), time.Second); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if err := sandboxtest.WaitHealthy(ctx, h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestUnsupportedSpecs(t *testing.T) {
	b := process.New(sandboxtest.Root(t), testLogger(t))
	agent := sandboxtest.BuildAgent(t)
	for name, edit := range map[string]func(*sandbox.Spec){
		"NetworkNone":   func(s *sandbox.Spec) { s.Network = sandbox.NetworkNone },
		"NetworkEgress": func(s *sandbox.Spec) { s.Network = sandbox.NetworkEgress },
		"Mounts":        func(s *sandbox.Spec) { s.Mounts = []sandbox.Mount{{Source: "/", Target: "/host"}} },
	} {
		t.Run(name, func(t *testing.T) {
			spec := sandbox.Spec{Name: sandbox.Name("rt", name), Command: []string{agent}}
			edit(&spec)
			_, err := b.Start(context.Background(), spec)
			if !errors.Is(err, sandbox.ErrUnsupported) {
				t.Fatalf("Start: %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestDuplicateName(t *testing.T) {
	b := process.New(sandboxtest.Root(t), testLogger(t))
	h := startAgent(t, b, nil)
	_, err := b.Start(context.Background(), sandbox.Spec{Name: h.ID(), Command: []string{sandboxtest.BuildAgent(t)}})
	if err == nil {
		t.Fatal("second Start with a live sandbox's name succeeded")
	}
}

// TestLayout pins what the process backend promises beyond the suite: the
// scratch dirs live under root/<name>, the agent gets a loopback host, its
// own process group, and the working dir is Spec.Dir.
func TestLayout(t *testing.T) {
	root := sandboxtest.Root(t)
	b := process.New(root, testLogger(t))
	code := t.TempDir()
	h := startAgent(t, b, func(s *sandbox.Spec) { s.Dir = code })
	dir := filepath.Join(root, h.ID())

	hc := sandboxtest.HTTPClient(h)
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://"+h.Addr()+"/invocations", "application/json",
		strings.NewReader(`{"op":"echo","env":["BERTH_SANDBOX"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		PID int
		Cwd string
		Env map[string]string
	}
	decode(t, resp.Body, &r)

	if r.Env["HOME"] != filepath.Join(dir, "home") || r.Env["TMPDIR"] != filepath.Join(dir, "tmp") {
		t.Errorf("HOME=%q TMPDIR=%q, want them under %s", r.Env["HOME"], r.Env["TMPDIR"], dir)
	}
	if r.Cwd != code {
		t.Errorf("cwd %q, want Spec.Dir %q", r.Cwd, code)
	}
	if r.Env["BERTH_AGENT_HOST"] != "127.0.0.1" || r.Env["BERTH_SANDBOX"] != h.ID() {
		t.Errorf("env %v lacks the backend's host and sandbox name", r.Env)
	}
	if host, port, _ := net.SplitHostPort(h.Addr()); host != "127.0.0.1" || port != r.Env["PORT"] {
		t.Errorf("Addr %q does not match PORT %q on loopback", h.Addr(), r.Env["PORT"])
	}
	if pgid, err := syscall.Getpgid(r.PID); err != nil || pgid != r.PID {
		t.Errorf("agent %d is in process group %d (%v), want its own", r.PID, pgid, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.json")); err != nil {
		t.Errorf("no Reap record: %v", err)
	}
}

// TestReapSparesRecycledPID writes a record naming a live process that is
// not the one recorded (wrong start time) and checks Reap leaves it alone
// while still removing the dir.
func TestReapSparesRecycledPID(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Require(t, testenv.Linux, errors.New("start-time checks need Linux procfs"))
	}
	stranger := exec.Command(sandboxtest.BuildAgent(t), "sleeper", "stranger")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stranger.Process.Kill()
		_ = stranger.Wait()
	})
	pid := stranger.Process.Pid

	root := sandboxtest.Root(t)
	name := sandbox.Name("rt", "stale")
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	rec := `{"name":"` + name + `","pid":` + strconv.Itoa(pid) + `,"pgid":` + strconv.Itoa(pid) + `,"start_time":1}`
	if err := os.WriteFile(filepath.Join(dir, "sandbox.json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := process.New(root, testLogger(t)).Reap(context.Background()); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Reap kept %s (%v)", dir, err)
	}
	// The stranger is our child, so a kill would leave a zombie, not ESRCH.
	time.Sleep(50 * time.Millisecond) // a SIGKILL, had one been sent, lands well within this
	if !alive(pid) {
		t.Fatal("Reap killed a process whose PID merely matched the record")
	}
}

// TestReapSparesLiveSandboxes checks Reap on a running backend leaves its
// own sandboxes alone.
func TestReapSparesLiveSandboxes(t *testing.T) {
	b := process.New(sandboxtest.Root(t), testLogger(t))
	h := startAgent(t, b, nil)
	if err := b.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sandboxtest.WaitHealthy(ctx, h); err != nil {
		t.Fatalf("after Reap: %v", err)
	}
}

func TestStats(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Require(t, testenv.Linux, errors.New("stats need Linux procfs"))
	}
	b := process.New(sandboxtest.Root(t), testLogger(t))
	h := startAgent(t, b, nil)
	sr, ok := h.(sandbox.StatsReporter)
	if !ok {
		t.Fatal("handle does not implement sandbox.StatsReporter")
	}
	before, err := sr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if before.Pids != 1 || before.MemoryBytes <= 0 {
		t.Errorf("Stats() = %+v, want one process with some memory", before)
	}
	hc := sandboxtest.HTTPClient(h)
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://"+h.Addr()+"/invocations", "application/json", strings.NewReader(`{"op":"spawn","tag":"stats"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	after, err := sr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if after.Pids != 2 || after.MemoryBytes <= before.MemoryBytes {
		t.Errorf("after spawn Stats() = %+v, before %+v; want the grandchild counted", after, before)
	}
}

// BenchmarkStart measures start → first /ping 200 → Stop through the
// backend; compare with BenchmarkBareProcess for the backend's overhead.
func BenchmarkStart(b *testing.B) {
	for _, name := range []string{"Cgroup", "CgroupV1", "Marker"} {
		b.Run(name, func(b *testing.B) {
			benchStart(b, process.NewTracking(sandboxtest.Root(b), slog.New(slog.DiscardHandler), variants[name]))
		})
	}
}

func benchStart(b *testing.B, be *process.Backend) {
	agent := sandboxtest.BuildAgent(b)
	out := sandboxtest.Output(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		h, err := be.Start(ctx, sandbox.Spec{Name: sandbox.Name("bench", strconv.Itoa(i)), Command: []string{agent}, Output: out})
		if err != nil {
			b.Fatal(err)
		}
		hc := sandboxtest.HTTPClient(h)
		awaitPing(b, hc, "http://"+h.Addr()+"/ping")
		if err := h.Stop(ctx, time.Second); err != nil {
			b.Fatal(err)
		}
		hc.CloseIdleConnections()
	}
}

// BenchmarkBareProcess runs the same agent with plain os/exec: start, poll
// /ping until 200, SIGTERM, wait.
func BenchmarkBareProcess(b *testing.B) {
	agent := sandboxtest.BuildAgent(b)
	log, err := os.Create(filepath.Join(b.TempDir(), "agent.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	home := b.TempDir()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	for b.Loop() {
		port := freePort(b)
		cmd := exec.Command(agent)
		cmd.Env = append(os.Environ(), "PORT="+port, "BERTH_AGENT_HOST=127.0.0.1", "HOME="+home, "TMPDIR="+home)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		awaitPing(b, hc, "http://127.0.0.1:"+port+"/ping")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
}

// awaitPing polls url every millisecond until it answers 200; both
// benchmarks use it so they differ only in how the agent is run.
func awaitPing(b *testing.B, hc *http.Client, url string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("%s never answered 200", url)
}

func freePort(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func decode(t *testing.T, r io.Reader, v any) {
	t.Helper()
	if err := json.NewDecoder(r).Decode(v); err != nil {
		t.Fatalf("decode: %v", err)
	}
}

func TestBareCommandUsesSpecPath(t *testing.T) {
	bin := t.TempDir()
	if err := os.Symlink(sandboxtest.BuildAgent(t), filepath.Join(bin, "berth-test-agent")); err != nil {
		t.Fatal(err)
	}
	b := process.New(sandboxtest.Root(t), testLogger(t))
	startAgent(t, b, func(s *sandbox.Spec) {
		s.Command = []string{"berth-test-agent"}
		s.Env = append(s.Env, "PATH="+bin+":/usr/bin:/bin")
	})
	_, err := b.Start(context.Background(), sandbox.Spec{Name: sandbox.Name("rt", "nopath"), Command: []string{"berth-test-agent"}, Env: []string{"PATH=/nonexistent"}})
	if err == nil {
		t.Fatal("Start found a command outside the spec's PATH")
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i > 0 && i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
}

func settle(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// TestCgroupCatchesUnmarked: in a cgroup, a process that left the agent's
// session and shed the environment marker still dies with the sandbox. (The
// marker alone cannot find it: see the package doc.)
func TestCgroupCatchesUnmarked(t *testing.T) {
	for _, name := range []string{"Cgroup", "CgroupV1"} {
		t.Run(name, func(t *testing.T) {
			b := process.NewTracking(sandboxtest.Root(t), testLogger(t), variants[name])
			h := startAgent(t, b, nil)
			cg := process.Cgroup(b, h.ID())
			if cg == "" {
				testenv.Require(t, testenv.Linux, errors.New("berth may create no cgroup here: the backend tracks by marker"))
			}
			hc := sandboxtest.HTTPClient(h)
			defer hc.CloseIdleConnections()
			tag := "unmarked-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			resp, err := hc.Post("http://"+h.Addr()+"/invocations", "application/json",
				strings.NewReader(`{"op":"spawn","tag":"`+tag+`","ignore_term":true,"detach":"setsid","clean_env":true}`))
			if err != nil {
				t.Fatal(err)
			}
			var r struct{ PID int }
			decode(t, resp.Body, &r)
			resp.Body.Close()
			if !settle(5*time.Second, func() bool { return alive(r.PID) }) {
				t.Fatalf("sleeper %d not running", r.PID)
			}
			procs, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
			if err != nil || !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(r.PID)+"\n") {
				t.Fatalf("sleeper %d is not in the sandbox's cgroup %s (%q, %v)", r.PID, cg, procs, err)
			}
			if err := h.Stop(context.Background(), time.Second); err != nil {
				t.Fatal(err)
			}
			if alive(r.PID) {
				t.Errorf("unmarked sleeper %d outlived Stop", r.PID)
			}
			if _, err := os.Stat(cg); !os.IsNotExist(err) {
				t.Errorf("Stop left the cgroup %s (%v)", cg, err)
			}
		})
	}
}
