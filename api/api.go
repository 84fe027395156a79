// Package api holds berth's public wire vocabulary: the AgentCore header
// names, ping statuses, error types and the JSON shapes shared by the
// server, the Go client and the agent SDK. It imports only the standard
// library so agent authors never pull in the daemon.
package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Headers on the AgentCore data plane. Go canonicalises header keys, so these
// are spelled in canonical form.
const (
	HeaderSessionID       = "X-Amzn-Bedrock-Agentcore-Runtime-Session-Id"
	HeaderRequestID       = "X-Amzn-Bedrock-Agentcore-Runtime-Request-Id"
	HeaderUserID          = "X-Amzn-Bedrock-Agentcore-Runtime-User-Id"
	HeaderCustomPrefix    = "X-Amzn-Bedrock-Agentcore-Runtime-Custom-"
	HeaderErrorType       = "X-Amzn-Errortype"
	HeaderAWSRequestID    = "X-Amzn-Requestid"
	HeaderTraceID         = "X-Amzn-Trace-Id"
	HeaderTraceParent     = "Traceparent"
	HeaderTraceState      = "Tracestate"
	HeaderBaggage         = "Baggage"
	HeaderSessionEndpoint = "X-Amzn-Bedrock-Agentcore-Runtime-Session-Endpoint-Url"
	// HeaderWorkloadAccessToken carries the agent's workload access token:
	// on berth an opaque token of berth's own, naming the caller. Newer
	// AgentCore SDKs read HeaderIdentityWAT first; berth sends both.
	HeaderWorkloadAccessToken = "Workloadaccesstoken"
	HeaderIdentityWAT         = "X-Amz-Bedrock-Agentcore-Identity-Wat"
)

// Session ID length bounds on input (BOTO-DP SessionType).
const (
	MinSessionIDLen = 33
	MaxSessionIDLen = 256
)

// MaxPayloadBytes is AgentCore's payload limit, berth's default.
const MaxPayloadBytes = 100_000_000

// DefaultQualifier is the endpoint used when a request names none.
const DefaultQualifier = "DEFAULT"

// Agent paths inside a sandbox (the AgentCore service contract).
const (
	PathInvocations = "/invocations"
	PathPing        = "/ping"
	PathWebSocket   = "/ws"
)

// PingStatus is what an agent's /ping reports.
type PingStatus string

const (
	PingHealthy     PingStatus = "Healthy"
	PingHealthyBusy PingStatus = "HealthyBusy"
)

// PingResponse is the body of GET /ping.
type PingResponse struct {
	Status           PingStatus `json:"status"`
	TimeOfLastUpdate int64      `json:"time_of_last_update"`
}

// ParsePing reads an agent's answer to GET /ping: healthy only with a 200;
// a bare 200 without the JSON body counts as Healthy.
func ParsePing(status int, body []byte) (PingResponse, error) {
	if status != http.StatusOK {
		return PingResponse{}, fmt.Errorf("ping answered %d", status)
	}
	var pr PingResponse
	if json.Unmarshal(body, &pr) != nil || pr.Status == "" {
		pr.Status = PingHealthy
	}
	return pr, nil
}

// ErrorType names an AgentCore error, as sent in X-Amzn-ErrorType.
type ErrorType string

const (
	ErrValidation        ErrorType = "ValidationException"
	ErrUnauthorized      ErrorType = "UnauthorizedException"
	ErrServiceQuota      ErrorType = "ServiceQuotaExceededException"
	ErrAccessDenied      ErrorType = "AccessDeniedException"
	ErrResourceNotFound  ErrorType = "ResourceNotFoundException"
	ErrConflict          ErrorType = "ConflictException"
	ErrRetryableConflict ErrorType = "RetryableConflictException"
	ErrRuntimeClient     ErrorType = "RuntimeClientError"
	ErrThrottling        ErrorType = "ThrottlingException"
	ErrInternalServer    ErrorType = "InternalServerException"

	// AWS's authentication errors, answered before any operation runs.
	ErrUnrecognizedClient  ErrorType = "UnrecognizedClientException"
	ErrInvalidSignature    ErrorType = "InvalidSignatureException"
	ErrMissingAuthToken    ErrorType = "MissingAuthenticationTokenException"
	ErrIncompleteSignature ErrorType = "IncompleteSignatureException"

	// ErrMCPUnacceptable: an MCP call whose Accept header lacks
	// application/json or text/event-stream (JSON-RPC -32011 on MCP's wire).
	ErrMCPUnacceptable ErrorType = "McpRequestUnacceptable"
)

// StatusCode is the HTTP status AgentCore uses for t.
func (t ErrorType) StatusCode() int {
	switch t {
	case ErrValidation, ErrIncompleteSignature:
		return 400
	case ErrUnauthorized:
		return 401
	case ErrServiceQuota:
		return 402
	case ErrAccessDenied, ErrUnrecognizedClient, ErrInvalidSignature, ErrMissingAuthToken:
		return 403
	case ErrResourceNotFound:
		return 404
	case ErrConflict, ErrRetryableConflict:
		return 409
	case ErrRuntimeClient:
		return 424
	case ErrThrottling:
		return 429
	case ErrMCPUnacceptable:
		return 406
	default:
		return 500
	}
}

// ErrorBody is the JSON body of an AgentCore error response.
type ErrorBody struct {
	Message   string       `json:"message"`
	Reason    string       `json:"reason,omitempty"`
	FieldList []FieldError `json:"fieldList,omitempty"`
}

// RPCErrorResponse is a JSON-RPC 2.0 error response: how berth's own errors
// read to MCP and A2A clients.
type RPCErrorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   RPCError        `json:"error"`
}

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int           `json:"code"`
	Message string        `json:"message"`
	Data    *RPCErrorData `json:"data,omitempty"`
}

// RPCErrorData names the AgentCore error type behind a JSON-RPC error.
type RPCErrorData struct {
	Type string `json:"type"`
}

// RunErrorEvent is AG-UI's RUN_ERROR event: how berth's own errors read to
// AG-UI clients.
type RunErrorEvent struct {
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// FieldError names one invalid input field in a ValidationException.
type FieldError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Error is an AgentCore error as a client sees it.
type Error struct {
	Type       ErrorType
	Message    string
	StatusCode int
	RequestID  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Type, e.StatusCode, e.Message)
}

// SanitizeErrorType strips the namespace and URI decorations AWS services may
// add, as the SDKs do: "ns#Type:uri" becomes "Type".
func SanitizeErrorType(s string) ErrorType {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	return ErrorType(s)
}

// ValidSessionID reports whether id is acceptable as a runtime session ID:
// 33 to 256 characters of AgentCore's session ID pattern
// [a-zA-Z0-9][a-zA-Z0-9-_]*, which also keeps an ID from carrying
// separators into the places berth writes it.
func ValidSessionID(id string) bool {
	if len(id) < MinSessionIDLen || len(id) > MaxSessionIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Environment variables berth sets in every sandbox, read by agents (and by
// the app SDK).
const (
	// EnvPort is the port the agent listens on. Where berth gives each
	// sandbox its own network namespace it is the protocol's standard port.
	EnvPort = "PORT"
	// EnvAgentHost is the address the agent binds.
	EnvAgentHost = "BERTH_AGENT_HOST"
	// EnvStateSocket is the Unix socket of a durable session's saved state,
	// and EnvStateMaxBytes the cap on one save.
	EnvStateSocket   = "BERTH_STATE_SOCKET"
	EnvStateMaxBytes = "BERTH_STATE_MAX_BYTES"
	// EnvRuntimeARN is the runtime's ARN, as AgentCore sets it.
	EnvRuntimeARN = "AGENTCORE_RUNTIME_ARN"
	// EnvRuntimeURL is the runtime's public invocation URL, ending in a
	// slash (an A2A agent's base URL): A2A agents put it in their card.
	EnvRuntimeURL = "AGENTCORE_RUNTIME_URL"
	// EnvOTELResourceAttributes carries the runtime's name and ARN and the
	// session ID to the agent's OpenTelemetry SDK.
	EnvOTELResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
)

// DefaultStateMaxBytes is berth's default cap on one durable session's
// saved state.
const DefaultStateMaxBytes = 10 << 20

// The durable-state socket's HTTP route, served by berth and spoken by
// app.State: GET, PUT and DELETE.
const PathState = "/state"

// InvocationURL is a runtime's InvokeAgentRuntime URL under base (berth's
// scheme and host), its ARN escaped into one path segment, colons included,
// as the AWS SDKs escape it.
func InvocationURL(base, arn string) string {
	return base + PathRuntimes + strings.ReplaceAll(url.PathEscape(arn), ":", "%3A") + PathInvocations
}
