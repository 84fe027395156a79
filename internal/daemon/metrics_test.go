package daemon_test

import (
	"context"
	"encoding/json"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/telemetry/telemetrytest"
)

// series names one metric's series by a subset of its labels.
type series struct {
	name   string
	labels []string
}

func (e *env) scrape() telemetrytest.Families {
	return telemetrytest.Scrape(e.t, e.d.URL()+"/metrics")
}

// target is a runtime's labels on its DEFAULT endpoint, plus extra.
func (e *env) target(name string, extra ...string) []string {
	for _, rt := range e.d.Runtimes() {
		if rt.Name == name {
			return append([]string{"runtime_id", rt.ID, "runtime", name, "endpoint", "DEFAULT"}, extra...)
		}
	}
	e.t.Fatalf("no runtime %q", name)
	return nil
}

// waitMetric scrapes until s reaches want, for values recorded after the
// response reached the client.
func (e *env) waitMetric(s series, want float64) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.scrape().Sum(s.name, s.labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s%v = %v, want %v", s.name, s.labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsScrape: after real calls through a real server, /metrics,
// read with Prometheus' own parser, moved by exactly what the calls did.
func TestMetricsScrape(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before := e.scrape()

	sid := newSessionID()
	e.echo(sid)
	e.echo(sid)
	_, err := e.client.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn: aws.String("arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/nope-0123456789"),
		Payload:         []byte(`{}`)})
	wantAPIError(t, err, "ResourceNotFoundException", 404)
	_, err = e.invoke(ctx, "echo", newSessionID(), map[string]any{"op": "status", "code": 500})
	wantAPIError(t, err, "RuntimeClientError", 424)
	if _, err := e.client.StopRuntimeSession(ctx, &bedrockagentcore.StopRuntimeSessionInput{
		AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(sid)}); err != nil {
		t.Fatal(err)
	}
	after := e.scrape()

	unresolved := []string{"runtime_id", "", "runtime", "", "endpoint", "", "kind", "invoke"}
	for _, c := range []struct {
		series
		delta float64
	}{
		// Two echoes and the 424; StopRuntimeSession is not an invocation.
		{series{"berth_invocations_total", e.target("echo", "kind", "invoke")}, 3},
		{series{"berth_invocation_latency_seconds", e.target("echo", "kind", "invoke")}, 3},
		{series{"berth_invocation_user_errors_total", e.target("echo", "error_type", "RuntimeClientError")}, 1},
		{series{"berth_invocation_user_errors_total", e.target("echo")}, 1},
		{series{"berth_invocations_total", unresolved}, 1},
		{series{"berth_invocation_user_errors_total", append(unresolved, "error_type", "ResourceNotFoundException")}, 1},
		{series{"berth_invocation_system_errors_total", nil}, 0},
		{series{"berth_invocation_throttles_total", nil}, 0},
		// Two sessions: the echoed one, and the one whose agent answered 500.
		{series{"berth_sessions_started_total", e.target("echo", "backend", "process", "warm", "false")}, 2},
		{series{"berth_session_start_seconds", e.target("echo", "warm", "false")}, 2},
		{series{"berth_sessions_ended_total", e.target("echo", "reason", "stopped")}, 1},
		{series{"berth_sessions_ended_total", e.target("echo")}, 1},
		{series{"berth_session_lifetime_seconds", e.target("echo")}, 1},
	} {
		if got := after.Sum(c.name, c.labels...) - before.Sum(c.name, c.labels...); got != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.delta)
		}
	}
	if got := after.Sum("berth_active_sessions", e.target("echo", "state", "idle")...); got != 1 {
		t.Errorf("berth_active_sessions{echo, idle} = %v, want 1 (the session that answered 500)", got)
	}
}

// TestMetricsQueueAndThrottle: a call waiting its turn shows in the queue
// depth, and one refused by a full queue counts as a throttle.
func TestMetricsQueueAndThrottle(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Runtimes = append(c.Runtimes, config.Runtime{Name: "queued", Settings: registry.Settings{
			Command: c.Runtimes[0].Command, Sandbox: registry.BackendProcess,
			Sessions: registry.SessionPolicy{Concurrency: registry.ConcurrencyQueue, QueueSize: 1, QueueTimeout: config.Duration(time.Minute)}}})
	})
	ctx := context.Background()
	sid := newSessionID()
	call := func(ctx context.Context, op map[string]any) error {
		out, err := e.invoke(ctx, "queued", sid, op)
		if err == nil {
			var v any
			err = json.NewDecoder(out.Response).Decode(&v)
			out.Response.Close()
		}
		return err
	}
	if err := call(ctx, map[string]any{"op": "echo"}); err != nil {
		t.Fatal(err)
	}

	// A holds the session's one turn until cancelled; B waits for it.
	holdCtx, release := context.WithCancel(ctx)
	defer release()
	var wg sync.WaitGroup
	wg.Go(func() { call(holdCtx, map[string]any{"op": "sleep", "ms": 60_000}) })
	e.waitMetric(series{"berth_active_sessions", e.target("queued", "state", "active")}, 1)
	var waitedErr error
	wg.Go(func() { waitedErr = call(ctx, map[string]any{"op": "echo"}) })
	depth := series{"berth_session_queue_depth", e.target("queued")}
	e.waitMetric(depth, 1)

	err := call(ctx, map[string]any{"op": "echo"})
	wantAPIError(t, err, "ThrottlingException", 429)
	release()
	wg.Wait()
	if waitedErr != nil {
		t.Fatalf("queued call: %v", waitedErr)
	}
	e.waitMetric(series{"berth_invocations_total", e.target("queued")}, 4)
	e.waitMetric(series{"berth_invocation_throttles_total", e.target("queued", "kind", "invoke")}, 1)
	e.waitMetric(depth, 0)
}

// TestMetricsUsage: the usage counters grow from the sandboxes' own CPU
// and memory accounting (cgroups on linux, /proc on process).
func TestMetricsUsage(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		start := time.Now()
		out, err := e.invoke(context.Background(), "echo", newSessionID(), map[string]any{"op": "alloc", "ms": 64})
		if err != nil {
			t.Fatal(err)
		}
		out.Response.Close()
		f := e.scrape()
		cpu := f.Sum("berth_session_cpu_seconds_total", e.target("echo")...)
		mem := f.Sum("berth_session_memory_gb_seconds_total", e.target("echo")...)
		elapsed := time.Since(start).Seconds()
		t.Logf("%s: %.3f vCPU-s, %.4f GiB-s within %.2f s", backend, cpu, mem, elapsed)
		if cpu <= 0 || cpu > elapsed*float64(runtime.NumCPU()) {
			t.Errorf("cpu %v s after %v s on %d CPUs: want some, and no more than the CPUs had", cpu, elapsed, runtime.NumCPU())
		}
		if mem <= 0 {
			t.Errorf("memory %v GiB·s, want some", mem)
		}
		if again := e.scrape().Sum("berth_session_memory_gb_seconds_total", e.target("echo")...); again < mem {
			t.Errorf("memory counter fell from %v to %v", mem, again)
		}
	})
}
