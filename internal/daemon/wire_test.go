package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/session"
	"github.com/google/uuid"
)

// env is a real berth server on loopback with the scriptable test agent
// registered under several runtimes.
type env struct {
	t      *testing.T
	d      *daemon.Daemon
	client *bedrockagentcore.Client
	// token is in every agent's environment, to find its processes.
	token string
}

// backends lists the sandbox backends the wire tests run on: process
// everywhere, linux where the host allows it (it does on CI).
func backends(t *testing.T) []string {
	out := []string{"process"}
	if err := linux.Available(); err == nil {
		out = append(out, "linux")
	} else {
		t.Logf("linux backend not tested here: %v", err)
	}
	return out
}

// eachBackend runs fn once per available sandbox backend.
func eachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range backends(t) {
		t.Run(b, func(t *testing.T) { fn(t, b) })
	}
}

func withBackend(name string) func(*config.Config) {
	return func(c *config.Config) {
		for i := range c.Runtimes {
			c.Runtimes[i].Sandbox = registry.Backend(name)
		}
	}
}

func newEnv(t *testing.T, mutate ...func(*config.Config)) *env {
	t.Helper()
	agent := sandboxtest.BuildAgent(t)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	// Long enough for a fresh linux init on a loaded 2-core machine; the
	// unhealthy runtime's test checks this bound.
	cfg.StartTimeout = config.Duration(envStartTimeout)
	cfg.PingInterval = config.Duration(100 * time.Millisecond)
	cfg.StopGrace = config.Duration(500 * time.Millisecond)
	rt := func(name string, s registry.Settings) config.Runtime {
		s.Command, s.Sandbox = []string{agent}, registry.BackendProcess
		return config.Runtime{Name: name, Settings: s}
	}
	cfg.Runtimes = []config.Runtime{
		rt("echo", registry.Settings{HeaderAllowlist: []string{"X-Tenant-Id"}}),
		rt("unhealthy", registry.Settings{Env: map[string]string{"AGENT_MODE": "unhealthy"}}),
		rt("crashstart", registry.Settings{Env: map[string]string{"AGENT_MODE": "crash-on-start"}}),
		rt("idle", registry.Settings{IdleTimeout: config.Duration(time.Second), MaxLifetime: config.Duration(time.Minute)}),
	}
	token := uuid.NewString()
	for i := range cfg.Runtimes {
		if cfg.Runtimes[i].Env == nil {
			cfg.Runtimes[i].Env = map[string]string{}
		}
		cfg.Runtimes[i].Env["BERTH_WIRE_TOKEN"] = token
	}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start berth: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("close berth: %v", err)
		}
	})
	return &env{t: t, d: d, token: token, client: bedrockagentcore.New(bedrockagentcore.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(d.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDBERTHTEST", "secret", ""),
		Retryer:      aws.NopRetryer{},
	})}
}

// agents counts the live agent processes (with their children) of this env.
func (e *env) agents() int { return countAgents(e.t, "BERTH_WIRE_TOKEN="+e.token) }

// waitAgents waits for the count of live agent processes to reach n.
func (e *env) waitAgents(n int) { waitForAgents(e.t, "BERTH_WIRE_TOKEN="+e.token, n) }

// countAgents counts live processes whose environment holds entry.
func countAgents(t *testing.T, entry string) int {
	t.Helper()
	pids, err := sandboxtest.ProcsWithEnv(entry)
	if err != nil {
		t.Fatalf("scan processes: %v", err)
	}
	return len(pids)
}

// waitForAgents waits up to 10 s for countAgents to reach n.
func waitForAgents(t *testing.T, entry string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for countAgents(t, entry) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d agent processes live, want %d", countAgents(t, entry), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) arn(name string) string {
	for _, rt := range e.d.Runtimes() {
		if rt.Name == name {
			return rt.ARN
		}
	}
	e.t.Fatalf("no runtime %q", name)
	return ""
}

func newSessionID() string { return "wire-test-" + uuid.NewString() }

type echoReply struct {
	PID         int                 `json:"pid"`
	Instance    string              `json:"instance"`
	Invocations int                 `json:"count"`
	Headers     map[string][]string `json:"headers"`
	Payload     json.RawMessage     `json:"payload"`
}

func (r echoReply) header(k string) string {
	if v := r.Headers[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (e *env) invoke(ctx context.Context, runtime, session string, payload any, opts ...func(*bedrockagentcore.Options)) (*bedrockagentcore.InvokeAgentRuntimeOutput, error) {
	body, _ := json.Marshal(payload)
	in := &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn: aws.String(e.arn(runtime)),
		ContentType:     aws.String("application/json"),
		Accept:          aws.String("application/json"),
		Payload:         body,
	}
	if session != "" {
		in.RuntimeSessionId = aws.String(session)
	}
	return e.client.InvokeAgentRuntime(ctx, in, opts...)
}

func (e *env) echo(session string, opts ...func(*bedrockagentcore.Options)) echoReply {
	e.t.Helper()
	out, err := e.invoke(context.Background(), "echo", session, map[string]any{"op": "echo"}, opts...)
	if err != nil {
		e.t.Fatalf("invoke echo: %v", err)
	}
	defer out.Response.Close()
	var r echoReply
	if err := json.NewDecoder(out.Response).Decode(&r); err != nil {
		e.t.Fatalf("decode echo: %v", err)
	}
	if got := aws.ToString(out.RuntimeSessionId); session != "" && got != session {
		e.t.Fatalf("echoed session %q, want %q", got, session)
	}
	return r
}

func wantAPIError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want %s", err, code)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("error code %q (%v), want %q", ae.ErrorCode(), err, code)
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() != status {
		t.Fatalf("status %d, want %d", re.HTTPStatusCode(), status)
	}
}

func TestInvokeContinueIsolateStop(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		s1, s2 := newSessionID(), newSessionID()
		a := e.echo(s1)
		b := e.echo(s1)
		if a.Instance != b.Instance || b.Invocations != a.Invocations+1 {
			t.Fatalf("continuity broken: %+v then %+v", a, b)
		}
		c := e.echo(s2)
		if c.Instance == a.Instance || c.Invocations != 1 {
			t.Fatalf("isolation broken: s2 got %+v, s1 is %s", c, a.Instance)
		}
		e.waitAgents(2)

		stop := &bedrockagentcore.StopRuntimeSessionInput{AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(s1)}
		out, err := e.client.StopRuntimeSession(context.Background(), stop)
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
		if aws.ToString(out.RuntimeSessionId) != s1 {
			t.Fatalf("stop echoed %q", aws.ToString(out.RuntimeSessionId))
		}
		if n := e.agents(); n != 1 {
			t.Fatalf("%d agent processes after stopping one of two sessions", n)
		}
		_, err = e.client.StopRuntimeSession(context.Background(), stop)
		wantAPIError(t, err, "ResourceNotFoundException", 404)
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Fatalf("want typed ResourceNotFoundException, got %T", err)
		}
		d := e.echo(s1)
		if d.Instance == a.Instance || d.Invocations != 1 {
			t.Fatalf("stopped session was not started afresh: %+v", d)
		}
		// The runtime's name works in place of its ID, in an ARN or bare.
		for _, ref := range []string{"echo", strings.TrimPrefix(e.arn("echo"), "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/"),
			"arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/echo"} {
			out, err := e.client.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
				AgentRuntimeArn: aws.String(ref), RuntimeSessionId: aws.String(s2), Payload: []byte(`{"op":"echo"}`)})
			if err != nil {
				t.Fatalf("invoke by %q: %v", ref, err)
			}
			out.Response.Close()
		}
	})
}

func TestGeneratedSessionID(t *testing.T) {
	e := newEnv(t)
	// The SDK fills in a UUID when the caller gives none; berth echoes it.
	out, err := e.invoke(context.Background(), "echo", "", map[string]any{"op": "echo"})
	if err != nil {
		t.Fatal(err)
	}
	out.Response.Close()
	if len(aws.ToString(out.RuntimeSessionId)) < 33 {
		t.Fatalf("SDK-generated session id %q", aws.ToString(out.RuntimeSessionId))
	}
	// A raw HTTP call with no session header gets one generated and echoed.
	u := e.d.URL() + "/runtimes/" + url.PathEscape(e.arn("echo")) + "/invocations"
	resp, err := http.Post(u, "application/json", strings.NewReader(`{"op":"echo"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r echoReply
	json.NewDecoder(resp.Body).Decode(&r)
	sid := resp.Header.Get("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id")
	if resp.StatusCode != 200 || len(sid) < 33 || r.header("X-Amzn-Bedrock-Agentcore-Runtime-Session-Id") != sid {
		t.Fatalf("raw call: status %d, session %q, agent saw %q", resp.StatusCode, sid, r.header("X-Amzn-Bedrock-Agentcore-Runtime-Session-Id"))
	}
	if resp.Header.Get("X-Amzn-Requestid") == "" {
		t.Fatal("no x-amzn-RequestId")
	}
}

func TestSSEStreamsIncrementally(t *testing.T) {
	e := newEnv(t)
	out, err := e.invoke(context.Background(), "echo", newSessionID(), map[string]any{"op": "sse", "n": 5, "delay_ms": 150})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Response.Close()
	if ct := aws.ToString(out.ContentType); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	start := time.Now()
	var arrivals []time.Duration
	sc := bufio.NewScanner(out.Response)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			arrivals = append(arrivals, time.Since(start))
		}
	}
	if len(arrivals) != 5 {
		t.Fatalf("got %d events, want 5", len(arrivals))
	}
	// Relayed chunk by chunk: the first event arrives long before the last.
	if spread := arrivals[4] - arrivals[0]; spread < 400*time.Millisecond {
		t.Fatalf("events arrived together (spread %v): buffered, not streamed", spread)
	}
}

func TestErrorCases(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.MaxPayloadBytes = 4096 })
	ctx := context.Background()
	t.Run("unknown runtime", func(t *testing.T) {
		_, err := e.client.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn:  aws.String("arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/nope-0123456789"),
			RuntimeSessionId: aws.String(newSessionID()), Payload: []byte(`{}`)})
		wantAPIError(t, err, "ResourceNotFoundException", 404)
	})
	t.Run("unknown qualifier", func(t *testing.T) {
		_, err := e.client.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn: aws.String(e.arn("echo")), Qualifier: aws.String("nope"),
			RuntimeSessionId: aws.String(newSessionID()), Payload: []byte(`{}`)})
		wantAPIError(t, err, "ResourceNotFoundException", 404)
	})
	t.Run("short session id", func(t *testing.T) {
		_, err := e.invoke(ctx, "echo", "too-short", map[string]any{"op": "echo"})
		wantAPIError(t, err, "ValidationException", 400)
	})
	t.Run("oversize payload", func(t *testing.T) {
		_, err := e.invoke(ctx, "echo", newSessionID(), map[string]any{"op": "echo", "pad": strings.Repeat("x", 5000)})
		wantAPIError(t, err, "ValidationException", 400)
	})
	t.Run("oversize chunked payload", func(t *testing.T) {
		u := e.d.URL() + "/runtimes/echo/invocations"
		req, _ := http.NewRequest("POST", u, io.MultiReader(strings.NewReader(`{"op":"echo","pad":"`), strings.NewReader(strings.Repeat("y", 8000)), strings.NewReader(`"}`)))
		req.ContentLength = -1
		req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", newSessionID())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != "ValidationException" {
			t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
		}
	})
	t.Run("agent crashes mid-call", func(t *testing.T) {
		_, err := e.invoke(ctx, "echo", newSessionID(), map[string]any{"op": "crash"})
		wantAPIError(t, err, "RuntimeClientError", 424)
	})
	t.Run("agent answers 500", func(t *testing.T) {
		_, err := e.invoke(ctx, "echo", newSessionID(), map[string]any{"op": "status", "code": 500})
		wantAPIError(t, err, "RuntimeClientError", 424)
	})
	t.Run("agent never healthy", func(t *testing.T) {
		start := time.Now()
		_, err := e.invoke(ctx, "unhealthy", newSessionID(), map[string]any{"op": "echo"})
		wantAPIError(t, err, "RuntimeClientError", 424)
		if time.Since(start) > envStartTimeout+5*time.Second {
			t.Fatalf("took %v: the start timeout did not bound it", time.Since(start))
		}
	})
	t.Run("agent crashes on start", func(t *testing.T) {
		_, err := e.invoke(ctx, "crashstart", newSessionID(), map[string]any{"op": "echo"})
		wantAPIError(t, err, "RuntimeClientError", 424)
	})
	t.Run("malformed stop body", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.d.URL()+"/runtimes/echo/stopruntimesession", strings.NewReader("{not json"))
		req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", newSessionID())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Message string }
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != "ValidationException" || body.Message == "" {
			t.Fatalf("status %d type %q message %q", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body.Message)
		}
	})
}

func TestStopCutsHangingCall(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		sid := newSessionID()
		e.echo(sid)
		errc := make(chan error, 1)
		go func() {
			out, err := e.invoke(context.Background(), "echo", sid, map[string]any{"op": "hold"})
			if err == nil {
				_, err = io.ReadAll(out.Response)
				out.Response.Close()
			}
			errc <- err
		}()
		waitLive(t, e, sid, "the hanging call to reach the agent", func(in session.Info) bool { return in.Busy })
		if _, err := e.client.StopRuntimeSession(context.Background(), &bedrockagentcore.StopRuntimeSessionInput{
			AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(sid)}); err != nil {
			t.Fatalf("stop: %v", err)
		}
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("hanging call succeeded after stop")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("hanging call still open 10s after StopRuntimeSession")
		}
		if n := e.agents(); n != 0 {
			t.Fatalf("%d agent processes survived the stop", n)
		}
	})
}

func TestHeadersForwarded(t *testing.T) {
	e := newEnv(t)
	addHeaders := func(o *bedrockagentcore.Options) {
		o.APIOptions = append(o.APIOptions,
			smithyhttp.AddHeaderValue("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Greeting", "hi"),
			smithyhttp.AddHeaderValue("X-Tenant-Id", "tenant-7"),
			smithyhttp.AddHeaderValue("X-Not-Allowed", "nope"),
			smithyhttp.AddHeaderValue("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
		)
	}
	out, err := e.client.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(newSessionID()),
		RuntimeUserId: aws.String("user-42"), Payload: []byte(`{"op":"echo"}`)}, addHeaders)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Response.Close()
	var r echoReply
	json.NewDecoder(out.Response).Decode(&r)
	want := map[string]string{
		"X-Amzn-Bedrock-Agentcore-Runtime-Custom-Greeting": "hi",
		"X-Tenant-Id": "tenant-7",
		"X-Amzn-Bedrock-Agentcore-Runtime-User-Id": "user-42",
		"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	for k, v := range want {
		if r.header(k) != v {
			t.Errorf("agent saw %s=%q, want %q", k, r.header(k), v)
		}
	}
	if r.header("X-Amzn-Bedrock-Agentcore-Runtime-Request-Id") == "" {
		t.Error("no request id forwarded")
	}
	for k := range r.Headers {
		l := strings.ToLower(k)
		if k == "X-Amz-Bedrock-Agentcore-Identity-Wat" {
			continue // berth's own workload access token, as AgentCore sends it
		}
		if k == "X-Not-Allowed" || k == "Authorization" || strings.HasPrefix(l, "x-amz-") ||
			(strings.HasPrefix(l, "x-amzn-") && !strings.HasPrefix(l, "x-amzn-bedrock-agentcore-runtime-")) {
			t.Errorf("agent saw header %s, which must not be forwarded", k)
		}
	}
	// A signed SDK request carries Authorization, which is not on the
	// allowlist and so never reaches the agent. An oversize allow-listed
	// value is refused.
	big := func(o *bedrockagentcore.Options) {
		o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue("X-Tenant-Id", strings.Repeat("t", 5000)))
	}
	_, err = e.invoke(context.Background(), "echo", newSessionID(), map[string]any{"op": "echo"}, big)
	wantAPIError(t, err, "ValidationException", 400)
}

func TestConcurrentCallsShareOneProcess(t *testing.T) {
	e := newEnv(t)
	sid := newSessionID()
	var wg sync.WaitGroup
	got := make(chan string, 20)
	for range 20 {
		wg.Go(func() { got <- e.echo(sid).Instance })
	}
	wg.Wait()
	close(got)
	first := ""
	for p := range got {
		if first == "" {
			first = p
		}
		if p != first {
			t.Fatalf("concurrent calls reached processes %s and %s", first, p)
		}
	}
}

func TestIdleTimeoutAndHealthyBusy(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		ctx := context.Background()
		call := func(sid string, payload any) echoReply {
			out, err := e.invoke(ctx, "idle", sid, payload)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Response.Close()
			var r echoReply
			json.NewDecoder(out.Response).Decode(&r)
			return r
		}
		// HealthyBusy holds the 1 s idle timeout off: the session stays
		// live 2 s after its last call, by its own clock.
		busy := newSessionID()
		p := call(busy, map[string]any{"op": "echo"}).Instance
		call(busy, map[string]any{"op": "busy", "ms": 10000})
		waitLive(t, e, busy, "the busy session to stay live 2 s after its last call", func(in session.Info) bool {
			return in.Busy && time.Since(in.LastActiveAt) > 2*time.Second
		})
		if q := call(busy, map[string]any{"op": "echo"}).Instance; q != p {
			t.Fatalf("HealthyBusy session was reaped: %s became %s", p, q)
		}
		// An idle session ends after its timeout; the same ID starts afresh.
		idle := newSessionID()
		p = call(idle, map[string]any{"op": "echo"}).Instance
		deadline := time.Now().Add(5 * time.Second)
		for liveRecordOK(e, idle) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if liveRecordOK(e, idle) {
			t.Fatal("idle session outlived its idle timeout")
		}
		if q := call(idle, map[string]any{"op": "echo"}); q.Instance == p || q.Invocations != 1 {
			t.Fatalf("idle-timed-out session not fresh: %+v", q)
		}
	})
}

func TestShutdownLeavesNoProcess(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		for range 3 {
			sid := newSessionID()
			e.echo(sid)
			out, err := e.invoke(context.Background(), "echo", sid, map[string]any{"op": "spawn"})
			if err != nil {
				t.Fatal(err)
			}
			out.Response.Close()
		}
		if n := e.agents(); n < 6 {
			t.Fatalf("only %d agent processes before shutdown, want 3 agents and 3 children", n)
		}
		if err := e.d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := e.agents(); n != 0 {
			t.Fatalf("%d agent processes survived berth's shutdown", n)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCloseLeavesNoGoroutines: a daemon that served sessions (JSON, SSE,
// a stop, an idle durable pool) leaves no goroutine behind after Close.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newEnv(t, func(c *config.Config) {
		c.Runtimes[0].Sessions.WarmPool = 2
	})
	sid := newSessionID()
	e.echo(sid)
	out, err := e.invoke(context.Background(), "echo", newSessionID(), map[string]any{"op": "sse", "n": 3, "delay_ms": 10})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out.Response)
	out.Response.Close()
	if _, err := e.client.StopRuntimeSession(context.Background(), &bedrockagentcore.StopRuntimeSessionInput{
		AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(sid)}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr, ok := e.client.Options().HTTPClient.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// envStartTimeout is the start timeout of newEnv's berth.
const envStartTimeout = 10 * time.Second
