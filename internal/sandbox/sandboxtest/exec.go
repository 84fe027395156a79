package sandboxtest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
)

// The Exec subtests: commands run beside the agent. The commands they use
// stay within what sandboxfake's scripted shell knows (echo, pwd, exit,
// sleep) unless the subtest needs real processes.

// syncBuffer is a bytes buffer safe for Exec's writer goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// execResult is one command's outcome.
type execResult struct {
	st             sandbox.ExecStatus
	err            error
	stdout, stderr string
	started        bool
}

// exec runs script with bash -c in bx's sandbox.
func (b *box) exec(ctx context.Context, script string) execResult {
	var out, errb syncBuffer
	var r execResult
	r.st, r.err = b.h.Exec(ctx, sandbox.ExecSpec{
		Argv:    []string{"bash", "-c", script},
		Stdout:  &out,
		Stderr:  &errb,
		Started: func() { r.started = true },
	})
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// mustExec runs script and fails t unless it ran to its end.
func (b *box) mustExec(script string) execResult {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := b.exec(ctx, script)
	if r.err != nil {
		b.t.Fatalf("exec %q: %v (stderr %q)", script, r.err, r.stderr)
	}
	return r
}

// testExec: a command's output reaches its writers stream by stream, its
// exit code comes back, and it sees the agent's environment and working
// directory.
func (s *suite) testExec(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()

	r := bx.mustExec("echo out-$SANDBOXTEST_TOKEN; echo err-$SANDBOXTEST_TOKEN >&2; exit 3")
	if r.stdout != "out-"+bx.token+"\n" || r.stderr != "err-"+bx.token+"\n" {
		t.Errorf("stdout %q, stderr %q; want out-TOKEN and err-TOKEN lines, each on its own stream", r.stdout, r.stderr)
	}
	if r.st.Code != 3 || r.st.Signal != "" || !r.started {
		t.Errorf("status %+v, started %v; want code 3 and Started called", r.st, r.started)
	}
	if r := bx.mustExec("exit 0"); r.st.Code != 0 {
		t.Errorf("exit 0: status %+v", r.st)
	}

	// The agent's environment and working directory.
	want := bx.echo("SANDBOXTEST_TOKEN")
	r = bx.mustExec("pwd; echo $HOME; echo $TMPDIR; echo $PORT; echo $SANDBOXTEST_TOKEN")
	got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	wantLines := []string{want.Cwd, want.Env["HOME"], want.Env["TMPDIR"], want.Env["PORT"], bx.token}
	if strings.Join(got, "|") != strings.Join(wantLines, "|") {
		t.Errorf("command sees cwd, HOME, TMPDIR, PORT, token = %q; the agent has %q", got, wantLines)
	}

	if s.processes() {
		// As the agent's user (the sandbox's root where it has users), in
		// a fresh process each time.
		r := bx.mustExec("id -u; echo $$")
		r2 := bx.mustExec("echo $$")
		lines := strings.Fields(r.stdout)
		if len(lines) != 2 || lines[0] != strconv.Itoa(want.UID) {
			t.Errorf("id -u; echo $$ printed %q; want the agent's uid %d first", r.stdout, want.UID)
		}
		if len(lines) == 2 && strings.TrimSpace(r2.stdout) == lines[1] {
			t.Errorf("two commands ran as the same process %s", lines[1])
		}
		// No stdin: a read sees end of file at once.
		if r := bx.mustExec("if read -r line; then echo got-input; else echo eof; fi"); r.stdout != "eof\n" {
			t.Errorf("reading stdin printed %q; want eof", r.stdout)
		}
	}
	if r := bx.echo(); r.PID != want.PID {
		t.Errorf("the agent changed from pid %d to %d across commands", want.PID, r.PID)
	}
}

// testExecTimeoutKillsTree: a command whose context ends is killed with
// every process it started, including those in sessions of their own and
// orphans of a double fork; the agent carries on.
func (s *suite) testExecTimeoutKillsTree(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	before := bx.echo()

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	script := "echo begun; sleep 600"
	var tags []string
	if s.processes() {
		for _, d := range []string{"bg", "setsid", "forked"} {
			tags = append(tags, "exec-"+d+"-"+bx.token)
		}
		script = "export SLEEPER_IGNORE_TERM=1; ./testagent sleeper " + tags[0] + " & setsid ./testagent sleeper " + tags[1] +
			" & ./testagent forker " + tags[2] + "; echo begun; sleep 600"
	}
	done := make(chan execResult, 1)
	go func() { done <- bx.exec(ctx, script) }()
	if s.processes() {
		requireTagged(t, tags...)
	}
	stop := errors.New("sandboxtest: the caller gave up")
	cancel(stop)
	var r execResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Exec did not return within 30s of its context ending")
	}
	if !errors.Is(r.err, stop) {
		t.Errorf("Exec after its context ended: %v, want the context's cause", r.err)
	}
	if r.st.Signal == "" || r.st.Code <= 128 {
		t.Errorf("status %+v; want death by a signal, coded 128+n", r.st)
	}
	s.noTagged(t, "after Exec's context ended", tags...)
	select {
	case <-bx.h.Done():
		t.Fatalf("the agent died with the command (%v)", bx.h.Exit())
	default:
	}
	if after := bx.echo(); after.PID != before.PID || after.Count != before.Count+1 {
		t.Errorf("agent after the kill: pid %d count %d; before: pid %d count %d", after.PID, after.Count, before.PID, before.Count)
	}
}

// testExecLeftoversEnd: what a command leaves running when it exits ends
// with it, so its output closes and Exec returns.
func (s *suite) testExecLeftoversEnd(t *testing.T) {
	s.needProcesses(t)
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	tag := "exec-left-" + bx.token
	began := time.Now()
	r := bx.mustExec("setsid ./testagent sleeper " + tag + " & echo started")
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("Exec took %v: it waited on the leftover holding its stdout", took)
	}
	if r.stdout != "started\n" || r.st.Code != 0 {
		t.Errorf("stdout %q status %+v", r.stdout, r.st)
	}
	requireNoTagged(t, "after the command exited", tag)
	bx.echo()
}

// testExecConcurrent: commands run alongside each other and alongside
// calls to the agent.
func (s *suite) testExecConcurrent(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	if !s.processes() {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				r := bx.exec(context.Background(), "sleep 0.1; echo done-"+strconv.Itoa(i))
				if r.err != nil || r.stdout != "done-"+strconv.Itoa(i)+"\n" {
					t.Errorf("command %d: %q, %v", i, r.stdout, r.err)
				}
			})
			wg.Go(func() { bx.echo() })
		}
		wg.Wait()
		return
	}
	// The first command can only finish if, while it runs, the agent
	// serves a call and a second command runs: each writes a flag it
	// waits for.
	waiter := `until [ -e "$TMPDIR/flag-agent" ] && [ -e "$TMPDIR/flag-cmd" ]; do sleep 0.02; done; echo both`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan execResult, 1)
	go func() { done <- bx.exec(ctx, waiter) }()
	bx.mustInvoke(map[string]any{"op": "write", "path": "$TMPDIR/flag-agent", "data": "x"})
	bx.mustExec(`touch "$TMPDIR/flag-cmd"`)
	if r := <-done; r.err != nil || r.stdout != "both\n" {
		t.Errorf("waiting command: %q, %v", r.stdout, r.err)
	}
}

// testExecAfterExit: Exec fails once the agent has exited.
func (s *suite) testExecAfterExit(t *testing.T) {
	b := s.newBackend(t)
	bx := s.start(t, b)
	bx.waitHealthy()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, _ = bx.invoke(ctx, map[string]any{"op": "crash"}, nil)
	bx.waitDone(20 * time.Second)
	if r := bx.exec(ctx, "echo hi"); r.err == nil || r.started {
		t.Errorf("Exec after the agent exited: %+v; want an error, and no start", r)
	}
}
