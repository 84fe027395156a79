package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// invokeNew starts a session of echo and returns its runtime session ID,
// as invoke prints it.
func invokeNew(t *testing.T, args ...string) string {
	t.Helper()
	_, errOut, err := berth(t, append([]string{"invoke", "--runtime", "echo"}, append(args, `{"op":"echo"}`)...)...)
	if err != nil {
		t.Fatal(err)
	}
	sid, ok := strings.CutPrefix(strings.TrimSpace(errOut), "session: ")
	if !ok {
		t.Fatalf("invoke printed no session ID: %q", errOut)
	}
	return sid
}

// TestSessionsTakeTheRuntimeSessionID: the ID invoke prints is what the
// sessions commands take, with or without --runtime; once the session
// ends and comes back, it names the new incarnation. The listing shows it
// whole, with the runtime's name.
func TestSessionsTakeTheRuntimeSessionID(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())
	sid := invokeNew(t)

	out, _, err := berth(t, "sessions", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SESSION ") {
		t.Fatalf("list:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != sid || f[1] != "echo" || f[2] != "DEFAULT" {
		t.Fatalf("list row %q: want the whole session ID %s, runtime echo, endpoint DEFAULT", lines[1], sid)
	}

	for _, args := range [][]string{{"sessions", "show", sid}, {"sessions", "show", "--runtime", "echo", sid}} {
		out, _, err := berth(t, args...)
		if err != nil || !strings.Contains(out, sid) || !strings.Contains(out, "echo (echo-") || !strings.Contains(out, "testagent: stdout start") {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, _, err := berth(t, "sessions", "logs", sid); err != nil || !strings.Contains(out, "testagent: stderr start") {
		t.Fatalf("logs by session ID: %v\n%s", err, out)
	}
	if _, _, err := berth(t, "sessions", "show", "--runtime", "echo", "no-such-session-0123456789abcdefghijkl"); err == nil {
		t.Fatal("show of an unknown session ID in echo succeeded")
	}
	if _, _, err := berth(t, "sessions", "show", "no-such-session-0123456789abcdefghijkl"); err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("show of an unknown session ID: %v", err)
	}
	if out, _, err := berth(t, "sessions", "stop", sid); err != nil || !strings.Contains(out, "stopped session "+sid+" of echo") {
		t.Fatalf("stop by session ID: %v %q", err, out)
	}

	// The same ID again: a new incarnation, which the ID now names.
	if got := invokeNew(t, "--session", sid); got != sid {
		t.Fatalf("continued %s as %s", sid, got)
	}
	var l api.SessionList
	out, _, err = berth(t, "sessions", "list", "--session", sid, "--json")
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Sessions) != 2 {
		t.Fatalf("list --session: %v\n%s", err, out)
	}
	if l.Sessions[0].Runtime != "echo" || !l.Sessions[0].EndedAt.IsZero() || l.Sessions[1].EndedAt.IsZero() {
		t.Fatalf("incarnations, newest first: %+v", l.Sessions)
	}
	var shown api.Session
	out, _, err = berth(t, "sessions", "show", "--json", sid)
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.ID != l.Sessions[0].ID {
		t.Fatalf("show %s: want the live incarnation %s: %v\n%s", sid, l.Sessions[0].ID, err, out)
	}
	// -q: the incarnations' IDs, one a line, which the commands take too.
	out, _, err = berth(t, "sessions", "list", "-q", "--state", "live")
	if err != nil || strings.TrimSpace(out) != l.Sessions[0].ID {
		t.Fatalf("list -q: %v %q", err, out)
	}
	if _, _, err := berth(t, "sessions", "stop", strings.TrimSpace(out)); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer that a command writes to while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestLogsOfARuntime: berth logs RUNTIME prints every live session's log,
// each line prefixed by its session ID; -f also picks up sessions that
// start later, until interrupted. berth logs SESSION prints one.
func TestLogsOfARuntime(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())
	a, b := invokeNew(t), invokeNew(t)

	out, _, err := berth(t, "logs", "echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{a, b} {
		if !strings.Contains(out, sid+" | testagent: stdout start") {
			t.Fatalf("logs echo lacks %s's lines:\n%s", sid, out)
		}
	}
	out, _, err = berth(t, "logs", a)
	if err != nil || !strings.Contains(out, "testagent: stdout start") || strings.Contains(out, " | ") {
		t.Fatalf("logs SESSION: %v\n%s", err, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetOut(pw)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"logs", "-f", "echo"})
		err := root.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	waitLine := func(want string) {
		t.Helper()
		for lines.Scan() {
			if strings.Contains(lines.Text(), want) {
				return
			}
		}
		t.Fatalf("logs -f ended before %q", want)
	}
	waitLine(a + " | testagent: stdout start")
	c := invokeNew(t)
	waitLine(c + " | testagent: stdout start")
	if _, _, err := berth(t, "sessions", "stop", b); err != nil {
		t.Fatal(err)
	}
	waitLine(b + " | testagent: received SIGTERM")
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatalf("logs -f, interrupted: %v", err)
	}
}

// TestQuietAndVersion: -q is quiet, as in docker; --qualifier keeps its
// long form; --version answers.
func TestQuietAndVersion(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())

	out, errOut, err := berth(t, "invoke", "-q", "--runtime", "echo", "--qualifier", "DEFAULT", `{"op":"echo"}`)
	if err != nil || errOut != "" || !strings.Contains(out, `"count":1`) {
		t.Fatalf("invoke -q: %v, stderr %q, stdout %q", err, errOut, out)
	}
	if out, _, err := berth(t, "runtimes", "list", "-q"); err != nil || out != "echo\n" {
		t.Fatalf("runtimes list -q: %v %q", err, out)
	}
	if _, _, err := berth(t, "invoke", "--runtime", "echo", "-q", "DEFAULT", `{}`); err == nil {
		t.Fatal("-q still takes a qualifier")
	}
	// delete asks first; with no terminal to ask on it needs --yes.
	if _, _, err := berth(t, "runtimes", "delete", "echo"); err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("delete without --yes: %v", err)
	}
	if out, _, err := berth(t, "runtimes", "list", "-q"); err != nil || out != "echo\n" {
		t.Fatalf("after an unconfirmed delete: %v %q", err, out)
	}
	// With --yes the request goes out (and berth refuses it: the config
	// file owns echo).
	if _, _, err := berth(t, "runtimes", "delete", "--yes", "echo"); err == nil || strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("delete --yes of a config runtime: %v", err)
	}
	if out, _, err := berth(t, "--version"); err != nil || out != "berth "+version+"\n" {
		t.Fatalf("--version: %v %q", err, out)
	}
}

// TestServeLogFormat: berth serve logs JSON lines when its stderr is not a
// terminal, and text with --log-format text.
func TestServeLogFormat(t *testing.T) {
	for _, c := range []struct {
		args  []string
		check func(line string) bool
	}{
		{nil, func(l string) bool { return json.Valid([]byte(l)) && strings.Contains(l, `"msg":"shutting down"`) }},
		{[]string{"--log-format", "text"}, func(l string) bool { return strings.Contains(l, `level=INFO msg="shutting down"`) }},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var errOut syncBuffer
		pr, pw := io.Pipe()
		root := newRoot()
		root.SetOut(pw)
		root.SetErr(&errOut)
		root.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, c.args...))
		done := make(chan error, 1)
		go func() {
			err := root.ExecuteContext(ctx)
			pw.Close()
			done <- err
		}()
		sc := bufio.NewScanner(pr)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "berth listening on") {
		}
		go io.Copy(io.Discard, pr)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve %v: %v\n%s", c.args, err, errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if !c.check(lines[len(lines)-1]) {
			t.Errorf("serve %v logged:\n%s", c.args, errOut.String())
		}
	}
	if _, _, err := berth(t, "serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "xml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("--log-format xml: %v", err)
	}
}

// TestProgress: a wait shows a spinner only after a second, and only where
// asked (a terminal); stopping it erases the line.
func TestProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w syncBuffer
		stop := progress(&w, true, "waiting for echo")
		time.Sleep(progressDelay / 2)
		synctest.Wait()
		if w.String() != "" {
			t.Fatalf("spinner before %s: %q", progressDelay, w.String())
		}
		time.Sleep(progressDelay + 250*time.Millisecond)
		synctest.Wait()
		if !strings.Contains(w.String(), "waiting for echo (1s)") {
			t.Fatalf("no spinner after %s: %q", progressDelay, w.String())
		}
		stop()
		if !strings.HasSuffix(w.String(), "\r\033[K") {
			t.Fatalf("the spinner's line was not erased: %q", w.String())
		}
		stop() // twice is harmless

		var none syncBuffer
		stop = progress(&none, false, "x")
		time.Sleep(2 * progressDelay)
		stop()
		if none.String() != "" {
			t.Fatalf("a spinner where none was asked for: %q", none.String())
		}
	})
}

// TestInvokeHabits: @file payloads; a payload that is not JSON is refused
// before it leaves unless --raw; --session last continues the last
// session; -o json prints one envelope.
func TestInvokeHabits(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())

	if _, _, err := berth(t, "invoke", "--runtime", "echo", "--session", "last", `{}`); err == nil || !strings.Contains(err.Error(), "no session of echo remembered") {
		t.Fatalf("--session last with none: %v", err)
	}
	file := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(file, []byte(`{"op":"echo","from":"file"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := berth(t, "invoke", "--runtime", "echo", "@"+file)
	if err != nil || !strings.Contains(out, `"from":"file"`) {
		t.Fatalf("@file: %v %q", err, out)
	}
	sid := strings.TrimPrefix(strings.TrimSpace(errOut), "session: ")

	_, _, err = berth(t, "invoke", "--runtime", "echo", "--session", "last", `{op: echo}`)
	if err == nil || !strings.Contains(err.Error(), "not JSON") || !strings.Contains(err.Error(), "--raw") {
		t.Fatalf("a payload that is not JSON: %v", err)
	}
	// Refused locally: the session saw no second call.
	if out, _, err := berth(t, "invoke", "--runtime", "echo", "--session", "last", `{"op":"echo"}`); err != nil || !strings.Contains(out, `"count":2`) {
		t.Fatalf("--session last: %v %q", err, out)
	}
	// --raw sends it as it is: the agent gets it.
	out, _, err = berth(t, "invoke", "--runtime", "echo", "--session", sid, "--raw", `not json`)
	if err != nil || !strings.Contains(out, "not json") {
		t.Fatalf("--raw: %v %q", err, out)
	}

	out, _, err = berth(t, "invoke", "--runtime", "echo", "--session", sid, "-o", "json", `{"op":"echo"}`)
	var env struct {
		SessionID   string          `json:"sessionId"`
		StatusCode  int             `json:"statusCode"`
		ContentType string          `json:"contentType"`
		Body        json.RawMessage `json:"body"`
	}
	if err != nil || json.Unmarshal([]byte(out), &env) != nil {
		t.Fatalf("-o json: %v %q", err, out)
	}
	var body struct {
		Count int `json:"count"`
	}
	if env.SessionID != sid || env.StatusCode != 200 || !strings.HasPrefix(env.ContentType, "application/json") || json.Unmarshal(env.Body, &body) != nil || body.Count < 3 {
		t.Fatalf("-o json envelope: %+v", env)
	}
	out, _, err = berth(t, "invoke", "--runtime", "echo", "--session", sid, "-o", "json", `{"op":"sse","n":2}`)
	var sse struct {
		Events []map[string]int `json:"events"`
	}
	if err != nil || json.Unmarshal([]byte(out), &sse) != nil || len(sse.Events) != 2 || sse.Events[1]["i"] != 1 {
		t.Fatalf("-o json of a stream: %v %q", err, out)
	}
}

// TestCompletion: the shell completes runtime names and live session IDs
// from the server.
func TestCompletion(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())
	sid := invokeNew(t)
	complete := func(args ...string) []string {
		t.Helper()
		out, _, err := berth(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var words []string
		for line := range strings.Lines(out) {
			if w, _, _ := strings.Cut(strings.TrimSpace(line), "\t"); w != "" && !strings.HasPrefix(w, ":") {
				words = append(words, w)
			}
		}
		return words
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"invoke", "--runtime", ""}, "echo"},
		{[]string{"invoke", "--runtime", "echo", "--session", ""}, sid},
		{[]string{"runtimes", "show", ""}, "echo"},
		{[]string{"sessions", "show", ""}, sid},
		{[]string{"sessions", "stop", "--runtime", "echo", ""}, sid},
		{[]string{"sessions", "list", "--runtime", ""}, "echo"},
		{[]string{"logs", ""}, "echo"},
		{[]string{"logs", ""}, sid},
	} {
		if got := complete(c.args...); !slices.Contains(got, c.want) {
			t.Errorf("berth %s<TAB>: %q, want %s among them", strings.Join(c.args, " "), got, c.want)
		}
	}
	if got := complete("sessions", "show", sid, ""); len(got) != 0 {
		t.Errorf("a second SESSION argument completes to %q", got)
	}
}

// TestStartFailureExplained: when the agent does not start, invoke says
// which command in which directory, and how its log ends.
func TestStartFailureExplained(t *testing.T) {
	agent := sandboxtest.BuildAgent(t)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	workdir := t.TempDir()
	cfg.Runtimes = []config.Runtime{{Name: "crashy", Settings: registry.Settings{Command: []string{agent}, Workdir: workdir,
		Env: map[string]string{"AGENT_MODE": "crash-on-start"}}}}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	t.Setenv("BERTH_ENDPOINT", d.URL())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())

	_, _, err = berth(t, "invoke", "--runtime", "crashy", `{}`)
	var sf *startFailure
	if !errors.As(err, &sf) {
		t.Fatalf("a start failure without its explanation: %v", err)
	}
	for _, want := range []string{"command: " + agent, "in:      " + workdir, "the agent's log ends:", "testagent: stderr start"} {
		if !strings.Contains(sf.detail, want) {
			t.Errorf("the explanation lacks %q:\n%s", want, sf.detail)
		}
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Type != api.ErrRuntimeClient {
		t.Errorf("the AgentCore error is lost: %v", err)
	}
}

// TestOutputFormats: every listing takes -o table|json|yaml, --json is
// -o json, and YAML has the API's field names.
func TestOutputFormats(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())
	sid := invokeNew(t)

	for _, args := range [][]string{{"sessions", "list"}, {"sessions", "show", sid}, {"runtimes", "list"}, {"runtimes", "show", "echo"}, {"runtimes", "versions", "echo"}, {"runtimes", "endpoints", "list", "echo"}} {
		asJSON, _, err := berth(t, append(args, "-o", "json")...)
		if err != nil {
			t.Fatalf("%v -o json: %v", args, err)
		}
		alias, _, err := berth(t, append(args, "--json")...)
		if err != nil || alias != asJSON {
			t.Errorf("%v: --json differs from -o json: %v\n%s\n%s", args, err, alias, asJSON)
		}
		asYAML, _, err := berth(t, append(args, "-o", "yaml")...)
		if err != nil {
			t.Fatalf("%v -o yaml: %v", args, err)
		}
		var fromJSON, fromYAML any
		if err := json.Unmarshal([]byte(asJSON), &fromJSON); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := yaml.Unmarshal([]byte(asYAML), &fromYAML); err != nil {
			t.Fatalf("%v -o yaml: %v\n%s", args, err, asYAML)
		}
		// The same data: compare as JSON.
		j1, _ := json.Marshal(fromJSON)
		j2, _ := json.Marshal(fromYAML)
		if string(j1) != string(j2) {
			t.Errorf("%v: YAML and JSON differ:\n%s\n%s", args, j1, j2)
		}
		table, _, err := berth(t, append(args, "-o", "table")...)
		if err != nil || strings.HasPrefix(strings.TrimSpace(table), "{") {
			t.Errorf("%v -o table: %v\n%s", args, err, table)
		}
	}
	if out, _, _ := berth(t, "sessions", "show", sid, "-o", "yaml"); !strings.Contains(out, "sessionId: "+sid) {
		t.Errorf("YAML without the API's names:\n%s", out)
	}
	if _, _, err := berth(t, "sessions", "list", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "want table, json or yaml") {
		t.Errorf("-o xml: %v", err)
	}
}
