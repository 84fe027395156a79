package session_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/sandboxfake"
	"github.com/berth-dev/berth/internal/session"
)

// lockedBuffer is one writer for both of a command's streams.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// withoutLogs runs the manager without agent logs: their pump waits in
// epoll, which a synctest bubble cannot see through, so its clock would
// never move. internal/daemon checks that a command's text reaches the log.
func withoutLogs(o *session.Options) { o.LogDir = "" }

// command runs text in sp's session.
func (h *harness) command(sp session.Spec, text string, timeout time.Duration) (session.CommandResult, string, string, error) {
	c, err := h.m.AcquireCommand(context.Background(), sp)
	if err != nil {
		return session.CommandResult{}, "", "", err
	}
	defer c.Release()
	var out, errw lockedBuffer
	res, err := c.Exec(context.Background(), session.Command{Text: text, Timeout: timeout, Stdout: &out, Stderr: &errw})
	return res, out.String(), errw.String(), err
}

func TestCommandStartsTheSessionAndRunsInIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, withoutLogs)
		sp := spec("command-session-0123456789012345678901", 15*time.Minute, time.Hour)
		res, out, errOut, err := h.command(sp, "echo hi; echo oops >&2; exit 3", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 3 || res.TimedOut || out != "hi\n" || errOut != "oops\n" {
			t.Fatalf("got %+v, stdout %q, stderr %q", res, out, errOut)
		}
		if h.fake.Live() != 1 {
			t.Fatalf("%d sandboxes live, want the one the command started", h.fake.Live())
		}
		// An invocation lands in the same sandbox, and the command did not
		// count as an invocation.
		rec := h.invoke(sp)
		if got := h.fake.Last().Commands(); len(got) != 1 || got[0] != "echo hi; echo oops >&2; exit 3" {
			t.Fatalf("the sandbox ran %q", got)
		}
		var live session.Info
		for _, in := range h.m.Live() {
			if in.ID == rec.ID {
				live = in
			}
		}
		if live.Invocations != 1 {
			t.Fatalf("%d invocations counted, want 1", live.Invocations)
		}
	})
}

func TestCommandTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, withoutLogs)
		sp := spec("command-timeout-0123456789012345678901", 15*time.Minute, time.Hour)
		start := time.Now()
		res, out, _, err := h.command(sp, "echo before; sleep 100; echo after", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !res.TimedOut || res.ExitCode != api.ExitCodeTimedOut || out != "before\n" {
			t.Fatalf("got %+v, stdout %q; want a timeout after the first line", res, out)
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Fatalf("the command ended after %s, want its 2s timeout", took)
		}
		synctest.Wait()
		if n := h.fake.Last().Running(); n != 0 {
			t.Fatalf("%d commands still running", n)
		}
	})
}

func TestCommandHoldsOffIdleAndIgnoresConcurrencyPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, withoutLogs)
		sp := withPolicy(spec("command-policy-01234567890123456789012", time.Minute, time.Hour),
			registry.SessionPolicy{Concurrency: registry.ConcurrencyReject})
		h.invoke(sp)
		// An invocation holds the session's only turn, and a command still runs.
		first := make(chan error, 1)
		go func() { first <- h.call(sp, 10_000) }()
		synctest.Wait()
		res, _, _, err := h.command(sp, "echo beside", time.Hour)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("a command beside a running invocation: %+v, %v", res, err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		// A command alone, for five times the idle timeout, keeps the session.
		res, _, _, err = h.command(sp, "sleep 300; exit 0", time.Hour)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("a long command: %+v, %v", res, err)
		}
		if h.fake.Live() != 1 || len(h.fake.Handles()) != 1 {
			t.Fatalf("%d sandboxes live of %d started, want the one session", h.fake.Live(), len(h.fake.Handles()))
		}
	})
}

func TestCommandCancelledByCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, withoutLogs)
		sp := spec("command-cancel-01234567890123456789012", 15*time.Minute, time.Hour)
		c, err := h.m.AcquireCommand(context.Background(), sp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, session.Command{Text: "sleep 100", Timeout: time.Hour})
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled command: %v", err)
		}
		if n := h.fake.Last().Running(); n != 0 {
			t.Fatalf("%d commands still running", n)
		}
	})
}

func TestCommandRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, withoutLogs)
		sp := spec("command-refused-0123456789012345678901", 15*time.Minute, time.Hour)
		off := false
		sp.Settings.Commands = &off
		if _, _, _, err := h.command(sp, "echo x", time.Minute); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Fatalf("commands: false: %v, want permission denied", err)
		}
		if h.fake.Live() != 0 {
			t.Fatal("a refused command started a session")
		}

		// A session bound to one user refuses another's command.
		sp = withPolicy(spec("command-bound-01234567890123456789012", 15*time.Minute, time.Hour),
			registry.SessionPolicy{BindUser: true})
		sp.UserID = "alice"
		h.invoke(sp)
		sp.UserID = "mallory"
		if _, _, _, err := h.command(sp, "echo x", time.Minute); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Fatalf("another user's command: %v, want permission denied", err)
		}
		if got := h.fake.Last().Commands(); len(got) != 0 {
			t.Fatalf("the sandbox ran %q", got)
		}
	})
}

func TestCommandOnSettlingSessionIsRetryable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, withoutLogs)
		sp := spec("command-settling-012345678901234567890", 15*time.Minute, time.Hour)
		for k, v := range envMap((sandboxfake.Script{StartDelay: 5 * time.Second, IgnoreTerm: true}).Env()) {
			if sp.Settings.Env == nil {
				sp.Settings.Env = map[string]string{}
			}
			sp.Settings.Env[k] = v
		}
		// Another call is starting the session: the command is told to retry.
		started := make(chan error, 1)
		go func() { started <- h.call(sp, 0) }()
		synctest.Wait()
		if _, _, _, err := h.command(sp, "echo x", time.Minute); !errors.Is(err, session.ErrSettling) ||
			!errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("a command on a starting session: %v, want ErrSettling", err)
		}
		if err := <-started; err != nil {
			t.Fatal(err)
		}

		// A command whose session stops under it ends with ErrEnded; while
		// the agent takes its grace to die, commands are told to retry.
		c, err := h.m.AcquireCommand(context.Background(), sp)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(context.Background(), session.Command{Text: "sleep 100", Timeout: time.Hour})
			c.Release()
			done <- err
		}()
		synctest.Wait()
		stopped := make(chan error, 1)
		go func() { stopped <- h.m.Stop(context.Background(), session.StopRequest{Key: sp.Key}) }()
		if err := <-done; !errors.Is(err, session.ErrEnded) {
			t.Fatalf("a command whose session stopped: %v, want ErrEnded", err)
		}
		synctest.Wait() // the agent ignores SIGTERM: teardown waits out the grace
		if _, _, _, err := h.command(sp, "echo x", time.Minute); !errors.Is(err, session.ErrSettling) {
			t.Fatalf("a command on a stopping session: %v, want ErrSettling", err)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}

		// The command's own start is waited for, not refused.
		res, out, _, err := h.command(spec("command-fresh-0123456789012345678901234", 15*time.Minute, time.Hour), "echo fresh", time.Minute)
		if err != nil || res.ExitCode != 0 || out != "fresh\n" {
			t.Fatalf("a command on a new session: %+v %q %v", res, out, err)
		}
	})
}

func envMap(entries []string) map[string]string {
	m := map[string]string{}
	for _, e := range entries {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}
