package daemon_test

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/internal/registry"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver on loopback: what a real
// collector would get from berth's exporter.
type collector struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	spans    []*tracepb.Span
	resource map[string]string // the last batch's resource attributes
	changed  chan struct{}     // closed and replaced on every batch
}

func newCollector(t *testing.T) *collector {
	c := &collector{t: t, changed: make(chan struct{})}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.Error(w, "not here", http.StatusNotFound)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, _ := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			t.Errorf("collector: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			c.resource = attrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.Key] = v.GetStringValue()
		case v.GetValue() != nil:
			if iv, ok := v.GetValue().(*commonpb.AnyValue_IntValue); ok {
				m[kv.Key] = itoa(int(iv.IntValue))
			} else if bv, ok := v.GetValue().(*commonpb.AnyValue_BoolValue); ok {
				m[kv.Key] = map[bool]string{true: "true", false: "false"}[bv.BoolValue]
			}
		}
	}
	return m
}

// waitFor waits until the collector holds a span that match accepts, and
// returns it.
func (c *collector) waitFor(what string, match func(*tracepb.Span) bool) *tracepb.Span {
	c.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		for _, s := range c.spans {
			if match(s) {
				c.mu.Unlock()
				return s
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			c.t.Fatalf("the collector never got %s; it has: %s", what, c.describe())
		}
	}
}

// children are the spans whose parent is span.
func (c *collector) children(parent *tracepb.Span) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range c.spans {
		if string(s.ParentSpanId) == string(parent.SpanId) && string(s.TraceId) == string(parent.TraceId) {
			out = append(out, s)
		}
	}
	return out
}

func (c *collector) describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, s := range c.spans {
		b.WriteString("\n  " + s.Name + " " + hex.EncodeToString(s.SpanId) + " parent " + hex.EncodeToString(s.ParentSpanId))
	}
	return b.String()
}

func named(name string) func(*tracepb.Span) bool {
	return func(s *tracepb.Span) bool { return s.Name == name }
}

func onlyNamed(t *testing.T, spans []*tracepb.Span, name string) *tracepb.Span {
	t.Helper()
	var found *tracepb.Span
	for _, s := range spans {
		if s.Name == name {
			if found != nil {
				t.Fatalf("two %s spans under one parent", name)
			}
			found = s
		}
	}
	if found == nil {
		t.Fatalf("no %s span", name)
	}
	return found
}

// TestTraceOfOneInvocation: with an OTLP endpoint set, one invocation from
// the Go SDK makes the span tree AgentCore's service spans have, under the
// caller's trace; the agent gets the trace context and the session ID in
// baggage, and an environment that points its own OpenTelemetry SDK at the
// same collector.
func TestTraceOfOneInvocation(t *testing.T) {
	col := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.srv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	e := newEnv(t, withWSAgent("process"))

	const (
		callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan  = "00f067aa0ba902b7"
	)
	sid := newSessionID()
	traced := func(o *bedrockagentcore.Options) {
		o.APIOptions = append(o.APIOptions,
			smithyhttp.AddHeaderValue("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01"),
			smithyhttp.AddHeaderValue("baggage", "user.tier=gold"))
	}
	envNames := []string{"OTEL_RESOURCE_ATTRIBUTES", "AGENT_OBSERVABILITY_ENABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"}
	out, err := e.invoke(context.Background(), "echo", sid, map[string]any{"op": "echo", "env": envNames}, traced)
	if err != nil {
		t.Fatal(err)
	}
	requestID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	var r struct {
		echoReply
		Env map[string]string `json:"env"`
	}
	err = json.NewDecoder(out.Response).Decode(&r)
	out.Response.Close()
	if err != nil {
		t.Fatal(err)
	}

	// The server span continues the caller's trace.
	arn := e.arn("echo")
	server := col.waitFor("the InvokeAgentRuntime span", named("InvokeAgentRuntime"))
	if got := hex.EncodeToString(server.TraceId); got != callerTrace {
		t.Errorf("trace %s, want the caller's %s", got, callerTrace)
	}
	if got := hex.EncodeToString(server.ParentSpanId); got != callerSpan {
		t.Errorf("parent %s, want the caller's span %s", got, callerSpan)
	}
	if server.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("kind %v, want server", server.Kind)
	}
	a := attrs(server.Attributes)
	for k, v := range map[string]string{
		"aws.operation.name": "InvokeAgentRuntime",
		"aws.resource.arn":   arn,
		"aws.resource.type":  "AWS::BedrockAgentCore::Runtime",
		"aws.request_id":     requestID,
		"aws.agent.id":       registry.StableID("echo"),
		"aws.endpoint.name":  "DEFAULT",
		"aws.region":         "us-east-1",
		"aws.account.id":     "123456789012",
		"session.id":         sid,
	} {
		if a[k] != v {
			t.Errorf("server span %s = %q, want %q", k, a[k], v)
		}
	}
	if _, ok := a["latency_ms"]; !ok {
		t.Error("server span has no latency_ms")
	}
	if et, ok := a["error_type"]; ok {
		t.Errorf("a successful call has error_type %q", et)
	}
	if requestID == "" {
		t.Error("the SDK saw no request ID")
	}

	// Under it: the session's start (sandbox start, first ping) and the
	// call to the agent.
	kids := col.children(server)
	start := onlyNamed(t, kids, "StartSession")
	sk := col.children(start)
	onlyNamed(t, sk, "StartSandbox")
	onlyNamed(t, sk, "FirstPing")
	proxy := onlyNamed(t, kids, "POST /invocations")
	if proxy.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("proxy span kind %v, want client", proxy.Kind)
	}
	if got := attrs(proxy.Attributes)["http.response.status_code"]; got != "200" {
		t.Errorf("proxy span status %q, want 200", got)
	}
	if col.resource["service.name"] != "berth" {
		t.Errorf("resource service.name %q, want berth", col.resource["service.name"])
	}

	// The agent's parent is the proxy span, in the caller's trace; its
	// baggage keeps the caller's member and adds the session ID.
	tp := r.header("Traceparent")
	if want := "00-" + callerTrace + "-" + hex.EncodeToString(proxy.SpanId) + "-01"; tp != want {
		t.Errorf("agent got traceparent %q, want %q", tp, want)
	}
	bag := r.header("Baggage")
	for _, m := range []string{"user.tier=gold", "session.id=" + sid} {
		if !strings.Contains(bag, m) {
			t.Errorf("agent got baggage %q, want a member %s", bag, m)
		}
	}
	// Its environment points its own SDK at the same collector.
	wantEnv := map[string]string{
		"AGENT_OBSERVABILITY_ENABLED": "true",
		"OTEL_EXPORTER_OTLP_ENDPOINT": col.srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	}
	for k, v := range wantEnv {
		if r.Env[k] != v {
			t.Errorf("agent env %s=%q, want %q", k, r.Env[k], v)
		}
	}
	ra := r.Env["OTEL_RESOURCE_ATTRIBUTES"]
	for _, m := range []string{"service.name=echo", "cloud.resource_id=" + strings.ReplaceAll(arn, "=", "%3D"), "aws.agentcore.session_id=" + sid} {
		if !strings.Contains(ra, m) {
			t.Errorf("agent OTEL_RESOURCE_ATTRIBUTES %q lacks %s", ra, m)
		}
	}

	// A second call into the live session starts nothing.
	out, err = e.invoke(context.Background(), "echo", sid, map[string]any{"op": "echo"})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out.Response)
	out.Response.Close()
	second := col.waitFor("the second InvokeAgentRuntime span", func(s *tracepb.Span) bool {
		return s.Name == "InvokeAgentRuntime" && string(s.SpanId) != string(server.SpanId)
	})
	kids = col.children(second)
	onlyNamed(t, kids, "POST /invocations")
	for _, k := range kids {
		if k.Name == "StartSession" {
			t.Error("a call into a live session has a StartSession span")
		}
	}

	// StopRuntimeSession: its own span; a second stop finds nothing, a
	// user error.
	for range 2 {
		e.client.StopRuntimeSession(context.Background(), &bedrockagentcore.StopRuntimeSessionInput{
			AgentRuntimeArn: aws.String(arn), RuntimeSessionId: aws.String(sid)})
	}
	stopOK := col.waitFor("a successful StopRuntimeSession span", func(s *tracepb.Span) bool {
		return s.Name == "StopRuntimeSession" && attrs(s.Attributes)["error_type"] == ""
	})
	if a := attrs(stopOK.Attributes); a["session.id"] != sid || a["aws.operation.name"] != "StopRuntimeSession" {
		t.Errorf("stop span attributes %v", a)
	}
	stopNF := col.waitFor("a failed StopRuntimeSession span", func(s *tracepb.Span) bool {
		return s.Name == "StopRuntimeSession" && attrs(s.Attributes)["error_type"] != ""
	})
	if got := attrs(stopNF.Attributes)["error_type"]; got != "user" {
		t.Errorf("stop of an ended session: error_type %q, want user", got)
	}
	if stopNF.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || stopNF.Status.GetMessage() != "ResourceNotFoundException" {
		t.Errorf("stop of an ended session: status %v", stopNF.Status)
	}

	// A WebSocket: its server span, and the upgrade to the agent under it.
	c, _ := e.dialSigned(t, "wsagent", newSessionID(), nil)
	readHello(t, t.Context(), c)
	c.CloseNow()
	ws := col.waitFor("the WebSocket span", named("InvokeAgentRuntimeWithWebSocketStream"))
	onlyNamed(t, col.children(ws), "GET /ws")
	if got := attrs(ws.Attributes)["aws.agent.id"]; got != registry.StableID("wsagent") {
		t.Errorf("websocket span aws.agent.id %q", got)
	}
}
