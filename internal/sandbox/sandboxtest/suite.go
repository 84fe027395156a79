package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
)

// Options adjusts the suite where backends legitimately differ.
type Options struct {
	// Network is the mode every spec asks for; empty means sandbox.NetworkHost.
	Network sandbox.NetworkMode
	// FixedPort, when non-zero, is the PORT every agent must see: a backend
	// that gives each sandbox its own network namespace serves on 8080.
	FixedPort int
	// Parallel is how many sandboxes the Parallel subtest runs at once;
	// zero means 50 (10 with -short).
	Parallel int
	// AdjustSpec, if set, edits every spec the suite builds, after the
	// suite has filled it in (to add limits, say).
	AdjustSpec func(*sandbox.Spec)
	// Variant names this configuration of the backend to BerthMain's open,
	// for the subtest that kills a stand-in berth process.
	Variant string
	// InProcess says the backend's agents run inside the test process (a
	// fake, such as sandboxfake): with no process tree and no log written,
	// the subtests about those skip, saying so, and the others leave out
	// their process and log checks.
	InProcess bool
}

// Run runs the conformance suite with default options. newBackend is called
// once per subtest, and twice in the Reap subtest, where both instances
// must share state: build the backend over Root(t).
func Run(t *testing.T, newBackend func(t *testing.T) sandbox.Backend) {
	RunWithOptions(t, Options{}, newBackend)
}

// RunWithOptions runs the conformance suite. Subtests run one after another
// (each may start many sandboxes) and end with a goroutine leak check.
func RunWithOptions(t *testing.T, opts Options, newBackend func(t *testing.T) sandbox.Backend) {
	if opts.Network == "" {
		opts.Network = sandbox.NetworkHost
	}
	if opts.Parallel == 0 {
		opts.Parallel = 50
		if testing.Short() {
			opts.Parallel = 10
		}
	}
	s := &suite{opts: opts, newBackend: newBackend, agent: BuildAgent(t), code: t.TempDir()}
	if err := installAgent(s.agent, s.code); err != nil {
		t.Fatalf("install agent into code dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(s.code, "marker"), []byte("code-dir-marker"), 0o644); err != nil {
		t.Fatal(err)
	}

	baseline := runtime.NumGoroutine()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"PingAndInvoke", s.testPingAndInvoke},
		{"DistinctSandboxes", s.testDistinctSandboxes},
		{"Env", s.testEnv},
		{"ProtocolPort", s.testProtocolPort},
		{"ScratchIsolated", s.testScratchIsolated},
		{"WorkingDir", s.testWorkingDir},
		{"LogCapture", s.testLogCapture},
		{"ExitCrashOnStart", s.testExitCrashOnStart},
		{"ExitCrashOp", s.testExitCrashOp},
		{"StopGraceful", s.testStopGraceful},
		{"StopEscalatesToKill", s.testStopEscalatesToKill},
		{"StopKillsTree", s.testStopKillsTree},
		{"StopCleansUp", s.testStopCleansUp},
		{"StopIdempotentConcurrent", s.testStopIdempotentConcurrent},
		{"StopKillsEscapees", s.testStopKillsEscapees},
		{"StartBadCommand", s.testStartBadCommand},
		{"Reap", s.testReap},
		{"ReapAfterBerthKilled", s.testReapAfterBerthKilled},
		{"Attach", s.testAttach},
		{"Exec", s.testExec},
		{"ExecTimeoutKillsTree", s.testExecTimeoutKillsTree},
		{"ExecLeftoversEnd", s.testExecLeftoversEnd},
		{"ExecConcurrent", s.testExecConcurrent},
		{"ExecAfterExit", s.testExecAfterExit},
		{"Parallel", s.testParallel},
	} {
		t.Run(tc.name, tc.fn)
	}
	t.Run("NoGoroutineLeak", func(t *testing.T) {
		// +1: this subtest's own goroutine.
		want := baseline + 1
		if !settle(5*time.Second, func() bool { return runtime.NumGoroutine() <= want }) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("goroutines: %d after every sandbox stopped, %d before\n%s", runtime.NumGoroutine(), want, buf[:n])
		}
	})
}

type suite struct {
	opts       Options
	newBackend func(t *testing.T) sandbox.Backend
	agent      string // absolute path of the agent binary
	code       string // a code dir holding ./testagent and ./marker
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// spec builds a spec that runs ./testagent from the suite's code dir, with a
// fresh session, token and log file. Edits apply before AdjustSpec.
func (s *suite) spec(t *testing.T, edits ...func(*sandbox.Spec)) (sandbox.Spec, string) {
	token := randHex(12)
	session := "sandboxtest-" + randHex(16)
	sp := sandbox.Spec{
		Name:      sandbox.Name("sandboxtest-runtime", session),
		RuntimeID: "sandboxtest-runtime",
		SessionID: session,
		Command:   []string{"./testagent"},
		Dir:       s.code,
		Env:       []string{"SANDBOXTEST_TOKEN=" + token},
		Output:    Output(t),
		Network:   s.opts.Network,
	}
	for _, e := range edits {
		e(&sp)
	}
	if s.opts.AdjustSpec != nil {
		s.opts.AdjustSpec(&sp)
	}
	return sp, token
}

func withEnv(kv ...string) func(*sandbox.Spec) {
	return func(sp *sandbox.Spec) { sp.Env = append(sp.Env, kv...) }
}

// start starts a sandbox on b and stops it when t ends.
func (s *suite) start(t *testing.T, b sandbox.Backend, edits ...func(*sandbox.Spec)) *box {
	t.Helper()
	sp, token := s.spec(t, edits...)
	return s.startSpec(t, b, sp, token)
}

func (s *suite) startSpec(t *testing.T, b sandbox.Backend, sp sandbox.Spec, token string) *box {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := b.Start(ctx, sp)
	if err != nil {
		t.Fatalf("start sandbox %s: %v", sp.Name, err)
	}
	bx := &box{t: t, h: h, spec: sp, token: token, hc: HTTPClient(h)}
	t.Cleanup(func() {
		if err := bx.stop(2 * time.Second); err != nil {
			t.Errorf("cleanup: stop sandbox %s: %v", sp.Name, err)
		}
		bx.hc.CloseIdleConnections()
	})
	return bx
}

func (s *suite) testPingAndInvoke(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	if bx.h.ID() == "" || bx.h.Addr() == "" {
		t.Fatalf("handle has ID %q and Addr %q; want both set", bx.h.ID(), bx.h.Addr())
	}
	bx.waitHealthy()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ping(ctx, bx.hc, bx.h)
	if err != nil || st != api.PingHealthy {
		t.Fatalf("ping: status %q, err %v; want Healthy", st, err)
	}

	session := bx.spec.SessionID
	code, body, err := bx.invoke(ctx, map[string]any{"op": "echo", "hello": "world"},
		http.Header{api.HeaderSessionID: {session}})
	if err != nil || code != http.StatusOK {
		t.Fatalf("invoke: status %d, err %v, body %s", code, err, body)
	}
	var r echoReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode echo %q: %v", body, err)
	}
	if r.PID <= 0 || r.Count != 1 {
		t.Errorf("echo: pid %d, count %d; want a pid and the first invocation", r.PID, r.Count)
	}
	if got := r.Headers.Get(api.HeaderSessionID); got != session {
		t.Errorf("session header reached the agent as %q, want %q", got, session)
	}
	var payload map[string]any
	if err := json.Unmarshal(r.Payload, &payload); err != nil || payload["hello"] != "world" {
		t.Errorf("payload reached the agent as %s (%v)", r.Payload, err)
	}
	select {
	case <-bx.h.Done():
		t.Fatalf("Done closed while the agent runs (%v)", bx.h.Exit())
	default:
	}
}

func (s *suite) testDistinctSandboxes(t *testing.T) {
	b := s.newBackend(t)
	one, two := s.start(t, b), s.start(t, b)
	one.waitHealthy()
	two.waitHealthy()
	if one.h.ID() == two.h.ID() {
		t.Errorf("two sandboxes share the ID %q", one.h.ID())
	}
	// echo checks each answer carries its own sandbox's token; the
	// counters prove each sandbox is its own, long-lived process.
	for i := int64(1); i <= 3; i++ {
		if r := one.echo(); r.Count != i {
			t.Errorf("first sandbox: invocation %d reports count %d", i, r.Count)
		}
	}
	if r := two.echo(); r.Count != 1 {
		t.Errorf("second sandbox: first invocation reports count %d; state leaked between sandboxes", r.Count)
	}
}

func (s *suite) testEnv(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b, withEnv("SANDBOXTEST_FOO=bar baz", "SANDBOXTEST_EMPTY="))
	bx.waitHealthy()
	r := bx.echo("SANDBOXTEST_FOO", "SANDBOXTEST_EMPTY")
	if got := r.Env["SANDBOXTEST_FOO"]; got != "bar baz" {
		t.Errorf("SANDBOXTEST_FOO = %q, want %q", got, "bar baz")
	}
	if got, ok := r.Env["SANDBOXTEST_EMPTY"]; !ok || got != "" {
		t.Errorf("SANDBOXTEST_EMPTY = %q (set %v), want set and empty", got, ok)
	}
	port, err := strconv.Atoi(r.Env["PORT"])
	if err != nil || port <= 0 || port > 65535 {
		t.Errorf("PORT = %q, want a port number", r.Env["PORT"])
	}
	if s.opts.FixedPort != 0 && port != s.opts.FixedPort {
		t.Errorf("PORT = %d, want %d", port, s.opts.FixedPort)
	}
	for _, k := range []string{"HOME", "TMPDIR"} {
		if v := r.Env[k]; !filepath.IsAbs(v) {
			t.Errorf("%s = %q, want an absolute path", k, v)
		}
	}
}

// testProtocolPort starts an agent that asks for MCP's port, 8000: a
// backend with a network of its own per sandbox serves it there, one that
// shares the host's picks a free port; PORT tells the agent either way.
func (s *suite) testProtocolPort(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b, func(sp *sandbox.Spec) { sp.Port = 8000 })
	bx.waitHealthy()
	port, err := strconv.Atoi(bx.echo().Env["PORT"])
	if err != nil {
		t.Fatalf("PORT: %v", err)
	}
	if s.opts.FixedPort != 0 && port != 8000 {
		t.Errorf("PORT = %d in a private network; want the spec's 8000", port)
	}
	if _, p, _ := net.SplitHostPort(bx.h.Addr()); p != strconv.Itoa(port) {
		t.Errorf("handle address %s, agent's PORT %d", bx.h.Addr(), port)
	}
}

func (s *suite) testScratchIsolated(t *testing.T) {
	b := s.newBackend(t)
	one, two := s.start(t, b), s.start(t, b)
	one.waitHealthy()
	two.waitHealthy()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dir := range []string{"$HOME", "$TMPDIR"} {
		path := dir + "/isolation-note"
		one.mustInvoke(map[string]any{"op": "write", "path": path, "data": one.token})
		body := one.mustInvoke(map[string]any{"op": "read", "path": path})
		var got struct{ Data string }
		if err := json.Unmarshal(body, &got); err != nil || got.Data != one.token {
			t.Errorf("%s: read back %q (%v), want what was written", path, got.Data, err)
		}
		code, body, err := two.invoke(ctx, map[string]any{"op": "read", "path": path}, nil)
		if err != nil {
			t.Fatalf("second sandbox read %s: %v", path, err)
		}
		if code != http.StatusNotFound {
			t.Errorf("second sandbox reading %s: status %d (%s); want 404, scratch dirs must be per sandbox", path, code, body)
		}
	}
}

func (s *suite) testWorkingDir(t *testing.T) {
	b := s.newBackend(t)
	t.Run("SpecDir", func(t *testing.T) {
		// Command ./testagent resolved against Dir; ./marker read relative to the working dir.
		bx := s.start(t, b)
		bx.waitHealthy()
		body := bx.mustInvoke(map[string]any{"op": "read", "path": "marker"})
		var got struct{ Data string }
		if err := json.Unmarshal(body, &got); err != nil || got.Data != "code-dir-marker" {
			t.Errorf("working dir lacks Dir's marker: read %q (%v)", got.Data, err)
		}
	})
	t.Run("EmptyDirIsScratch", func(t *testing.T) {
		noDir := func(sp *sandbox.Spec) { sp.Dir = ""; sp.Command = []string{s.agent} }
		one, two := s.start(t, b, noDir), s.start(t, b, noDir)
		one.waitHealthy()
		two.waitHealthy()
		one.mustInvoke(map[string]any{"op": "write", "path": "cwd-note", "data": one.token})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		code, body, err := two.invoke(ctx, map[string]any{"op": "read", "path": "cwd-note"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusNotFound {
			t.Errorf("second sandbox sees the first one's working dir: status %d (%s)", code, body)
		}
	})
}

func (s *suite) testLogCapture(t *testing.T) {
	if s.opts.InProcess {
		t.Skip("the backend's agents run inside the test process: no process writes a log")
	}
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	bx.waitLog(10*time.Second, "testagent: stdout start", "testagent: stderr start")
}

func (s *suite) testExitCrashOnStart(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b, withEnv("AGENT_MODE=crash-on-start"))
	bx.waitDone(20 * time.Second)
	if got := bx.h.Exit(); got.Code != 2 || got.Signal != "" {
		t.Errorf("Exit() = %+v, want code 2 and no signal", got)
	}
	s.waitLog(bx, 5*time.Second, "testagent: stderr start")
	s.checkStoppedClean(t, bx)
}

func (s *suite) testExitCrashOp(t *testing.T) {
	s.needProcesses(t)
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	// A grandchild must not keep the tree alive after the agent dies, even
	// one that left the agent's process group.
	bx.mustInvoke(map[string]any{"op": "spawn", "tag": "crash-" + bx.token, "ignore_term": true})
	escapees := bx.spawnEscapees("crash")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code, body, err := bx.invoke(ctx, map[string]any{"op": "crash"}, nil); err == nil {
		t.Errorf("crash op answered %d %s; want the connection to drop", code, body)
	}
	bx.waitDone(20 * time.Second)
	if got := bx.h.Exit(); got.Code != 3 || got.Signal != "" {
		t.Errorf("Exit() = %+v, want code 3 and no signal", got)
	}
	requireNoProcs(t, "after the agent crashed and Done closed", bx.token)
	requireNoTagged(t, "after the agent crashed and Done closed", escapees...)
	s.checkStoppedClean(t, bx)
}

// checkStoppedClean stops an exited sandbox and checks Stop still cleans up.
func (s *suite) checkStoppedClean(t *testing.T, bx *box) {
	t.Helper()
	if err := bx.stop(time.Second); err != nil {
		t.Errorf("Stop after the agent exited: %v", err)
	}
	if left := leftovers(Root(t), bx.spec.Name); len(left) > 0 {
		t.Errorf("Stop after exit left %v", left)
	}
}

func (s *suite) testStopGraceful(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	const grace = 10 * time.Second
	began := time.Now()
	if err := bx.stop(grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(began); took > grace/2 {
		t.Errorf("Stop of a well-behaved agent took %v; SIGTERM should end it well within the %v grace", took, grace)
	}
	select {
	case <-bx.h.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	s.waitLog(bx, 5*time.Second, "testagent: received SIGTERM, exiting")
	if got := bx.h.Exit(); got.Code != 0 || got.Signal != "" {
		t.Errorf("Exit() = %+v, want code 0: the agent exits by itself on SIGTERM", got)
	}
}

func (s *suite) testStopEscalatesToKill(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b, withEnv("AGENT_MODE=ignore-term"))
	bx.waitHealthy()
	const grace = 500 * time.Millisecond
	began := time.Now()
	if err := bx.stop(grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(began)
	if took < grace-50*time.Millisecond {
		t.Errorf("Stop returned after %v, before the %v grace ran out", took, grace)
	}
	if took > grace+10*time.Second {
		t.Errorf("Stop took %v with a %v grace", took, grace)
	}
	s.waitLog(bx, 5*time.Second, "testagent: received SIGTERM, ignoring it")
	if got := bx.h.Exit(); got.Code != -1 || got.Signal == "" {
		t.Errorf("Exit() = %+v, want code -1 and the killing signal named", got)
	}
}

func (s *suite) testStopKillsTree(t *testing.T) {
	s.needProcesses(t)
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	tagHard, tagSoft := "hard-"+bx.token, "soft-"+bx.token
	bx.mustInvoke(map[string]any{"op": "spawn", "tag": tagHard, "ignore_term": true})
	bx.mustInvoke(map[string]any{"op": "spawn", "tag": tagSoft})
	var sleepers []int
	for _, tag := range []string{tagHard, tagSoft} {
		pids, err := liveProcs("cmdline", tag)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 {
			t.Fatalf("grandchild tagged %s: found pids %v, want one", tag, pids)
		}
		sleepers = append(sleepers, pids...)
	}
	if pids := tokenProcs(t, bx.token); len(pids) < 3 {
		t.Fatalf("before Stop: found %v carrying the token, want the agent and two grandchildren", pids)
	}
	if err := bx.stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireNoProcs(t, "after Stop", bx.token)
	for _, pid := range sleepers {
		if !zombie(pid) {
			t.Errorf("grandchild %d survives Stop (%s)", pid, describe([]int{pid}))
		}
	}
}

func (s *suite) testStopCleansUp(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	marker := ".sandboxtest-" + bx.token
	for _, dir := range []string{"$HOME", "$TMPDIR"} {
		bx.mustInvoke(map[string]any{"op": "write", "path": dir + "/" + marker, "data": "x"})
	}
	if err := bx.stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if left := leftovers(Root(t), bx.spec.Name, marker); len(left) > 0 {
		t.Errorf("Stop left scratch behind: %v", left)
	}
	// The backend keeps no copy of the output pipe, and no process of the
	// sandbox holds it: berth's copy of the output ends with the sandbox.
	if !outputClosed(bx.spec.Output, 10*time.Second) {
		t.Errorf("the sandbox's output is still open 10s after Stop")
	}
	if text := bx.logText(); !s.opts.InProcess && !strings.Contains(text, "testagent: stdout start") {
		t.Errorf("output lacks the agent's first line: %q", text)
	}
}

func (s *suite) testStopIdempotentConcurrent(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b, withEnv("AGENT_MODE=ignore-term"))
	bx.waitHealthy()
	const callers = 8
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() { errs <- bx.stop(300 * time.Millisecond) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Stop: %v", err)
		}
	}
	if err := bx.stop(time.Second); err != nil {
		t.Errorf("Stop after Stop: %v", err)
	}
	select {
	case <-bx.h.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	s.noProcs(t, "after concurrent Stop", bx.token)
}

// testStopKillsEscapees: processes that left the agent's process group (a
// new session, a daemon's double fork) and ignore SIGTERM die with Stop.
func (s *suite) testStopKillsEscapees(t *testing.T) {
	s.needProcesses(t)
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	tags := bx.spawnEscapees("stop")
	if err := bx.stop(2 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireNoProcs(t, "after Stop", bx.token)
	requireNoTagged(t, "after Stop", tags...)
}

func (s *suite) testStartBadCommand(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(notExec, []byte("plain text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*sandbox.Spec)
		// execs is set when only running the command can show it is bad.
		execs bool
	}{
		{"Missing", func(sp *sandbox.Spec) { sp.Command = []string{"/nonexistent/berth-agent"} }, true},
		{"MissingRelative", func(sp *sandbox.Spec) { sp.Command = []string{"./no-such-agent"} }, true},
		{"NotExecutable", func(sp *sandbox.Spec) { sp.Command = []string{notExec} }, true},
		{"Empty", func(sp *sandbox.Spec) { sp.Command = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.execs {
				s.needProcesses(t)
			}
			b := s.newBackend(t)
			sp, token := s.spec(t, tc.edit)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h, err := b.Start(ctx, sp)
			if err == nil {
				_ = h.Stop(ctx, 0)
				t.Fatalf("Start with command %q succeeded; want an error", sp.Command)
			}
			s.noProcs(t, "after a failed Start", token)
			if left := leftovers(Root(t), sp.Name); len(left) > 0 {
				t.Errorf("failed Start left %v", left)
			}
		})
	}
}

func (s *suite) testReap(t *testing.T) {
	if !s.opts.InProcess {
		requireProcfs(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.newBackend(t).Reap(ctx); err != nil {
		t.Fatalf("Reap with nothing to reap: %v", err)
	}

	// A "previous berth": sandboxes started and abandoned without Stop.
	old := s.newBackend(t)
	var boxes []*box
	var escapees []string
	for i := range 3 {
		bx := s.start(t, old)
		bx.waitHealthy()
		if i == 0 {
			if s.processes() {
				bx.mustInvoke(map[string]any{"op": "spawn", "tag": "reap-" + bx.token, "ignore_term": true})
			}
			escapees = s.spawnEscapees(bx, "reap")
		}
		boxes = append(boxes, bx)
	}
	var tokens, names []string
	for _, bx := range boxes {
		tokens = append(tokens, bx.token)
		names = append(names, bx.spec.Name)
	}

	fresh := s.newBackend(t)
	if err := fresh.Reap(ctx); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	s.noProcs(t, "after Reap", tokens...)
	s.noTagged(t, "after Reap", escapees...)
	if left := leftovers(Root(t), names...); len(left) > 0 {
		t.Errorf("Reap left %v", left)
	}
	// The abandoned handles learn their agents are gone.
	for _, bx := range boxes {
		bx.waitDone(10 * time.Second)
	}

	// The fresh instance works over the reaped root.
	nb := s.start(t, fresh)
	nb.waitHealthy()
	nb.echo()
}

func (s *suite) testParallel(t *testing.T) {
	b := s.newBackend(t)
	n := s.opts.Parallel
	boxes := make([]*box, n)
	failed := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		sp, token := s.spec(t)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			h, err := b.Start(ctx, sp)
			if err != nil {
				failed <- "start " + sp.Name + ": " + err.Error()
				return
			}
			boxes[i] = &box{t: t, h: h, spec: sp, token: token, hc: HTTPClient(h)}
			if err := WaitHealthy(ctx, h); err != nil {
				failed <- sp.Name + ": " + err.Error()
			}
		})
	}
	wg.Wait()
	close(failed)
	for msg := range failed {
		t.Error(msg)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, bx := range boxes {
			if bx == nil {
				continue
			}
			wg.Go(func() {
				if err := bx.stop(2 * time.Second); err != nil {
					t.Errorf("stop %s: %v", bx.spec.Name, err)
				}
				bx.hc.CloseIdleConnections()
			})
		}
		wg.Wait()
		for _, bx := range boxes {
			if bx != nil {
				s.noProcs(t, "after parallel Stop", bx.token)
			}
		}
	})
	if t.Failed() {
		return
	}
	ids := map[string]bool{}
	for _, bx := range boxes {
		if r := bx.echo(); r.Count != 1 {
			t.Errorf("sandbox %s: first invocation reports count %d", bx.spec.Name, r.Count)
		}
		if ids[bx.h.ID()] {
			t.Errorf("ID %q used twice", bx.h.ID())
		}
		ids[bx.h.ID()] = true
	}
}

// needProcesses skips t unless the backend runs real agent processes that
// procfs shows.
func (s *suite) needProcesses(t *testing.T) {
	t.Helper()
	if s.opts.InProcess {
		t.Skip("the backend's agents run inside the test process: there is no process tree to check")
	}
	requireProcfs(t)
}

// processes reports whether process-tree checks apply.
func (s *suite) processes() bool {
	if s.opts.InProcess {
		return false
	}
	_, err := os.Stat("/proc/self/environ")
	return err == nil
}

// noProcs fails t if a process of a sandbox with one of the tokens lives,
// where process checks apply.
func (s *suite) noProcs(t *testing.T, what string, tokens ...string) {
	t.Helper()
	if s.processes() {
		requireNoProcs(t, what, tokens...)
	}
}

// waitLog is box.waitLog where agents write logs.
func (s *suite) waitLog(bx *box, timeout time.Duration, want ...string) {
	bx.t.Helper()
	if !s.opts.InProcess {
		bx.waitLog(timeout, want...)
	}
}

// noTagged fails t if a sleeper tagged so lives, where process checks apply.
func (s *suite) noTagged(t *testing.T, what string, tags ...string) {
	t.Helper()
	if s.processes() {
		requireNoTagged(t, what, tags...)
	}
}

// spawnEscapees is box.spawnEscapees where agents are processes; none
// otherwise.
func (s *suite) spawnEscapees(bx *box, prefix string) []string {
	bx.t.Helper()
	if !s.processes() {
		return nil
	}
	return bx.spawnEscapees(prefix)
}
