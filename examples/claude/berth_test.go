package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/app/apptest"
	"github.com/berth-dev/berth/examples/claude/internal/fakemodel"
	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"
)

// These tests run the agent under a real berth: the berth binary built
// from this repository, `berth serve` with a config file, and the official
// AWS SDK for Go as the client. berth's internal packages are out of reach
// from this module, so the binary is the interface, as it is for users.

var (
	buildOnce sync.Once
	buildDir  string
	berthBin  string
	buildErr  error
)

// repoRoot is the berth repository this module sits in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(data, []byte("module github.com/berth-dev/berth\n")) {
		t.Fatalf("%s is not the berth repository (%v)", root, err)
	}
	return root
}

// buildBerth builds the berth binary once per test run.
func buildBerth(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "berth-claude-test-")
		if buildErr != nil {
			return
		}
		berthBin = filepath.Join(buildDir, "berth")
		cmd := exec.Command("go", "build", "-o", berthBin, "./cmd/berth")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/berth: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return berthBin
}

// cleanupBuilds removes what buildBerth built; TestMain calls it.
func cleanupBuilds() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// berthServer is a running `berth serve`.
type berthServer struct {
	url  string
	arns map[string]string // runtime name → ARN
}

// berthRuntime is one runtime of the config file berth_test.go writes.
type berthRuntime struct {
	Name    string            `yaml:"name"`
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	Network string            `yaml:"network"`
	// Durability and SuspendAfter make the runtime's sessions durable.
	Durability   string `yaml:"durability,omitempty"`
	SuspendAfter string `yaml:"suspend_after,omitempty"`
}

func startBerth(t *testing.T, runtimes []berthRuntime) *berthServer {
	t.Helper()
	bin := buildBerth(t)
	dir := t.TempDir()
	cfg, err := yaml.Marshal(map[string]any{
		"listen":   "127.0.0.1:0",
		"data_dir": filepath.Join(dir, "data"),
		"runtimes": runtimes,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "berth.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Env = hermetic(nil)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start berth: %v", err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("berth serve exited: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("berth serve still running 30s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("berth logs:\n%s", logs.String())
		}
	})
	s := &berthServer{arns: map[string]string{}}
	timeout := time.After(60 * time.Second)
	for s.url == "" || len(s.arns) < len(runtimes) {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("berth serve stopped before it was ready:\n%s", logs.String())
			}
			if u, ok := strings.CutPrefix(line, "berth listening on "); ok {
				s.url = strings.TrimSpace(u)
			}
			if f := strings.Fields(line); len(f) == 3 && f[0] == "runtime" {
				s.arns[f[1]] = f[2]
			}
		case <-timeout:
			t.Fatalf("berth serve not ready after 60s:\n%s", logs.String())
		}
	}
	go func() {
		for range lines { // keep draining stdout
		}
	}()
	return s
}

// sdkChat is one session driven through the AWS SDK.
type sdkChat struct {
	t       *testing.T
	client  *bedrockagentcore.Client
	arn     string
	session string
	fake    *fakemodel.Server
	p       provider
}

func (c *sdkChat) ask(prompt string, stream bool) turnOutcome {
	t := c.t
	t.Helper()
	body, _ := json.Marshal(map[string]any{"prompt": prompt, "user_id": "1", "stream": stream})
	accept := "application/json"
	if stream {
		accept = "text/event-stream"
	}
	mark := len(c.fake.Requests())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.client.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn:  aws.String(c.arn),
		RuntimeSessionId: aws.String(c.session),
		ContentType:      aws.String("application/json"),
		Accept:           aws.String(accept),
		Payload:          body,
	})
	if err != nil {
		t.Fatalf("%q: %v", prompt, err)
	}
	defer res.Response.Close()
	if got := aws.ToString(res.RuntimeSessionId); got != c.session {
		t.Errorf("%q: response for session %q, want %q", prompt, got, c.session)
	}
	var out turnOutcome
	if !stream {
		if err := json.NewDecoder(res.Response).Decode(&out.reply); err != nil {
			t.Fatalf("%q: decode: %v", prompt, err)
		}
	} else {
		if ct := aws.ToString(res.ContentType); ct != "text/event-stream" {
			t.Fatalf("%q: content type %q", prompt, ct)
		}
		events := apptest.NewEventReader(res.Response)
		for {
			raw, err := events.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%q: read stream: %v", prompt, err)
			}
			var ev streamEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatalf("%q: event %s: %v", prompt, raw, err)
			}
			switch ev.Type {
			case "delta":
				out.deltas = append(out.deltas, ev.Text)
			case "done":
				out.reply = *ev.Reply
			}
		}
		if got := strings.TrimSpace(strings.Join(out.deltas, "")); len(out.deltas) < 2 || got != out.reply.Answer {
			t.Errorf("%q: %d deltas spelling %q, reply %q", prompt, len(out.deltas), got, out.reply.Answer)
		}
	}
	out.requests = c.fake.Since(mark)
	if len(out.requests) == 0 {
		t.Fatalf("%q: the model was never called", prompt)
	}
	for _, r := range out.requests {
		if r.Wire != c.p.wire || r.Model != c.p.model || r.Stream != stream {
			t.Errorf("%q: model call went %s/%s stream=%v, want %s/%s stream=%v", prompt, r.Wire, r.Model, r.Stream, c.p.wire, c.p.model, stream)
		}
	}
	if out.reply.SessionID != c.session {
		t.Errorf("%q: the agent saw session %q, want %q", prompt, out.reply.SessionID, c.session)
	}
	return out
}

// TestUnderBerth hosts the agent in berth, one runtime per provider, and
// runs the tutorial conversation through the AWS SDK: one session
// remembers (the third answer streams), a new session does not, and a
// stopped session starts over.
func TestUnderBerth(t *testing.T) {
	fake := newFake(t)
	var runtimes []berthRuntime
	for _, p := range providers {
		env := p.env(fake)
		env[agentEnv] = "1"
		for k, v := range hermeticAWS() {
			env[k] = v
		}
		runtimes = append(runtimes, berthRuntime{
			Name:    "claude_" + p.name,
			Command: []string{os.Args[0]}, // this test binary, which runs main() under agentEnv
			Env:     env,
			// The agent must reach the model; berth's default network for the
			// linux sandbox is loopback only.
			Network: "host",
		})
	}
	srv := startBerth(t, runtimes)
	client := bedrockagentcore.New(bedrockagentcore.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDCLIENT", "client-secret", ""),
	})

	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			arn := srv.arns["claude_"+p.name]
			if arn == "" {
				t.Fatalf("berth did not list runtime claude_%s: %v", p.name, srv.arns)
			}
			newChat := func() *sdkChat {
				return &sdkChat{t: t, client: client, arn: arn, session: "claude-test-" + uuid.NewString(), fake: fake, p: p}
			}
			c1 := newChat()
			weather := c1.ask("How is the weather outside?", false)
			if !strings.Contains(weather.reply.Answer, userNames["1"]) || len(weather.reply.Tools) != 1 ||
				!strings.Contains(weather.reply.Answer, weather.reply.Tools[0].Output) {
				t.Errorf("weather: %q using %+v", weather.reply.Answer, weather.reply.Tools)
			}
			product := c1.ask("How much is 2X5?", false)
			ten := fmt.Sprint(2 * 5)
			if !strings.Contains(product.reply.Answer, ten) {
				t.Errorf("2X5: %q", product.reply.Answer)
			}
			sum := c1.ask("and that plus 34?", true)
			want := fmt.Sprint(2*5 + 34)
			if !strings.Contains(sum.reply.Answer, want) || sum.reply.Turn != 3 {
				t.Errorf("'and that plus 34?' on turn %d: %q, want %s on turn 3", sum.reply.Turn, sum.reply.Answer, want)
			}
			if got := sum.requests[0].UserPrompts(); len(got) != 3 {
				t.Errorf("the model saw prompts %q, want all three", got)
			}
			if sum.reply.Instance != weather.reply.Instance {
				t.Errorf("one session, two processes: %s and %s", weather.reply.Instance, sum.reply.Instance)
			}

			c2 := newChat()
			other := c2.ask("and plus 10?", false)
			if other.reply.Instance == sum.reply.Instance || other.reply.Turn != 1 || len(other.reply.Tools) != 0 ||
				strings.Contains(other.reply.Answer, want) || strings.Contains(other.reply.Answer, fmt.Sprint(2*5+34+10)) {
				t.Errorf("new session: instance %s turn %d tools %+v answer %q", other.reply.Instance, other.reply.Turn, other.reply.Tools, other.reply.Answer)
			}
			if got := other.requests[0].UserPrompts(); !slices.Equal(got, []string{"and plus 10?"}) {
				t.Errorf("the new session's model call carried %q", got)
			}

			_, err := client.StopRuntimeSession(context.Background(), &bedrockagentcore.StopRuntimeSessionInput{
				AgentRuntimeArn: aws.String(arn), RuntimeSessionId: aws.String(c1.session),
			})
			if err != nil {
				t.Fatalf("stop session: %v", err)
			}
			again := c1.ask("and that plus 34?", false)
			if again.reply.Turn != 1 || again.reply.Instance == sum.reply.Instance || len(again.reply.Tools) != 0 {
				t.Errorf("after StopRuntimeSession: turn %d instance %s tools %+v", again.reply.Turn, again.reply.Instance, again.reply.Tools)
			}
		})
	}
}

// TestDurableConversation: with `durability: state` and a short
// suspend_after, the session's sandbox is freed while idle, and the next
// turn, in a new process, still reaches the model with the whole history.
func TestDurableConversation(t *testing.T) {
	fake := newFake(t)
	p := providers[0]
	env := p.env(fake)
	env[agentEnv] = "1"
	for k, v := range hermeticAWS() {
		env[k] = v
	}
	srv := startBerth(t, []berthRuntime{{Name: "durable", Command: []string{os.Args[0]}, Env: env,
		Network: "host", Durability: "state", SuspendAfter: "300ms"}})
	client := bedrockagentcore.New(bedrockagentcore.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDCLIENT", "client-secret", ""),
	})
	c := &sdkChat{t: t, client: client, arn: srv.arns["durable"], session: "claude-durable-" + uuid.NewString(), fake: fake, p: p}
	c.ask("How much is 2X5?", false)
	sum := c.ask("and that plus 34?", false)
	time.Sleep(1500 * time.Millisecond) // suspended after 300 ms idle
	next := c.ask("and plus 10?", false)
	if next.reply.Instance == sum.reply.Instance {
		t.Fatal("the idle sandbox was not suspended")
	}
	if next.reply.Turn != 3 || !strings.Contains(next.reply.Answer, fmt.Sprint(2*5+34+10)) {
		t.Fatalf("resumed session forgot: turn %d, %q", next.reply.Turn, next.reply.Answer)
	}
	if got := next.requests[0].UserPrompts(); len(got) != 3 {
		t.Fatalf("the model saw prompts %q after the resume, want all three", got)
	}
}

// TestDemoWithModel runs `berth demo --model anthropic` with the Anthropic
// API pointed at the fake: the demo builds this module, hosts it in berth
// and checks the tutorial's four demonstrations against its answers.
func TestDemoWithModel(t *testing.T) {
	fake := newFake(t)
	bin := buildBerth(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--model", ProviderAnthropic)
	cmd.Dir = repoRoot(t)
	cmd.Env = hermetic(map[string]string{envAnthropicKey: testAnthropicKey, envAnthropicBaseURL: fake.URL})
	out, err := cmd.CombinedOutput()
	report := string(out)
	if err != nil || strings.Contains(report, "✗") || !strings.Contains(report, "every step held") {
		t.Fatalf("demo: %v\n%s", err, report)
	}
	if strings.Contains(report, "offline") {
		t.Errorf("the demo fell back to the offline agent:\n%s", report)
	}
	var calls int
	for _, r := range fake.Requests() {
		if r.Wire == fakemodel.WireAnthropic && r.Model == DefaultAnthropicModel {
			calls++
		}
	}
	// Every demonstration asks the model at least once.
	if calls < 7 {
		t.Errorf("the model answered %d call(s) during the demo:\n%s", calls, report)
	}
	t.Logf("demo report:\n%s", report)
}
