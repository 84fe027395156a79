package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
)

// The tutorial's client, as users already have it, run against berth:
// examples/clients holds the same conversation written for boto3 and for
// the AWS SDK for JavaScript v3. Both print a JSON report of every exchange,
// which these tests check against the tutorial's expectations.

// clientReport is what the example clients print with --json.
type clientReport struct {
	Client string       `json:"client"`
	SentTo []string     `json:"sent_to"` // every origin a request went to
	Steps  []clientStep `json:"steps"`
	Stop   struct {
		StatusCode       int    `json:"status_code"`
		RuntimeSessionID string `json:"runtime_session_id"`
	} `json:"stop"`
	SecondStop struct {
		Error      *string `json:"error"`
		StatusCode int     `json:"status_code"`
		Message    string  `json:"message"`
	} `json:"second_stop"`
}

type clientStep struct {
	Name             string          `json:"name"`
	Session          string          `json:"session"`
	Payload          json.RawMessage `json:"payload"`
	StatusCode       int             `json:"status_code"`
	ContentType      string          `json:"content_type"`
	RuntimeSessionID string          `json:"runtime_session_id"`
	Events           []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"events"`
	Reply *tutorialReply `json:"reply"`
}

// tutorialReply is the part of examples/tutorial's answer the checks read.
type tutorialReply struct {
	SessionID  string          `json:"session_id"`
	UserName   string          `json:"user_name"`
	Answer     string          `json:"answer"`
	Result     *float64        `json:"result"`
	Turn       int             `json:"turn"`
	Remembered []string        `json:"remembered"`
	Payload    json.RawMessage `json:"payload"`
	Instance   string          `json:"instance"`
}

// tutorialBerth serves examples/tutorial on the default sandbox backend.
func tutorialBerth(t *testing.T) (*berth, string) {
	t.Helper()
	return tutorialBerthWith(t)
}

func tutorialBerthWith(t *testing.T, mutate ...func(*config.Config)) (*berth, string) {
	t.Helper()
	b := startBerth(t, []config.Runtime{{Name: "tutorial", Settings: registry.Settings{Command: []string{buildTutorial(t)}}}}, mutate...)
	return b, b.arn(t, "tutorial")
}

// runClient runs an example client and decodes its report.
func runClient(t *testing.T, env []string, name string, args ...string) clientReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), strings.TrimRight(stderr.String(), "\n"))
	if err != nil {
		t.Fatalf("client failed: %v", err)
	}
	var r clientReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("decode client report: %v\n%s", err, stdout.String())
	}
	return r
}

// checkTutorial checks a client's report against the tutorial: continuity
// in one session, isolation from another, the context object, payload
// pass-through, streaming read line by line, and StopRuntimeSession.
func checkTutorial(t *testing.T, b *berth, r clientReport, wantEndpoint string) {
	t.Helper()
	if !slices.Equal(r.SentTo, []string{wantEndpoint}) {
		t.Errorf("%s sent requests to %q, want only %s", r.Client, r.SentTo, wantEndpoint)
	}
	steps := map[string]clientStep{}
	for _, s := range r.Steps {
		steps[s.Name] = s
		if s.StatusCode != 200 || s.RuntimeSessionID != s.Session {
			t.Errorf("%s: status %d, session %q; want 200 and %q", s.Name, s.StatusCode, s.RuntimeSessionID, s.Session)
		}
		if s.Reply == nil {
			t.Fatalf("%s: no reply", s.Name)
		}
		// The context object: the agent saw the session the client chose.
		if s.Reply.SessionID != s.Session {
			t.Errorf("%s: agent saw session %q, client sent %q", s.Name, s.Reply.SessionID, s.Session)
		}
		// Payload flexibility: the whole payload reached the agent.
		var sent, got any
		_ = json.Unmarshal(s.Payload, &sent)
		_ = json.Unmarshal(s.Reply.Payload, &got)
		if !jsonEqual(sent, got) {
			t.Errorf("%s: agent got payload %s, client sent %s", s.Name, s.Reply.Payload, s.Payload)
		}
	}
	weather, mul, add, fresh := steps["weather"], steps["multiply"], steps["add"], steps["new session"]
	if len(r.Steps) != 4 || weather.Reply == nil || mul.Reply == nil || add.Reply == nil || fresh.Reply == nil {
		t.Fatalf("report has steps %v, want weather, multiply, add, new session", slices.Collect(func(yield func(string) bool) {
			for _, s := range r.Steps {
				if !yield(s.Name) {
					return
				}
			}
		}))
	}
	for _, s := range []clientStep{weather, mul, fresh} {
		if !strings.HasPrefix(s.ContentType, "application/json") {
			t.Errorf("%s: content type %q, want application/json", s.Name, s.ContentType)
		}
	}

	// Continuity: one process served the whole first session, and it
	// remembered 2×5 when asked to add 34.
	if weather.Reply.Instance != mul.Reply.Instance || mul.Reply.Instance != add.Reply.Instance {
		t.Errorf("session 1 was served by several agent processes: %s, %s, %s",
			weather.Reply.Instance, mul.Reply.Instance, add.Reply.Instance)
	}
	if weather.Reply.UserName == "" || !strings.Contains(weather.Reply.Answer, weather.Reply.UserName) {
		t.Errorf("weather: answer %q does not greet the user (%q)", weather.Reply.Answer, weather.Reply.UserName)
	}
	if mul.Reply.Result == nil || *mul.Reply.Result != 2*5 {
		t.Errorf("2X5: result %v, answer %q", ptr(mul.Reply.Result), mul.Reply.Answer)
	} else if add.Reply.Result == nil || *add.Reply.Result != *mul.Reply.Result+34 {
		t.Errorf("and that plus 34: result %v after %v, answer %q", ptr(add.Reply.Result), *mul.Reply.Result, add.Reply.Answer)
	}
	if add.Reply.Turn != 3 || len(add.Reply.Remembered) != 3 {
		t.Errorf("the third prompt of session 1 is turn %d remembering %q", add.Reply.Turn, add.Reply.Remembered)
	}

	// Streaming, read the way the starter toolkit reads it.
	if !strings.HasPrefix(add.ContentType, "text/event-stream") {
		t.Errorf("add: content type %q, want text/event-stream", add.ContentType)
	}
	var text strings.Builder
	deltas := 0
	for _, ev := range add.Events {
		if ev.Type == "delta" {
			deltas++
			text.WriteString(ev.Text)
		}
	}
	if deltas < 2 || text.String() != add.Reply.Answer {
		t.Errorf("add: %d delta events spelling %q; want several spelling the answer %q", deltas, text.String(), add.Reply.Answer)
	}

	// Isolation: a new session is a new process with no earlier result.
	if fresh.Reply.Instance == mul.Reply.Instance {
		t.Errorf("the new session shares session 1's agent process %s", fresh.Reply.Instance)
	}
	if fresh.Reply.Result != nil || fresh.Reply.Turn != 1 || len(fresh.Reply.Remembered) != 1 {
		t.Errorf("the new session knew something: result %v, turn %d, remembered %q (answer %q)",
			ptr(fresh.Reply.Result), fresh.Reply.Turn, fresh.Reply.Remembered, fresh.Reply.Answer)
	}

	// StopRuntimeSession, then again: ResourceNotFoundException.
	if r.Stop.StatusCode != 200 || r.Stop.RuntimeSessionID != weather.Session {
		t.Errorf("stop: status %d, session %q", r.Stop.StatusCode, r.Stop.RuntimeSessionID)
	}
	if r.SecondStop.Error == nil || *r.SecondStop.Error != "ResourceNotFoundException" || r.SecondStop.StatusCode != 404 {
		t.Errorf("second stop: %+v, want ResourceNotFoundException (404)", r.SecondStop)
	}
	if _, ok := b.live(weather.Session); ok {
		t.Errorf("session 1 is still live after StopRuntimeSession")
	}
	if _, ok := b.live(fresh.Session); !ok {
		t.Errorf("session 2 ended, but only session 1 was stopped")
	}
}

func ptr(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// TestBoto3TutorialClient runs the tutorial's client calls through boto3,
// pointed at berth with endpoint_url and with AWS_ENDPOINT_URL_BEDROCK_AGENTCORE.
func TestBoto3TutorialClient(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	script := filepath.Join(repoRoot(t), "examples", "clients", "tutorial_client.py")
	b, arn := tutorialBerth(t)

	t.Run("endpoint_url", func(t *testing.T) {
		r := runClient(t, clientEnv(), python, script, "--json", "--endpoint-url", b.d.URL(), "--arn", arn)
		checkTutorial(t, b, r, b.d.URL())
	})
	t.Run("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", func(t *testing.T) {
		r := runClient(t, clientEnv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE="+b.d.URL()), python, script, "--json", "--arn", arn)
		checkTutorial(t, b, r, b.d.URL())
	})
}

// TestJSv3TutorialClient runs the same calls through the AWS SDK for
// JavaScript v3 (@aws-sdk/client-bedrock-agentcore from npm).
func TestJSv3TutorialClient(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	dir := npmProject(t, "examples/clients", "tutorial-client.mjs")
	script := filepath.Join(dir, "tutorial-client.mjs")
	b, arn := tutorialBerth(t)

	t.Run("endpoint", func(t *testing.T) {
		r := runClient(t, clientEnv(), node, script, "--json", "--endpoint-url", b.d.URL(), "--arn", arn)
		checkTutorial(t, b, r, b.d.URL())
	})
	t.Run("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", func(t *testing.T) {
		r := runClient(t, clientEnv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE="+b.d.URL()), node, script, "--json", "--arn", arn)
		checkTutorial(t, b, r, b.d.URL())
	})
}

// requireBoto3 returns python3 with a boto3 that knows AgentCore, or skips
// (fails under BERTH_TEST_REQUIRE=boto3).
func requireBoto3(t *testing.T) string {
	t.Helper()
	python, err := exec.LookPath("python3")
	testenv.Require(t, testenv.Boto3, err)
	// Debian's python3-boto3 imports but predates AgentCore.
	probe := `import boto3; s = boto3.session.Session().get_available_services(); assert "bedrock-agentcore" in s and "bedrock-agentcore-control" in s, "this boto3 does not know bedrock-agentcore"`
	if out, err := exec.Command(python, "-c", probe).CombinedOutput(); err != nil {
		testenv.Require(t, testenv.Boto3, fmt.Errorf("%s with boto3 that knows bedrock-agentcore: %v: %s", python, err, bytes.TrimSpace(out)))
	}
	return python
}

// TestPythonStdlibAgent runs the tutorial's boto3 client against an agent
// written with Python's standard library alone (examples/python-stdlib):
// the raw contract, no SDK, in the linux sandbox on port 8080.
func TestPythonStdlibAgent(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	testenv.Require(t, testenv.Linux, linux.Available())
	dir := filepath.Join(repoRoot(t), "examples", "python-stdlib")
	b := startBerth(t, []config.Runtime{{Name: "pyagent", Settings: registry.Settings{
		Command: []string{"python3", "agent.py"}, Workdir: dir, Sandbox: registry.BackendLinux}}})
	arn := b.arn(t, "pyagent")

	t.Run("the tutorial through boto3", func(t *testing.T) {
		script := filepath.Join(repoRoot(t), "examples", "clients", "tutorial_client.py")
		r := runClient(t, clientEnv(), python, script, "--json", "--endpoint-url", b.d.URL(), "--arn", arn)
		checkTutorial(t, b, r, b.d.URL())
	})

	// A single-threaded agent cannot answer /ping while it serves a call:
	// a call longer than the ping failures allow must not end the session.
	t.Run("a long call on a single-threaded agent", func(t *testing.T) {
		sid := newSessionID()
		first := b.tsInvoke(t, "pyagent", sid, map[string]any{"prompt": "hello"})
		long := b.tsInvoke(t, "pyagent", sid, map[string]any{"prompt": "2 x 3", "sleep": 4})
		after := b.tsInvoke(t, "pyagent", sid, map[string]any{"prompt": "still there?"})
		if first.Instance == "" || long.Instance != first.Instance || after.Instance != first.Instance {
			t.Fatalf("the session did not survive a 4 s call: instances %q, %q, %q", first.Instance, long.Instance, after.Instance)
		}
	})
}
