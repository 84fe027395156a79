package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

func startBerth(t *testing.T) *daemon.Daemon {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Runtimes = []config.Runtime{{Name: "echo", Settings: registry.Settings{Command: []string{sandboxtest.BuildAgent(t)}}}}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	// invoke remembers sessions in the user's cache directory: a test's
	// own, after BuildAgent has used the real one.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	return d
}

func berth(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestInvokeContinueAndStop(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())

	out, errOut, err := berth(t, "invoke", "--runtime", "echo", "-H", "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tier: gold", `{"op":"echo"}`)
	if err != nil {
		t.Fatal(err)
	}
	sid, ok := strings.CutPrefix(strings.TrimSpace(errOut), "session: ")
	if !ok || len(sid) < 33 {
		t.Fatalf("no session ID printed: %q", errOut)
	}
	var first struct {
		Count   int                 `json:"count"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(out), &first); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if first.Count != 1 || first.Headers["X-Amzn-Bedrock-Agentcore-Runtime-Custom-Tier"][0] != "gold" {
		t.Fatalf("first call: %+v", first)
	}

	out, _, err = berth(t, "invoke", "--runtime", "echo", "--session", sid, `{"op":"echo"}`)
	if err != nil || !strings.Contains(out, `"count":2`) {
		t.Fatalf("continue: %v %q", err, out)
	}

	// SSE events print one per line as they arrive.
	out, _, err = berth(t, "invoke", "--runtime", "echo", "--session", sid, `{"op":"sse","n":3,"delay_ms":10}`)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 2 || !strings.HasPrefix(out, `{"i":`) {
		t.Fatalf("sse: %v %q", err, out)
	}

	if out, _, err = berth(t, "stop-session", "--runtime", "echo", "--session", sid); err != nil || !strings.Contains(out, sid) {
		t.Fatalf("stop-session: %v %q", err, out)
	}
	_, _, err = berth(t, "stop-session", "--runtime", "echo", "--session", sid)
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("second stop: %v", err)
	}
	_, _, err = berth(t, "invoke", "--runtime", "nope", `{}`)
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("unknown runtime: %v", err)
	}
}

func TestSessionsCommands(t *testing.T) {
	d := startBerth(t)
	t.Setenv("BERTH_ENDPOINT", d.URL())
	var sids []string
	for _, user := range []string{"alice", "bob"} {
		_, errOut, err := berth(t, "invoke", "--runtime", "echo", "--user-id", user, `{"op":"echo"}`)
		if err != nil {
			t.Fatal(err)
		}
		sids = append(sids, strings.TrimPrefix(strings.TrimSpace(errOut), "session: "))
	}
	list := func(args ...string) api.SessionList {
		t.Helper()
		out, _, err := berth(t, append([]string{"sessions", "list", "--json"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var l api.SessionList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return l
	}
	live := list("--state", "live")
	if len(live.Sessions) != 2 || live.Sessions[0].SessionID != sids[1] {
		t.Fatalf("live sessions, newest first: %+v", live.Sessions)
	}
	s := live.Sessions[0]
	if s.State != "idle" && s.State != "active" || s.Invocations != 1 || s.UserID != "bob" || s.Version != 1 {
		t.Fatalf("session record: %+v", s)
	}
	if bob := list("--user", "bob"); len(bob.Sessions) != 1 {
		t.Fatalf("user filter: %+v", bob.Sessions)
	}
	page := list("--limit", "1")
	if len(page.Sessions) != 1 || page.NextCursor == "" {
		t.Fatalf("page 1: %+v", page)
	}
	if next := list("--limit", "1", "--cursor", page.NextCursor); len(next.Sessions) != 1 || next.Sessions[0].ID == page.Sessions[0].ID {
		t.Fatalf("page 2: %+v", next)
	}

	out, _, err := berth(t, "sessions", "show", s.ID)
	if err != nil || !strings.Contains(out, "testagent: stdout start") || !strings.Contains(out, "memory") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	out, _, err = berth(t, "sessions", "logs", s.ID)
	if err != nil || !strings.Contains(out, "testagent: stderr start") {
		t.Fatalf("logs: %v\n%s", err, out)
	}
	if out, _, err = berth(t, "sessions", "stop", s.ID); err != nil || !strings.Contains(out, "stopped") {
		t.Fatalf("stop: %v %s", err, out)
	}
	ended := list("--state", "terminated")
	if len(ended.Sessions) != 1 || ended.Sessions[0].EndReason != "stopped" || ended.Sessions[0].EndedAt.IsZero() {
		t.Fatalf("terminated: %+v", ended.Sessions)
	}
	if _, _, err = berth(t, "sessions", "stop", s.ID); err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("second stop: %v", err)
	}
	// logs --follow prints a live session's log as it grows and ends when
	// the session does.
	other := list("--state", "live").Sessions[0]
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetOut(pw)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"sessions", "logs", "--follow", other.ID})
		err := root.ExecuteContext(context.Background())
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	for lines.Scan() && !strings.Contains(lines.Text(), "testagent: stderr start") {
	}
	// Following has begun, with the session live: the agent's goodbye is
	// written after this and must still arrive.
	if _, _, err := berth(t, "sessions", "stop", other.ID); err != nil {
		t.Fatal(err)
	}
	var after []string
	for lines.Scan() {
		after = append(after, lines.Text())
	}
	if err := <-done; err != nil {
		t.Fatalf("logs --follow: %v", err)
	}
	if !slices.ContainsFunc(after, func(l string) bool { return strings.Contains(l, "testagent: received SIGTERM") }) {
		t.Fatalf("logs --follow ended without the lines written after the stop: %q", after)
	}
}
