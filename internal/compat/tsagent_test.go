package compat_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol"
	ctltypes "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/google/uuid"
)

// tsAgentDir is the agent built with AWS's bedrock-agentcore npm package.
const tsAgentDir = "examples/agentcore-ts"

// tsState is what the TypeScript agent reports about itself.
type tsState struct {
	Instance    string            `json:"instance"`
	PID         int               `json:"pid"`
	Invocations int               `json:"invocations"`
	Notes       []string          `json:"notes"`
	SessionID   string            `json:"session_id"`
	RequestID   string            `json:"request_id"`
	Headers     map[string]string `json:"headers"`
	PortEnv     *string           `json:"port_env"`
	PingStatus  string            `json:"ping_status"`
	AsyncTasks  int               `json:"async_tasks"`
	Payload     json.RawMessage   `json:"payload"`
}

func newSessionID() string { return "compat-" + uuid.NewString() }

// tsRuntime declares the TypeScript agent as a runtime, run the way its
// package says: `node agent.js`.
func tsRuntime(t *testing.T, name, backend string) config.Runtime {
	requireNode(t)
	dir := npmProject(t, tsAgentDir, "agent.js")
	return config.Runtime{Name: name, Settings: registry.Settings{Command: []string{"node", "agent.js"}, // found on the sandbox's PATH
		Workdir: dir, Sandbox: registry.Backend(backend), Env: map[string]string{"LOG_LEVEL": "warn"}, // Short, so the HealthyBusy check is quick; max_lifetime must
		// stay above it.
		IdleTimeout: config.Duration(2 * time.Second), MaxLifetime: config.Duration(2 * time.Minute)}}
}

func (b *berth) tsInvoke(t *testing.T, runtime, sessionID string, payload any, opts ...func(*bedrockagentcore.Options)) tsState {
	t.Helper()
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.client.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn:  aws.String(b.arn(t, runtime)),
		Qualifier:        aws.String("DEFAULT"),
		RuntimeSessionId: aws.String(sessionID),
		ContentType:      aws.String("application/json"),
		Accept:           aws.String("application/json"),
		Payload:          body,
	}, opts...)
	if err != nil {
		t.Fatalf("invoke %s: %v", runtime, err)
	}
	defer out.Response.Close()
	if ct := aws.ToString(out.ContentType); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q, want application/json", ct)
	}
	if got := aws.ToString(out.RuntimeSessionId); got != sessionID {
		t.Fatalf("response names session %q, want %q", got, sessionID)
	}
	var st tsState
	if err := json.NewDecoder(out.Response).Decode(&st); err != nil {
		t.Fatalf("decode agent reply: %v", err)
	}
	return st
}

// TestAgentCoreTypeScriptSDK hosts an agent written with AWS's
// bedrock-agentcore npm package, unmodified, and drives it with the AWS SDK
// for Go v2. The agent binds 0.0.0.0:8080 whatever PORT says, so every
// session needs its own network namespace: the linux sandbox.
func TestAgentCoreTypeScriptSDK(t *testing.T) {
	t.Parallel()
	// AgentCore SDK agents listen on 8080 and need a network namespace per session.
	testenv.Require(t, testenv.Linux, linux.Available())
	// tsagent idles out after 2 s, for the HealthyBusy check; patient
	// keeps its sessions long enough for checks that make several calls,
	// whatever a cold start costs on a loaded machine.
	patient := tsRuntime(t, "patient", "linux")
	patient.IdleTimeout = config.Duration(2 * time.Minute)
	codeRoot := t.TempDir()
	b := startBerth(t, []config.Runtime{tsRuntime(t, "tsagent", "linux"), patient},
		func(c *config.Config) { c.CodeRoots = []string{codeRoot} })

	t.Run("context and headers arrive", func(t *testing.T) {
		sid := newSessionID()
		payload := map[string]any{"action": "whoami", "prompt": "hello", "nested": map[string]any{"k": []any{1.5, "x"}}}
		custom := smithyhttp.AddHeaderValue("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tier", "gold")
		withHeader := func(o *bedrockagentcore.Options) { o.APIOptions = append(o.APIOptions, custom) }
		first := b.tsInvoke(t, "patient", sid, payload, withHeader)
		second := b.tsInvoke(t, "patient", sid, payload)

		if first.SessionID != sid || second.SessionID != sid {
			t.Errorf("context.sessionId = %q, %q; want %q", first.SessionID, second.SessionID, sid)
		}
		if first.RequestID == "" || first.RequestID == second.RequestID {
			t.Errorf("context.requestId = %q then %q; want a fresh ID per call", first.RequestID, second.RequestID)
		}
		if got := first.Headers["x-amzn-bedrock-agentcore-runtime-custom-tier"]; got != "gold" {
			t.Errorf("custom header in context.headers = %q (headers %v), want gold", got, first.Headers)
		}
		if _, ok := second.Headers["x-amzn-bedrock-agentcore-runtime-custom-tier"]; ok {
			t.Errorf("custom header of an earlier call leaked into a later one: %v", second.Headers)
		}
		// The SDK signs with SigV4; berth must not hand the agent the
		// caller's Authorization header unless the runtime allow-lists it.
		for k := range first.Headers {
			if strings.EqualFold(k, "authorization") {
				t.Errorf("the agent received the caller's Authorization header")
			}
		}
		var echoed, sent any
		if err := json.Unmarshal(first.Payload, &echoed); err != nil {
			t.Fatalf("payload echo: %v", err)
		}
		raw, _ := json.Marshal(payload)
		_ = json.Unmarshal(raw, &sent)
		if !jsonEqual(echoed, sent) {
			t.Errorf("payload arrived as %s, sent %s", first.Payload, raw)
		}
		t.Logf("agent sees session %s, request %s, headers %v, PORT=%v", first.SessionID, first.RequestID, first.Headers, deref(first.PortEnv))
	})

	t.Run("streaming arrives incrementally", func(t *testing.T) {
		const count, interval = 6, 250 * time.Millisecond
		body, _ := json.Marshal(map[string]any{"action": "stream", "count": count, "interval_ms": interval.Milliseconds()})
		start := time.Now()
		out, err := b.client.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn:  aws.String(b.arn(t, "patient")),
			RuntimeSessionId: aws.String(newSessionID()),
			ContentType:      aws.String("application/json"),
			Accept:           aws.String("text/event-stream"),
			Payload:          body,
		})
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
		defer out.Response.Close()
		if ct := aws.ToString(out.ContentType); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("content type %q, want text/event-stream", ct)
		}
		type event struct {
			Index    *int  `json:"index"`
			SentAtMs int64 `json:"sent_at_ms"`
			Done     bool  `json:"done"`
			arrived  time.Time
		}
		var events []event
		sc := bufio.NewScanner(out.Response)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			ev := event{arrived: time.Now()}
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatalf("event %q: %v", data, err)
			}
			events = append(events, ev)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("read stream: %v", err)
		}
		if len(events) != count+1 || !events[count].Done {
			t.Fatalf("got %d events (%+v), want %d and a final done event", len(events), events, count+1)
		}
		for i, ev := range events[:count] {
			if ev.Index == nil || *ev.Index != i {
				t.Fatalf("event %d out of order: %+v", i, ev)
			}
		}
		// Incremental: the first event reached the client before the agent
		// had even produced the last one, and arrivals spread out the way
		// the agent spaced them.
		lastSent := time.UnixMilli(events[count-1].SentAtMs)
		if !events[0].arrived.Before(lastSent) {
			t.Errorf("first event arrived at %s, after the agent sent the last one at %s: the stream was buffered",
				events[0].arrived.Format(time.StampMilli), lastSent.Format(time.StampMilli))
		}
		spread := events[count-1].arrived.Sub(events[0].arrived)
		if want := time.Duration(count-1) * interval / 2; spread < want {
			t.Errorf("events arrived within %s, want them spread over at least %s", spread, want)
		}
		var gaps []string
		for i := 1; i < count; i++ {
			gaps = append(gaps, events[i].arrived.Sub(events[i-1].arrived).Round(time.Millisecond).String())
		}
		t.Logf("first event %s after the call, then gaps %s", events[0].arrived.Sub(start).Round(time.Millisecond), strings.Join(gaps, " "))
	})

	t.Run("HealthyBusy keeps the session past its idle timeout", func(t *testing.T) {
		const idle = 2 * time.Second
		const task = 4 * time.Second
		busy, plain := newSessionID(), newSessionID()
		// Start both sandboxes first, together, so that what follows is
		// timed from warm calls, whatever a cold start costs here.
		arn := b.arn(t, "tsagent")
		warm := make(chan error, 2)
		for _, sid := range []string{busy, plain} {
			go func() {
				out, err := b.client.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
					AgentRuntimeArn: aws.String(arn), RuntimeSessionId: aws.String(sid), ContentType: aws.String("application/json"),
					Payload: []byte(`{"action":"whoami"}`)})
				if err == nil {
					out.Response.Close()
				}
				warm <- err
			}()
		}
		for range 2 {
			if err := <-warm; err != nil {
				t.Fatalf("start a session: %v", err)
			}
		}
		started := time.Now()
		st := b.tsInvoke(t, "tsagent", busy, map[string]any{"action": "busy", "ms": task.Milliseconds()})
		if st.PingStatus != "HealthyBusy" || st.AsyncTasks != 1 {
			t.Fatalf("after addAsyncTask the agent reports %s with %d tasks", st.PingStatus, st.AsyncTasks)
		}
		ctl := b.tsInvoke(t, "tsagent", plain, map[string]any{"action": "whoami"})
		lastCall := time.Now()

		// The control session, invoked at the same moment and otherwise
		// alike, is reaped after its idle timeout...
		waitFor(t, 15*time.Second, "the control session to be reaped", func() bool {
			_, ok := b.live(plain)
			return !ok
		})
		reaped := time.Since(lastCall)
		if reaped < idle-200*time.Millisecond {
			t.Fatalf("control session ended %s after its last call, before its %s idle timeout", reaped, idle)
		}
		// ...while the busy one lives on, held by HealthyBusy.
		in, ok := b.live(busy)
		if !ok {
			t.Fatalf("the busy session was reaped %s after its last call, while its async task still ran", time.Since(lastCall))
		}
		if !in.Busy {
			t.Errorf("berth does not see the busy session as busy: %+v", in)
		}
		t.Logf("control reaped %s after its last call; busy session still live (busy=%v)", reaped.Round(time.Millisecond), in.Busy)

		// Once the task completes, /ping says Healthy and the idle timeout
		// applies again.
		waitFor(t, task+idle+10*time.Second, "the busy session to end after its task", func() bool {
			_, ok := b.live(busy)
			return !ok
		})
		if ended := time.Since(started); ended < task {
			t.Fatalf("busy session ended %s after the task started, before the %s task finished", ended, task)
		}
		t.Logf("busy session ended %s after its task started (task %s, idle timeout %s)",
			time.Since(started).Round(time.Millisecond), task, idle)

		// Both sessions start afresh: their module-level state is gone.
		if again := b.tsInvoke(t, "tsagent", busy, map[string]any{}); again.Instance == st.Instance || again.Invocations != 1 {
			t.Errorf("busy session was not restarted afresh: %+v, was %s", again, st.Instance)
		}
		if again := b.tsInvoke(t, "tsagent", plain, map[string]any{}); again.Instance == ctl.Instance || again.Invocations != 1 {
			t.Errorf("control session was not restarted afresh: %+v, was %s", again, ctl.Instance)
		}
	})

	t.Run("registered through the control plane", func(t *testing.T) {
		// As one would register it with AWS, but with the code on the berth
		// host: bucket "berth-local", prefix = the code directory.
		ctl := bedrockagentcorecontrol.New(bedrockagentcorecontrol.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(b.d.URL()),
			Credentials:  credentials.NewStaticCredentialsProvider("AKIDBERTHCOMPAT", "secret", ""),
			Retryer:      aws.NopRetryer{},
		})
		// Code registered through the API must lie under a code root.
		dir := filepath.Join(codeRoot, "tsagent")
		if out, err := exec.Command("cp", "-a", npmProject(t, tsAgentDir, "agent.js"), dir).CombinedOutput(); err != nil {
			t.Fatalf("copy the agent under the code root: %v: %s", err, out)
		}
		created, err := ctl.CreateAgentRuntime(context.Background(), &bedrockagentcorecontrol.CreateAgentRuntimeInput{
			AgentRuntimeName: aws.String("tsagent_api"),
			AgentRuntimeArtifact: &ctltypes.AgentRuntimeArtifactMemberCodeConfiguration{Value: ctltypes.CodeConfiguration{
				Code:       &ctltypes.CodeMemberS3{Value: ctltypes.S3Location{Bucket: aws.String("berth-local"), Prefix: aws.String(dir)}},
				Runtime:    ctltypes.AgentManagedRuntimeTypeNode22,
				EntryPoint: []string{"agent.js"},
			}},
			RoleArn:              aws.String("arn:aws:iam::123456789012:role/agentcore-runtime"),
			NetworkConfiguration: &ctltypes.NetworkConfiguration{NetworkMode: ctltypes.NetworkModePublic},
		})
		if err != nil {
			t.Fatalf("CreateAgentRuntime: %v", err)
		}
		arn := aws.ToString(created.AgentRuntimeArn)
		sid := newSessionID()
		body, _ := json.Marshal(map[string]any{"action": "remember", "note": "via the control plane"})
		in := &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn:  aws.String(arn),
			RuntimeSessionId: aws.String(sid),
			Payload:          body,
		}
		// Left to itself the Go SDK labels the payload
		// application/octet-stream, which the TypeScript SDK's server
		// refuses with 415, on AWS as here: the agent's answer is relayed
		// as a RuntimeClientError.
		_, err = b.client.InvokeAgentRuntime(context.Background(), in)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "RuntimeClientError" || !strings.Contains(ae.ErrorMessage(), "415") {
			t.Fatalf("payload without a JSON content type: got %v, want RuntimeClientError relaying the agent's 415", err)
		}
		in.ContentType = aws.String("application/json")
		out, err := b.client.InvokeAgentRuntime(context.Background(), in)
		if err != nil {
			t.Fatalf("invoke %s: %v", arn, err)
		}
		defer out.Response.Close()
		var st tsState
		if err := json.NewDecoder(out.Response).Decode(&st); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if st.SessionID != sid || !slices.Equal(st.Notes, []string{"via the control plane"}) {
			t.Errorf("agent registered through the control plane answered %+v", st)
		}
		t.Logf("%s runs node agent.js from %s", arn, dir)
	})

	// The tutorial calls invoke_agent_runtime without contentType, and
	// boto3 then sends no Content-Type; the agent must still get JSON.
	t.Run("boto3 without a content type", func(t *testing.T) {
		python := requireBoto3(t)
		script := `import boto3, json, sys
c = boto3.client("bedrock-agentcore", endpoint_url=sys.argv[1])
r = c.invoke_agent_runtime(agentRuntimeArn=sys.argv[2], runtimeSessionId=sys.argv[3],
    payload=json.dumps({"action": "remember", "note": "no content type"}), qualifier="DEFAULT")
print(json.dumps({"contentType": r["contentType"], "body": json.loads(r["response"].read())}))`
		cmd := exec.Command(python, "-c", script, b.d.URL(), b.arn(t, "patient"), newSessionID())
		cmd.Env = clientEnv()
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("boto3 call: %v: %s", err, stderr)
		}
		var got struct {
			ContentType string  `json:"contentType"`
			Body        tsState `json:"body"`
		}
		if err := json.Unmarshal(out, &got); err != nil || !slices.Equal(got.Body.Notes, []string{"no content type"}) {
			t.Fatalf("boto3 without contentType: %s (%v)", out, err)
		}
	})

	t.Run("sessions are isolated", func(t *testing.T) {
		a, bb := newSessionID(), newSessionID()
		a1 := b.tsInvoke(t, "patient", a, map[string]any{"action": "remember", "note": "alpha"})
		b1 := b.tsInvoke(t, "patient", bb, map[string]any{"action": "remember", "note": "beta"})
		a2 := b.tsInvoke(t, "patient", a, map[string]any{"action": "whoami"})
		b2 := b.tsInvoke(t, "patient", bb, map[string]any{"action": "whoami"})

		if a1.Instance != a2.Instance || a2.Invocations != a1.Invocations+1 {
			t.Errorf("session A lost its state: %+v then %+v", a1, a2)
		}
		if b1.Instance != b2.Instance || b2.Invocations != b1.Invocations+1 {
			t.Errorf("session B lost its state: %+v then %+v", b1, b2)
		}
		if a1.Instance == b1.Instance {
			t.Errorf("sessions A and B share one agent process (%s)", a1.Instance)
		}
		if !slices.Equal(a2.Notes, []string{"alpha"}) || !slices.Equal(b2.Notes, []string{"beta"}) {
			t.Errorf("module-level state crossed sessions: A remembers %q, B remembers %q", a2.Notes, b2.Notes)
		}
		// Both bound 0.0.0.0:8080 at once: only separate network
		// namespaces allow that.
		t.Logf("A: instance %s pid %d; B: instance %s pid %d; both on :8080", a2.Instance, a2.PID, b2.Instance, b2.PID)
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func deref(s *string) string {
	if s == nil {
		return "(unset)"
	}
	return *s
}
