package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

func startBerth(t *testing.T) *daemon.Daemon {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Runtimes = []config.Runtime{{Name: "echo", Command: []string{sandboxtest.BuildAgent(t)}}}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
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
