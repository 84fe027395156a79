package session

import (
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attributes of the session-start spans (StartSession, StartSandbox,
// FirstPing), berth's own: AgentCore's attributes are on the call's span.
const (
	attrBackend   = "berth.sandbox.backend"
	attrSandboxID = "berth.sandbox.id"
	attrWarm      = "berth.sandbox.warm"
)

// endSpan ends span, marking it failed with err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
