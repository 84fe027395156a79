package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
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

// commandCase is one InvokeAgentRuntimeCommand the SDK scripts make.
type commandCase struct {
	Name    string `json:"name"`
	ARN     string `json:"arn"`
	Session string `json:"session"`
	Command string `json:"command"`
	Timeout int    `json:"timeout,omitempty"`
}

// commandsBerth serves the tutorial agent on each backend, and one runtime
// with commands off.
func commandsBerth(t *testing.T) (*berth, []string) {
	t.Helper()
	off := false
	agent := buildTutorial(t)
	runtimes := []config.Runtime{
		{Name: "process", Settings: registry.Settings{Command: []string{agent}, Sandbox: registry.BackendProcess}},
		{Name: "nocommands", Settings: registry.Settings{Command: []string{agent}, Commands: &off}},
	}
	names := []string{"process"}
	if linux.Available() == nil {
		runtimes = append(runtimes, config.Runtime{Name: "linux", Settings: registry.Settings{Command: []string{agent}, Sandbox: registry.BackendLinux}})
		names = append(names, "linux")
	}
	return startBerth(t, runtimes), names
}

// commandCases are the cases each SDK runs, on each backend.
func commandCases(t *testing.T, b *berth, backends []string) []commandCase {
	var cases []commandCase
	for _, be := range backends {
		sid := "sdk-command-" + uuid.NewString()
		arn := b.arn(t, be)
		cases = append(cases,
			commandCase{Name: be + " output", ARN: arn, Session: sid, Command: `echo hi; echo oops >&2; exit 3`},
			commandCase{Name: be + " timeout", ARN: arn, Session: sid, Command: `echo before; sleep 30`, Timeout: 1},
		)
	}
	return append(cases,
		commandCase{Name: "unknown runtime", ARN: "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/nosuch-0123456789",
			Session: "sdk-command-" + uuid.NewString(), Command: "true"},
		commandCase{Name: "commands off", ARN: b.arn(t, "nocommands"), Session: "sdk-command-" + uuid.NewString(), Command: "true"},
	)
}

// runCommandClient runs an SDK script over cases and decodes its report.
func runCommandClient(t *testing.T, b *berth, cases []commandCase, name string, args ...string) map[string]commandOutcome {
	t.Helper()
	in, _ := json.Marshal(cases)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, append(args, b.d.URL())...)
	cmd.Env = clientEnv()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(name), err, stderr.String())
	}
	var got map[string]commandOutcome
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	return got
}

// checkCommands checks what an SDK decoded for each case.
func checkCommands(t *testing.T, cases []commandCase, got map[string]commandOutcome) {
	t.Helper()
	for _, c := range cases {
		o, ok := got[c.Name]
		if !ok {
			t.Errorf("%s: no outcome", c.Name)
			continue
		}
		switch {
		case strings.HasSuffix(c.Name, " output"):
			// contentStart, contentDelta..., contentStop, in that order.
			var stdoutText, stderrText string
			for i, e := range o.Events {
				ch := e.Chunk
				switch {
				case i == 0 && ch.ContentStart != nil:
				case i == len(o.Events)-1 && ch.ContentStop != nil:
					if *ch.ContentStop != (api.ContentStop{ExitCode: 3, Status: api.CommandCompleted}) {
						t.Errorf("%s: contentStop %+v, want exit 3 COMPLETED", c.Name, *ch.ContentStop)
					}
				case i > 0 && i < len(o.Events)-1 && ch.ContentDelta != nil:
					stdoutText += ch.ContentDelta.Stdout
					stderrText += ch.ContentDelta.Stderr
				default:
					t.Errorf("%s: event %d of %d: %+v", c.Name, i, len(o.Events), ch)
				}
			}
			if len(o.Events) < 3 || stdoutText != "hi\n" || stderrText != "oops\n" || o.Session != c.Session ||
				o.ContentType != api.ContentTypeEventStream || o.StreamError != "" || o.Error != "" {
				t.Errorf("%s: %+v", c.Name, o)
			}
		case strings.HasSuffix(c.Name, " timeout"):
			n := len(o.Events)
			if n < 2 || o.Events[n-1].Chunk.ContentStop == nil ||
				*o.Events[n-1].Chunk.ContentStop != (api.ContentStop{ExitCode: api.ExitCodeTimedOut, Status: api.CommandTimedOut}) {
				t.Errorf("%s: %+v", c.Name, o)
			}
		case c.Name == "unknown runtime":
			if o.Error != "ResourceNotFoundException" || o.Status != 404 {
				t.Errorf("%s: %+v", c.Name, o)
			}
		case c.Name == "commands off":
			if o.Error != "AccessDeniedException" || o.Status != 403 {
				t.Errorf("%s: %+v", c.Name, o)
			}
		}
	}
}

// TestCommandsBoto3 runs commands through boto3's
// invoke_agent_runtime_command and reads the stream as boto3 decodes it.
func TestCommandsBoto3(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	b, backends := commandsBerth(t)
	cases := commandCases(t, b, backends)
	checkCommands(t, cases, runCommandClient(t, b, cases, python, filepath.Join(repoRoot(t), "internal", "compat", "testdata", "command_client.py")))
}

// TestCommandsJSv3 does the same through the AWS SDK for JavaScript v3's
// InvokeAgentRuntimeCommandCommand.
func TestCommandsJSv3(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	project := npmProject(t, "examples/clients")
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "compat", "testdata", "command-client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "command-client.mjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(project, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	b, backends := commandsBerth(t)
	cases := commandCases(t, b, backends)
	checkCommands(t, cases, runCommandClient(t, b, cases, node, script))
}
