package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The data-plane operations that get a server span, by AgentCore's names.
const (
	OpInvoke    = "InvokeAgentRuntime"
	OpCommand   = "InvokeAgentRuntimeCommand"
	OpStop      = "StopRuntimeSession"
	OpWebSocket = "InvokeAgentRuntimeWithWebSocketStream"
	// OpGetAgentCard reads an A2A agent's card.
	OpGetAgentCard = "GetAgentCard"
)

// The attributes of AgentCore's service spans (the aws/spans log group),
// and the baggage key the session ID travels under.
const (
	attrOperation    = "aws.operation.name"
	attrResourceARN  = "aws.resource.arn"
	attrResourceType = "aws.resource.type"
	attrRequestID    = "aws.request_id"
	attrAgentID      = "aws.agent.id"
	attrEndpoint     = "aws.endpoint.name"
	attrAccount      = "aws.account.id"
	attrRegion       = "aws.region"
	attrSessionID    = "session.id"
	attrLatencyMS    = "latency_ms"
	attrErrorType    = "error_type"
	// BaggageSessionID is the baggage member that carries the session ID
	// to the agent, as AgentCore sends it.
	BaggageSessionID = "session.id"

	resourceTypeRuntime = "AWS::BedrockAgentCore::Runtime"
)

// Agent environment: what AgentCore sets for the ADOT SDKs.
const (
	envObservability = "AGENT_OBSERVABILITY_ENABLED"
	envDisableADOT   = "DISABLE_ADOT_OBSERVABILITY"
)

// TracingOptions configure Tracing. The exporter itself is configured the
// standard way, by the OTEL_EXPORTER_OTLP_* environment variables.
type TracingOptions struct {
	// Getenv reads the environment; default os.Getenv.
	Getenv func(string) string
	// Region and Account are the aws.region and aws.account.id of every
	// server span.
	Region, Account string
	// Version is berth's service.version.
	Version string
	// Exporter, if set, replaces the OTLP exporter (tests).
	Exporter sdktrace.SpanExporter
}

// Tracing is berth's OpenTelemetry tracing: server spans for data-plane
// operations with AgentCore's attribute names, and the trace context an
// agent receives. With no exporter configured it is off, and costs the
// invocation path nothing but the session.id baggage member.
type Tracing struct {
	tp       trace.TracerProvider
	tracer   trace.Tracer
	sdk      *sdktrace.TracerProvider // nil when off
	prop     propagation.TextMapPropagator
	common   []attribute.KeyValue
	agentEnv []string
}

// Off is tracing that records nothing.
func Off() *Tracing {
	tp := noop.NewTracerProvider()
	return &Tracing{tp: tp, tracer: tp.Tracer(""), prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
}

// NewTracing reads the standard OTEL_* variables: an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns
// tracing on; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keep it
// off. berth exports OTLP over HTTP (http/protobuf) only.
func NewTracing(ctx context.Context, opts TracingOptions) (*Tracing, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t := Off()
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return t, nil
	}
	exp := opts.Exporter
	if exp == nil {
		switch e := strings.ToLower(getenv("OTEL_TRACES_EXPORTER")); e {
		case "", "otlp":
		case "none":
			return t, nil
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: berth exports traces with otlp only (or none)", e)
		}
		endpoint := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
		if endpoint == "" {
			return t, nil
		}
		switch p := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p {
		case "", "http/protobuf":
		default:
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: berth exports OTLP over http/protobuf only", p)
		}
		var err error
		// The exporter reads the rest of OTEL_EXPORTER_OTLP_* itself:
		// headers, timeout, compression, certificates.
		if exp, err = otlptracehttp.New(ctx); err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		t.agentEnv = agentOTLPEnv(getenv)
	}
	version := opts.Version
	if bi, ok := debug.ReadBuildInfo(); ok && version == "" {
		version = bi.Main.Version
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "berth"), attribute.String("service.version", version)),
		resource.WithFromEnv()) // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	if err != nil && res == nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	// The sampler follows OTEL_TRACES_SAMPLER (default: the caller's
	// decision, else always), the batcher OTEL_BSP_*.
	t.sdk = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t.tp = t.sdk
	t.tracer = t.sdk.Tracer("github.com/berth-dev/berth")
	t.common = []attribute.KeyValue{
		attribute.String(attrResourceType, resourceTypeRuntime),
		attribute.String(attrRegion, opts.Region),
		attribute.String(attrAccount, opts.Account),
	}
	return t, nil
}

func firstSet(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// agentOTLPEnv is what agents get to export to berth's collector: the
// endpoint berth exports to and AgentCore's ADOT switch.
func agentOTLPEnv(getenv func(string) string) []string {
	env := []string{envObservability + "=true", "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}
	for _, n := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if v := getenv(n); v != "" {
			env = append(env, n+"="+v)
		}
	}
	return env
}

// Enabled reports whether spans are recorded and exported. A nil Tracing
// is off.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// TracerProvider is where other packages (the session manager) get their
// tracers.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.tp }

// Shutdown flushes the spans still queued and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

// AgentEnv is the OpenTelemetry environment of one agent, as AgentCore
// sets it for the ADOT SDKs: OTEL_RESOURCE_ATTRIBUTES always; while
// berth exports traces, also the collector's endpoint and
// AGENT_OBSERVABILITY_ENABLED, so the agent's own spans join berth's
// traces. A runtime whose env sets DISABLE_ADOT_OBSERVABILITY=true gets
// none of them.
func (t *Tracing) AgentEnv(a session.AgentIdentity) []string {
	if strings.EqualFold(a.Env[envDisableADOT], "true") {
		return nil
	}
	env := make([]string, 0, 1+len(t.agentEnv))
	env = append(env, api.EnvOTELResourceAttributes+"="+ResourceAttributes(registry.NameOf(a.RuntimeID), a.ARN, a.SessionID))
	return append(env, t.agentEnv...)
}

// ResourceAttributes is OTEL_RESOURCE_ATTRIBUTES for an agent, as AgentCore
// sets it: service.name is the runtime's name, cloud.resource_id its ARN.
// Values are percent-encoded, as the variable's format (W3C baggage)
// requires.
func ResourceAttributes(runtimeName, arn, sessionID string) string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escapeAttr(v))
	}
	add("service.name", runtimeName)
	add("cloud.resource_id", arn)
	add("aws.agentcore.session_id", sessionID)
	return b.String()
}

// escapeAttr percent-encodes what a W3C baggage value may not hold raw.
func escapeAttr(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c > 0x20 && c < 0x7f && c != ',' && c != ';' && c != '\\' && c != '"' && c != '%' && c != '=' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// StartOperation starts the server span of one data-plane operation,
// continuing the caller's traceparent and baggage. It returns r unchanged
// and a nil span while tracing is off.
func (t *Tracing) StartOperation(r *http.Request, op string) (*http.Request, trace.Span) {
	if !t.Enabled() {
		return r, nil
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	attrs := make([]attribute.KeyValue, 0, len(t.common)+2)
	attrs = append(attrs, attribute.String(attrOperation, op))
	attrs = append(attrs, t.common...)
	ctx, span := t.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return r.WithContext(ctx), span
}

// Operation is what became of a data-plane operation, for its span.
type Operation struct {
	Target
	ARN, SessionID, RequestID string
	Status                    int
	Outcome                   Outcome
	ErrorType                 string // the AgentCore error type answered
	Took                      time.Duration
}

// EndOperation labels the server span with AgentCore's attributes and ends
// it. A nil span (tracing off) is a no-op.
func (t *Tracing) EndOperation(span trace.Span, o Operation) {
	if span == nil {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String(attrRequestID, o.RequestID),
		attribute.Int64(attrLatencyMS, o.Took.Milliseconds()),
		attribute.Int("http.response.status_code", o.Status),
	}
	for _, a := range []struct{ k, v string }{
		{attrResourceARN, o.ARN}, {attrAgentID, o.RuntimeID}, {attrEndpoint, o.Endpoint}, {attrSessionID, o.SessionID},
	} {
		if a.v != "" {
			attrs = append(attrs, attribute.String(a.k, a.v))
		}
	}
	if class := o.Outcome.class(); class != "" {
		attrs = append(attrs, attribute.String(attrErrorType, class))
		span.SetStatus(codes.Error, o.ErrorType)
	}
	span.SetAttributes(attrs...)
	span.End()
}

// class is AgentCore's error_type span attribute: throttle, system or user.
func (o Outcome) class() string {
	switch o {
	case Throttle:
		return "throttle"
	case SystemError:
		return "system"
	case UserError:
		return "user"
	}
	return ""
}

// StartProxy begins the client span of the call berth makes to the agent
// and writes the trace context the agent receives into h: the span's
// traceparent (the caller's, unchanged, while tracing is off) and the
// caller's baggage with session.id set to sessionID. End the span with
// EndProxy.
func (t *Tracing) StartProxy(ctx context.Context, h http.Header, method, path, sessionID string) (context.Context, trace.Span) {
	if !t.Enabled() {
		setSessionBaggage(h, sessionID)
		return ctx, nil
	}
	ctx, span := t.tracer.Start(ctx, method+" "+path, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("url.path", path)))
	bag := baggage.FromContext(ctx)
	if m, err := baggage.NewMemberRaw(BaggageSessionID, sessionID); err == nil {
		if b, err := bag.SetMember(m); err == nil {
			bag = b
		}
	}
	// Inject replaces what the caller sent: the agent's parent is the
	// proxy span.
	h.Del(api.HeaderTraceParent)
	h.Del(api.HeaderTraceState)
	h.Del(api.HeaderBaggage)
	t.prop.Inject(baggage.ContextWithBaggage(ctx, bag), propagation.HeaderCarrier(h))
	return ctx, span
}

// EndProxy ends the agent call's span with its status (0 if the call got
// no answer) or error.
func EndProxy(span trace.Span, status int, err error) {
	if span == nil {
		return
	}
	if status > 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else if status >= 500 {
		// As OpenTelemetry's HTTP conventions say: the status code
		// attribute says which; the description stays empty.
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// setSessionBaggage sets the session.id member of h's baggage, keeping
// the caller's other members.
func setSessionBaggage(h http.Header, sessionID string) {
	in := h.Values(api.HeaderBaggage)
	if len(in) == 0 {
		h.Set(api.HeaderBaggage, BaggageSessionID+"="+sessionID)
		return
	}
	bag, err := baggage.Parse(strings.Join(in, ","))
	if err != nil {
		// Not ours to repair: the session ID goes first, the caller's
		// header unchanged after it.
		h.Set(api.HeaderBaggage, BaggageSessionID+"="+sessionID+","+strings.Join(in, ","))
		return
	}
	if m, err := baggage.NewMemberRaw(BaggageSessionID, sessionID); err == nil {
		if b, err := bag.SetMember(m); err == nil {
			bag = b
		}
	}
	h.Set(api.HeaderBaggage, bag.String())
}
