// Package protocol holds one adapter per server protocol AgentCore hosts
// (HTTP, MCP, A2A and AG-UI): the port and path an agent serves, how berth
// decides it is healthy, which session a call names, and which shape
// berth's own errors take on that protocol's wire. The server and the
// session manager ask the adapter; neither branches on the protocol.
//
// The adapter names an error shape; turning a shape into a status, a
// JSON-RPC code or an event is the server's (only internal/server maps
// errors to HTTP), in its one error table.
package protocol

import (
	"net/http"
	"strings"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
)

// Health is how berth decides an agent is up and well.
type Health int

const (
	// HealthPing: GET /ping answers 200, Healthy or HealthyBusy.
	HealthPing Health = iota
	// HealthPort: the agent's port accepts a connection. MCP has no
	// /ping; a server that accepts is ready, and its first call (the
	// client's initialize) proves the rest.
	HealthPort
)

// Shape is the form berth's own errors take on a protocol's wire.
type Shape int

const (
	// ShapeAWS: AgentCore's JSON error body and X-Amzn-ErrorType.
	ShapeAWS Shape = iota
	// ShapeMCP: a JSON-RPC error, HTTP 200 but for 401, 403 and 406.
	ShapeMCP
	// ShapeA2A: a JSON-RPC error with the real HTTP status; 401 and 403
	// stay AgentCore's.
	ShapeA2A
	// ShapeAGUI: an SSE RUN_ERROR event.
	ShapeAGUI
)

// Adapter is how berth hosts agents of one protocol.
type Adapter struct {
	Protocol registry.Protocol
	// Port is where the agent listens when its sandbox has a network of
	// its own; in the host's network it gets a free port in $PORT.
	Port int
	// Path receives invocations inside the sandbox.
	Path string
	// Health says how berth checks the agent.
	Health Health
	// Errors is the shape of berth's own errors.
	Errors Shape
	// RelayAgentErrors: the agent's error answers (4xx, 5xx) belong to the
	// protocol (an MCP server's 404 tells its client to start over), so
	// they reach the client unchanged. Otherwise berth reports them as a
	// runtime client error.
	RelayAgentErrors bool
	// RPC: requests are JSON-RPC, so berth's errors answer the request's id.
	RPC bool
	// Card is the agent card's path inside the sandbox; "" for none.
	Card string
	// BaseURL: the invocation URL with a trailing slash is the agent's
	// base URL too (A2A clients post to the card's url).
	BaseURL bool
	// WebSocket: the agent may serve /ws.
	WebSocket bool
	// SessionHeader carries the protocol's own session ID, both ways;
	// "" when the protocol has none but AgentCore's.
	SessionHeader string
	// AcceptBoth: a call must accept both JSON and SSE answers (MCP's
	// streamable HTTP transport).
	AcceptBoth bool
	// Headers are the protocol's own headers, passed both ways (A2A's
	// version: without it an A2A 1.0 server takes a call for 0.3).
	Headers []string
}

// MCP's headers (the streamable HTTP transport).
const (
	HeaderMCPSession = "Mcp-Session-Id"
	HeaderMCPVersion = "Mcp-Protocol-Version"
)

// Agent card path, A2A's well-known location.
const PathAgentCard = "/.well-known/agent-card.json"

var adapters = map[registry.Protocol]*Adapter{
	registry.ProtocolHTTP: {Protocol: registry.ProtocolHTTP, Port: 8080, Path: api.PathInvocations,
		Health: HealthPing, Errors: ShapeAWS, WebSocket: true},
	registry.ProtocolMCP: {Protocol: registry.ProtocolMCP, Port: 8000, Path: "/mcp",
		Health: HealthPort, Errors: ShapeMCP, RelayAgentErrors: true, RPC: true, SessionHeader: HeaderMCPSession, AcceptBoth: true},
	registry.ProtocolA2A: {Protocol: registry.ProtocolA2A, Port: 9000, Path: "/",
		Health: HealthPing, Errors: ShapeA2A, RelayAgentErrors: true, RPC: true, Card: PathAgentCard, BaseURL: true,
		Headers: []string{"A2A-Version", "A2A-Extensions"}},
	registry.ProtocolAGUI: {Protocol: registry.ProtocolAGUI, Port: 8080, Path: api.PathInvocations,
		Health: HealthPing, Errors: ShapeAGUI, WebSocket: true},
}

// For returns p's adapter; "" is HTTP. The registry's rulebook admits only
// the protocols here.
func For(p registry.Protocol) *Adapter {
	if a, ok := adapters[p]; ok {
		return a
	}
	return adapters[registry.ProtocolHTTP]
}

// Acceptable reports whether a call's Accept header takes the answers the
// protocol may give: both application/json and text/event-stream where
// AcceptBoth; anything elsewhere.
func (a *Adapter) Acceptable(h http.Header) bool {
	if !a.AcceptBoth {
		return true
	}
	var json, sse bool
	for _, v := range h.Values("Accept") {
		for _, part := range splitComma(v) {
			switch mediaType(part) {
			case "application/json", "application/*":
				json = true
			case "text/event-stream", "text/*":
				sse = true
			case "*/*":
				json, sse = true, true
			}
		}
	}
	return json && sse
}

func splitComma(s string) []string { return strings.Split(s, ",") }

// mediaType is an Accept entry's type, without parameters, lower case.
func mediaType(s string) string {
	s, _, _ = strings.Cut(s, ";")
	return strings.ToLower(strings.TrimSpace(s))
}
