package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/google/uuid"
)

// commandOutcome is what boto3 made of one InvokeAgentRuntimeCommand.
type commandOutcome struct {
	Events []struct {
		Chunk api.CommandChunk `json:"chunk"`
	} `json:"events"`
	Session     string `json:"session"`
	ContentType string `json:"content_type"`
	StreamError string `json:"stream_error"`
	Error       string `json:"error"`
	Status      int    `json:"status"`
}

// TestCommandsBoto3 runs commands through boto3's invoke_agent_runtime_command
// and reads the stream as boto3 decodes it, on the default backend.
func TestCommandsBoto3(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	off := false
	agent := buildTutorial(t)
	b := startBerth(t, []config.Runtime{
		{Name: "tutorial", Settings: registry.Settings{Command: []string{agent}}},
		{Name: "nocommands", Settings: registry.Settings{Command: []string{agent}, Commands: &off}},
	})
	sid := "boto3-command-" + uuid.NewString()
	arn := b.arn(t, "tutorial")
	type kase struct {
		Name    string `json:"name"`
		ARN     string `json:"arn"`
		Session string `json:"session"`
		Command string `json:"command"`
		Timeout int    `json:"timeout,omitempty"`
	}
	cases := []kase{
		{Name: "output", ARN: arn, Session: sid, Command: `echo hi; echo oops >&2; exit 3`},
		{Name: "timeout", ARN: arn, Session: sid, Command: `echo before; sleep 30`, Timeout: 1},
		{Name: "unknown runtime", ARN: "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/nosuch-0123456789", Session: sid, Command: "true"},
		{Name: "commands off", ARN: b.arn(t, "nocommands"), Session: sid, Command: "true"},
	}
	in, _ := json.Marshal(cases)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join(repoRoot(t), "internal", "compat", "testdata", "command_client.py"), b.d.URL())
	cmd.Env = clientEnv()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("boto3: %v\n%s", err, stderr.String())
	}
	var got map[string]commandOutcome
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}

	// output and exit code, in contentStart, contentDelta..., contentStop.
	o := got["output"]
	var stdoutText, stderrText string
	for i, e := range o.Events {
		c := e.Chunk
		switch {
		case i == 0:
			if c.ContentStart == nil {
				t.Fatalf("first event %+v, want contentStart", c)
			}
		case i == len(o.Events)-1:
			if s := c.ContentStop; s == nil || s.ExitCode != 3 || s.Status != api.CommandCompleted {
				t.Fatalf("last event %+v, want contentStop exit 3 COMPLETED", c)
			}
		case c.ContentDelta != nil:
			stdoutText += c.ContentDelta.Stdout
			stderrText += c.ContentDelta.Stderr
		default:
			t.Fatalf("event %d: %+v", i, c)
		}
	}
	if stdoutText != "hi\n" || stderrText != "oops\n" || o.Session != sid || o.ContentType != api.ContentTypeEventStream {
		t.Fatalf("boto3 read %+v", o)
	}

	o = got["timeout"]
	if n := len(o.Events); n < 2 || o.Events[n-1].Chunk.ContentStop == nil ||
		*o.Events[n-1].Chunk.ContentStop != (api.ContentStop{ExitCode: api.ExitCodeTimedOut, Status: api.CommandTimedOut}) {
		t.Fatalf("a timed-out command: %+v", o)
	}
	if o := got["unknown runtime"]; o.Error != "ResourceNotFoundException" || o.Status != 404 {
		t.Fatalf("unknown runtime: %+v", o)
	}
	if o := got["commands off"]; o.Error != "AccessDeniedException" || o.Status != 403 {
		t.Fatalf("commands off: %+v", o)
	}
}
