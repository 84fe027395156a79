package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/app"
	"github.com/berth-dev/berth/app/apptest"
	"github.com/berth-dev/berth/examples/claude/internal/fakemodel"
)

// agentEnv makes the test binary run the agent's main instead of tests, so
// the process tests, and berth in berth_test.go, need no separate build.
const agentEnv = "BERTH_CLAUDE_RUN_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	cleanupBuilds()
	os.Exit(code)
}

// Credentials the fake model accepts, and the agent is given.
const (
	testAnthropicKey = "sk-ant-test-key"
	testOpenAIKey    = "sk-openai-test-key"
	testAWSKey       = "AKIDBERTHTEST"
	testAWSSecret    = "berth-test-secret"
	testAWSRegion    = "us-west-2"
	testOpenAIModel  = "llama3.2"
)

func newFake(t *testing.T) *fakemodel.Server {
	t.Helper()
	fake := fakemodel.New(fakemodel.Config{
		AnthropicKey: testAnthropicKey,
		OpenAIKey:    testOpenAIKey,
		AWSAccessKey: testAWSKey,
		AWSSecretKey: testAWSSecret,
		AWSRegion:    testAWSRegion,
	})
	t.Cleanup(func() {
		fake.Close()
		for _, p := range fake.Problems() {
			t.Errorf("the fake model refused a request: %s", p)
		}
	})
	return fake
}

// provider is one way of reaching the fake model.
type provider struct {
	name  string
	wire  string
	model string // what the fake should see
	env   func(fake *fakemodel.Server) map[string]string
}

var providers = []provider{
	{
		name: ProviderBedrock, wire: fakemodel.WireBedrock, model: DefaultBedrockModel,
		env: func(fake *fakemodel.Server) map[string]string {
			return map[string]string{
				EnvProvider: ProviderBedrock,
				// The SDKs' own variable for a service endpoint.
				envBedrockEndpoint:      fake.URL,
				"AWS_ACCESS_KEY_ID":     testAWSKey,
				"AWS_SECRET_ACCESS_KEY": testAWSSecret,
				"AWS_REGION":            testAWSRegion,
			}
		},
	},
	{
		name: ProviderAnthropic, wire: fakemodel.WireAnthropic, model: DefaultAnthropicModel,
		env: func(fake *fakemodel.Server) map[string]string {
			return map[string]string{EnvProvider: ProviderAnthropic, envAnthropicBaseURL: fake.URL, envAnthropicKey: testAnthropicKey}
		},
	},
	{
		name: ProviderOpenAI, wire: fakemodel.WireOpenAI, model: testOpenAIModel,
		env: func(fake *fakemodel.Server) map[string]string {
			return map[string]string{
				EnvProvider: ProviderOpenAI, EnvModel: testOpenAIModel,
				envOpenAIBaseURL: fake.URL + "/v1", envOpenAIKey: testOpenAIKey,
			}
		},
	},
}

// hermetic keeps the host's model settings and AWS profile out of an
// agent's environment, then adds extra.
func hermetic(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "ANTHROPIC_") ||
			strings.HasPrefix(k, "OPENAI_") || strings.HasPrefix(k, "BERTH_MODEL") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range hermeticAWS() {
		env = append(env, k+"="+v)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// hermeticAWS stops the AWS credential chain from reading the host's files
// or asking for instance credentials.
func hermeticAWS() map[string]string {
	return map[string]string{
		"AWS_CONFIG_FILE":             "/nonexistent/berth-test/config",
		"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/berth-test/credentials",
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
}

// agentProcess is the agent running as its own process, the way berth
// starts one per session.
type agentProcess struct {
	cmd *exec.Cmd
	url string

	scanned chan struct{} // closed when stderr is drained
	mu      sync.Mutex    // guards logs
	logs    []string
}

func startAgent(t *testing.T, env map[string]string) *agentProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(hermetic(env), agentEnv+"=1", app.EnvPort+"=0", app.EnvHost+"=127.0.0.1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	p := &agentProcess{cmd: cmd, scanned: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.scanned:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.scanned
			}
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent %d logs:\n%s", cmd.Process.Pid, p.logText())
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.scanned:
		_ = cmd.Wait()
		t.Fatalf("agent exited before listening (%v):\n%s", cmd.ProcessState, p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("agent not listening after 30s:\n%s", p.logText())
	}
	return p
}

func (p *agentProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logs, "\n")
}

func TestBadConfigurationExits(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown provider", map[string]string{EnvProvider: "gemini"}, "gemini"},
		{"openai without a model", map[string]string{EnvProvider: ProviderOpenAI}, EnvModel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(hermetic(tc.env), agentEnv+"=1", app.EnvPort+"=0", app.EnvHost+"=127.0.0.1")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("agent: %v, want exit 2 naming %q:\n%s", err, tc.want, out)
			}
		})
	}
}

// The Bedrock fake checks signatures, so an agent signing with the wrong
// secret is refused: the SigV4 check in the other tests is not vacuous.
func TestBedrockSignatureIsChecked(t *testing.T) {
	fake := newFake(t)
	env := providers[0].env(fake)
	env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
	h := apptest.Connect(t, startAgent(t, env).url)
	res := h.Invoke(map[string]any{"prompt": "How much is 2X5?"})
	if res.Status != 500 || !strings.Contains(res.Error(), "signature") {
		t.Errorf("with a wrong secret: %d %s, want 500 citing the signature", res.Status, res.Body)
	}
	problems := fake.Problems()
	if len(problems) != 1 || !strings.Contains(problems[0], "signature does not match") {
		t.Errorf("the fake saw problems %q, want one signature mismatch", problems)
	}
	fake.ForgetProblems()
}
