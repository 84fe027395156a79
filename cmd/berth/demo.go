package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore/types"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

func newDemo() *cobra.Command {
	var opts demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run AgentCore's runtime-context tutorial against an embedded berth",
		Long: `Start an embedded berth server on a free loopback port, build and register
the example tutorial agent, and drive it with the official AWS SDK for Go v2
through the four demonstrations of AgentCore's "runtime context and session
management" tutorial, plus StopRuntimeSession. Exits 0 only if every step held.

With --model, the agent is examples/claude instead: the tutorial's agent with
a model, Claude Haiku 4.5 on Bedrock or the Anthropic API, or the model named
by BERTH_MODEL on an OpenAI-compatible server. It needs that provider's
credentials: the AWS credential chain (bedrock), ANTHROPIC_API_KEY
(anthropic), or OPENAI_BASE_URL and/or OPENAI_API_KEY plus BERTH_MODEL
(openai). Without them the demo says so and runs the offline agent.

With --protocol mcp, the agent is examples/mcp, an MCP server built with the
official Go MCP SDK, hosted as AgentCore hosts MCP servers (POST /mcp on
port 8000) and driven by that SDK's client given only berth's URL: the
handshake, tools/list, a tool call, a tool that streams progress, and one
sandbox per MCP session.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.model != "" && !slices.Contains(modelProviders, opts.model) {
				return fmt.Errorf("--model %q: want one of %s", opts.model, strings.Join(modelProviders, ", "))
			}
			switch strings.ToUpper(opts.protocol) {
			case "", string(registry.ProtocolHTTP):
			case string(registry.ProtocolMCP):
				if opts.model != "" {
					return errors.New("--model and --protocol mcp do not go together: the MCP example has no model")
				}
				return runMCPDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
			default:
				return fmt.Errorf("--protocol %q: want http or mcp", opts.protocol)
			}
			return runDemoWith(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.keep, "keep", false, "keep the demo's data dir (store and agent logs) afterwards")
	cmd.Flags().StringVar(&opts.protocol, "protocol", "http", "the agent's server protocol: http (the tutorial) or mcp (an MCP server)")
	cmd.Flags().StringVar(&opts.model, "model", "", "run the model-backed agent (examples/claude) on this provider: "+strings.Join(modelProviders, ", "))
	return cmd
}

// demoOptions are the demo's flags.
type demoOptions struct {
	keep     bool
	model    string // a model provider, or empty for the offline agent
	protocol string // http or mcp
}

// tutorialReply is what the example agent answers.
type tutorialReply struct {
	Answer        string            `json:"answer"`
	SessionID     string            `json:"session_id"`
	RequestID     string            `json:"request_id"`
	UserName      string            `json:"user_name"`
	Turn          int               `json:"turn"`
	Remembered    []string          `json:"remembered"`
	Payload       map[string]any    `json:"payload"`
	CustomHeaders map[string]string `json:"custom_headers"`
	PID           int               `json:"pid"`
	Instance      string            `json:"instance"`
	Model         string            `json:"model"` // examples/claude only
}

type demo struct {
	ctx    context.Context
	out    io.Writer
	client *bedrockagentcore.Client
	arn    string
	failed int
	// withModel prints the model's answers: unlike the offline agent's,
	// they are worth reading.
	withModel bool
}

func runDemo(ctx context.Context, out, errOut io.Writer, keep bool) error {
	return runDemoWith(ctx, out, errOut, demoOptions{keep: keep})
}

func runDemoWith(ctx context.Context, out, errOut io.Writer, opts demoOptions) error {
	dir, err := os.MkdirTemp("", "berth-demo-")
	if err != nil {
		return fmt.Errorf("create demo dir: %w", err)
	}
	if !opts.keep {
		defer os.RemoveAll(dir)
	}
	var env map[string]string
	if opts.model != "" {
		var missing string
		if env, missing, err = modelAgentEnv(ctx, opts.model, os.Getenv); err != nil {
			return err
		}
		if missing != "" {
			fmt.Fprintf(out, "--model %s: %s; running the offline tutorial agent instead.\n\n", opts.model, missing)
			opts.model = ""
		}
	}
	rt := config.Runtime{Name: "tutorial"}
	if opts.model == "" {
		sp := startSpinner(errOut, "building the example agent")
		agent, err := buildTutorialAgent(ctx, dir)
		sp.stop()
		if err != nil {
			return err
		}
		rt.Command = []string{agent}
	} else {
		// A separate module: a cold build compiles the model SDKs.
		sp := startSpinner(errOut, "building the Claude agent (examples/claude; the first build takes a few minutes)")
		agent, err := buildAgent(ctx, dir, "examples/claude", "claude-agent")
		sp.stop()
		if err != nil {
			return err
		}
		// The model is across the network, so the sandbox shares the
		// host's: the linux backend's default gives it loopback only.
		rt = config.Runtime{Name: "claude", Settings: registry.Settings{Command: []string{agent}, Env: env, Network: sandbox.NetworkHost}}
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Runtimes = []config.Runtime{rt}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("BERTH_DEMO_LOG") != "" {
		log = slog.New(slog.NewTextHandler(errOut, nil))
	}
	sp := startSpinner(errOut, "starting berth")
	d, err := daemon.Start(ctx, cfg, log)
	sp.stop()
	if err != nil {
		return fmt.Errorf("start berth: %w", err)
	}
	defer d.Close(context.WithoutCancel(ctx))
	arn := d.Runtimes()[0].ARN
	fmt.Fprintf(out, "berth is serving on %s (sandbox: %s)\nruntime ARN: %s\n\n", d.URL(), defaultBackendName(d), arn)

	if opts.model != "" {
		fmt.Fprintf(out, "agent: examples/claude on %s (network: host)\n\n", opts.model)
	}

	dm := &demo{ctx: ctx, out: out, arn: arn, withModel: opts.model != "", client: bedrockagentcore.New(bedrockagentcore.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(d.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("berth-demo", "berth-demo", ""),
	})}
	dm.run()
	if opts.keep {
		fmt.Fprintf(out, "\ndata dir kept at %s\n", dir)
	}
	if dm.failed > 0 {
		return fmt.Errorf("%d demo checks failed", dm.failed)
	}
	fmt.Fprintln(out, "\nevery step held.")
	return nil
}

func defaultBackendName(d *daemon.Daemon) string { return d.DefaultBackend() }

// buildTutorialAgent compiles examples/tutorial from the berth source tree.
func buildTutorialAgent(ctx context.Context, dir string) (string, error) {
	return buildAgent(ctx, dir, "examples/tutorial", "tutorial-agent")
}

// buildAgent compiles the example agent in pkg (relative to the berth
// source tree) into dir/bin/name. It builds from inside pkg, so an example
// that is a module of its own (examples/claude) uses its own go.mod.
func buildAgent(ctx context.Context, dir, pkg, name string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bin", name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, filepath.FromSlash(pkg))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, stderr.String())
	}
	return bin, nil
}

// modelProviders are the values of --model.
var modelProviders = []string{"bedrock", "anthropic", "openai"}

// modelAgentEnv gathers what examples/claude needs to reach provider: the
// environment for its runtime, or why it cannot (missing credentials).
// The agent's sandbox does not see berth's environment or home directory,
// so everything it needs is passed explicitly.
func modelAgentEnv(ctx context.Context, provider string, getenv func(string) string) (env map[string]string, missing string, err error) {
	env = map[string]string{"BERTH_MODEL_PROVIDER": provider}
	pass := func(keys ...string) {
		for _, k := range keys {
			if v := getenv(k); v != "" {
				env[k] = v
			}
		}
	}
	pass("BERTH_MODEL", "BERTH_MODEL_BASE_URL", "BERTH_MODEL_MAX_TOKENS")
	switch provider {
	case "bedrock":
		pass("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
		if getenv("AWS_BEARER_TOKEN_BEDROCK") != "" {
			pass("AWS_BEARER_TOKEN_BEDROCK", "AWS_REGION", "AWS_DEFAULT_REGION")
			return env, "", nil
		}
		// Resolve the whole chain here (profiles, SSO, instance roles): the
		// linux sandbox hides the home directory, so ~/.aws is out of reach.
		// Quietly: a miss is reported below, not as SDK warnings.
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(logging.Nop{}))
		if err != nil {
			return nil, fmt.Sprintf("no usable AWS configuration (%v)", err), nil
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		creds, err := cfg.Credentials.Retrieve(rctx)
		if err != nil {
			return nil, fmt.Sprintf("no AWS credentials found (%v)", err), nil
		}
		env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = creds.AccessKeyID, creds.SecretAccessKey
		if creds.SessionToken != "" {
			env["AWS_SESSION_TOKEN"] = creds.SessionToken
		}
		env["AWS_REGION"] = cmp.Or(cfg.Region, "us-east-1")
	case "anthropic":
		if getenv("ANTHROPIC_API_KEY") == "" {
			return nil, "ANTHROPIC_API_KEY is not set", nil
		}
		pass("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
	case "openai":
		if getenv("OPENAI_BASE_URL") == "" && getenv("OPENAI_API_KEY") == "" {
			return nil, "neither OPENAI_BASE_URL nor OPENAI_API_KEY is set", nil
		}
		if getenv("BERTH_MODEL") == "" && getenv("OPENAI_MODEL") == "" {
			return nil, "BERTH_MODEL is not set (an OpenAI-compatible server has no default model)", nil
		}
		pass("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL")
	default:
		return nil, "", fmt.Errorf("--model %q: want one of %s", provider, strings.Join(modelProviders, ", "))
	}
	return env, "", nil
}

// moduleRoot finds the berth source tree from the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/berth-dev/berth\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("berth demo builds the example agent from source: run it inside the berth repository (go run ./cmd/berth demo)")
		}
		dir = parent
	}
}

func (dm *demo) check(ok bool, what string, detail ...any) {
	mark := "  ✓"
	if !ok {
		mark = "  ✗"
		dm.failed++
	}
	fmt.Fprintf(dm.out, "%s %s", mark, what)
	if len(detail) > 0 {
		fmt.Fprintf(dm.out, " ("+fmt.Sprint(detail[0])+")", detail[1:]...)
	}
	fmt.Fprintln(dm.out)
}

func (dm *demo) invoke(session string, payload map[string]any, headers map[string]string) (tutorialReply, error) {
	body, _ := json.Marshal(payload)
	var opts []func(*bedrockagentcore.Options)
	for k, v := range headers {
		opts = append(opts, func(o *bedrockagentcore.Options) {
			o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(k, v))
		})
	}
	res, err := dm.client.InvokeAgentRuntime(dm.ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn:  aws.String(dm.arn),
		Qualifier:        aws.String("DEFAULT"),
		RuntimeSessionId: aws.String(session),
		ContentType:      aws.String("application/json"),
		Accept:           aws.String("application/json"),
		Payload:          body,
	}, opts...)
	if err != nil {
		return tutorialReply{}, err
	}
	defer res.Response.Close()
	var r tutorialReply
	if err := json.NewDecoder(res.Response).Decode(&r); err != nil {
		return r, fmt.Errorf("decode reply: %w", err)
	}
	if got := aws.ToString(res.RuntimeSessionId); got != session {
		return r, fmt.Errorf("response echoed session %q, want %q", got, session)
	}
	return r, nil
}

func (dm *demo) run() {
	s1 := "demo-session-" + uuid.NewString()
	fmt.Fprintln(dm.out, "1. Session continuity: one session ID, one agent process, memory that carries over")
	a, errA := dm.invoke(s1, map[string]any{"prompt": "How is the weather outside?", "user_id": "1"}, nil)
	b, errB := dm.invoke(s1, map[string]any{"prompt": "How much is 2X5?", "user_id": "1"}, nil)
	c, errC := dm.invoke(s1, map[string]any{"prompt": "and that plus 34?", "user_id": "1"}, nil)
	if err := errors.Join(errA, errB, errC); err != nil {
		dm.check(false, "three calls in session "+short(s1), err)
		return
	}
	dm.heard(a, b, c)
	dm.check(a.Turn == 1 && b.Turn == 2 && c.Turn == 3, "the agent counted three turns in one process", "turns %d, %d, %d", a.Turn, b.Turn, c.Turn)
	dm.check(a.Instance == b.Instance && b.Instance == c.Instance, "all three calls reached the same process", "instance %s, pid %d", a.Instance, a.PID)
	dm.check(strings.Contains(c.Answer, "44"), "\"and that plus 34?\" used the remembered 2X5 = 10", "%q", c.Answer)
	dm.check(a.UserName == "Maira", "user_id 1 is greeted as Maira", "%q", a.UserName)

	fmt.Fprintln(dm.out, "2. The context object: session ID, request ID and custom headers reach the handler")
	hdr := "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Greeting"
	d, err := dm.invoke(s1, map[string]any{"prompt": "What do you know about this call?", "user_id": "1"}, map[string]string{hdr: "hello from the demo"})
	if err != nil {
		dm.check(false, "context call", err)
		return
	}
	dm.check(d.SessionID == s1, "context.session_id is the caller's session ID", "%s", short(d.SessionID))
	dm.check(d.RequestID != "" && d.RequestID != c.RequestID, "each call has its own request ID", "%s", d.RequestID)
	got := ""
	for k, v := range d.CustomHeaders {
		if strings.EqualFold(k, hdr) {
			got = v
		}
	}
	dm.check(got == "hello from the demo", "the custom header arrived", "%s: %q", hdr, got)

	fmt.Fprintln(dm.out, "3. Session isolation: a new session ID gets a fresh process that knows nothing")
	s2 := "demo-session-" + uuid.NewString()
	e, err := dm.invoke(s2, map[string]any{"prompt": "And plus 10?", "user_id": "1"}, nil)
	if err != nil {
		dm.check(false, "call in session "+short(s2), err)
		return
	}
	dm.heard(e)
	dm.check(e.Instance != c.Instance, "a different process serves the new session", "instance %s vs %s", e.Instance, c.Instance)
	dm.check(e.Turn == 1 && len(e.Remembered) == 1, "it remembers only its own first turn", "turn %d, remembers %d prompt(s)", e.Turn, len(e.Remembered))
	dm.check(!strings.Contains(e.Answer, "54") && !strings.Contains(e.Answer, "44"), "it has no earlier result to add 10 to", "%q", e.Answer)

	fmt.Fprintln(dm.out, "4. Payload flexibility: any JSON reaches the agent unchanged")
	s3 := "demo-session-" + uuid.NewString()
	payload := map[string]any{
		"prompt": "How is the weather?", "user_id": "2",
		"preferences":  map[string]any{"units": "metric", "verbose": true, "max_items": 3.0},
		"context_data": []any{"first", 2.0, map[string]any{"nested": nil}},
	}
	f, err := dm.invoke(s3, payload, nil)
	if err != nil {
		dm.check(false, "call with a rich payload", err)
		return
	}
	dm.check(reflect.DeepEqual(f.Payload, payload), "the agent received exactly the JSON that was sent", "%d top-level fields", len(f.Payload))
	dm.check(f.UserName == "Mani", "user_id 2 is greeted as Mani", "%q", f.UserName)

	fmt.Fprintln(dm.out, "5. StopRuntimeSession ends a session; the same ID then starts afresh")
	_, err = dm.client.StopRuntimeSession(dm.ctx, &bedrockagentcore.StopRuntimeSessionInput{
		AgentRuntimeArn: aws.String(dm.arn), Qualifier: aws.String("DEFAULT"), RuntimeSessionId: aws.String(s1),
	})
	dm.check(err == nil, "StopRuntimeSession succeeded", errText(err))
	_, err = dm.client.StopRuntimeSession(dm.ctx, &bedrockagentcore.StopRuntimeSessionInput{
		AgentRuntimeArn: aws.String(dm.arn), Qualifier: aws.String("DEFAULT"), RuntimeSessionId: aws.String(s1),
	})
	var nf *types.ResourceNotFoundException
	dm.check(errors.As(err, &nf), "stopping it again is ResourceNotFoundException", errText(err))
	g, err := dm.invoke(s1, map[string]any{"prompt": "and that plus 34?", "user_id": "1"}, nil)
	dm.check(err == nil && g.Turn == 1 && g.Instance != c.Instance, "the stopped session ID got a brand-new sandbox", "turn %d, instance %s", g.Turn, g.Instance)
}

// heard prints what the model answered, when there is one.
func (dm *demo) heard(replies ...tutorialReply) {
	if !dm.withModel {
		return
	}
	for _, r := range replies {
		prompt, _ := r.Payload["prompt"].(string)
		fmt.Fprintf(dm.out, "    %q → %q (%s)\n", prompt, r.Answer, r.Model)
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return strings.ReplaceAll(err.Error(), "%", "%%")
}

func short(id string) string {
	if len(id) > 24 {
		return id[:24] + "…"
	}
	return id
}

// spinner shows progress on a terminal and stays quiet elsewhere.
type spinner struct {
	done chan struct{}
	wait chan struct{}
}

func startSpinner(w io.Writer, msg string) *spinner {
	s := &spinner{done: make(chan struct{}), wait: make(chan struct{})}
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	go func() {
		defer close(s.wait)
		if !tty {
			fmt.Fprintf(w, "%s…\n", msg)
			<-s.done
			return
		}
		frames := `|/-\`
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		for i := 0; ; i++ {
			fmt.Fprintf(w, "\r%c %s… %.1fs", frames[i%4], msg, time.Since(start).Seconds())
			select {
			case <-s.done:
				fmt.Fprintf(w, "\r✓ %s (%.1fs)   \n", msg, time.Since(start).Seconds())
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *spinner) stop() {
	close(s.done)
	<-s.wait
}
