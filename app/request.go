package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/berth-dev/berth/api"
)

// Identity headers the runtime may send (AgentCore's contract; the Python SDK
// reads the same names). http.Header.Get canonicalises them.
const (
	headerWorkloadAccessToken = "WorkloadAccessToken"
	headerWorkloadAccessWAT   = "X-Amz-Bedrock-AgentCore-Identity-WAT"
	headerOAuth2CallbackURL   = "OAuth2CallbackUrl"
)

// RequestContext describes the invocation being handled: the Go counterpart
// of the Python SDK's RequestContext and BedrockAgentCoreContext.
type RequestContext struct {
	// SessionID is the runtime session ID; empty if the caller sent none.
	SessionID string
	// RequestID identifies this invocation; generated (a UUID) when the
	// runtime did not send one.
	RequestID string
	// UserID is the runtime user ID, when the caller supplied one.
	UserID string
	// WorkloadAccessToken is the identity token the runtime delivers for
	// outbound credentials, if any.
	WorkloadAccessToken string
	// OAuth2CallbackURL is the 3LO callback URL, if any.
	OAuth2CallbackURL string
	// Headers are the request headers the runtime forwarded (Authorization,
	// X-Amzn-Bedrock-AgentCore-Runtime-Custom-*, allow-listed and tracing
	// headers), without hop-by-hop and framing headers. Never nil.
	Headers http.Header
	// Request is the raw request. Its body has already been read.
	Request *http.Request
	// Logger is the app's logger with session_id and request_id attached.
	// Never nil.
	Logger *slog.Logger
}

// CustomHeaders returns the X-Amzn-Bedrock-AgentCore-Runtime-Custom-* headers,
// keyed by their canonical names, multiple values joined with ", ".
func (rc *RequestContext) CustomHeaders() map[string]string {
	out := make(map[string]string)
	for k, v := range rc.Headers {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), api.HeaderCustomPrefix) {
			out[http.CanonicalHeaderKey(k)] = strings.Join(v, ", ")
		}
	}
	return out
}

type requestKey struct{}

// RequestFrom returns the invocation context the app attached to ctx. For a
// ctx that did not come from the app it returns an empty RequestContext
// (with non-nil Headers and Logger), so handlers never need a nil check.
func RequestFrom(ctx context.Context) *RequestContext {
	if rc, ok := ctx.Value(requestKey{}).(*RequestContext); ok {
		return rc
	}
	return &RequestContext{Headers: make(http.Header), Logger: slog.Default()}
}

// ContextWithRequest returns a copy of ctx carrying rc. The app calls it for
// every invocation; tests use it to call a Handler directly.
func ContextWithRequest(ctx context.Context, rc *RequestContext) context.Context {
	return context.WithValue(ctx, requestKey{}, rc)
}

// newRequestContext reads the runtime's headers off r. It is independent of
// the route so any entrypoint (invocations today, WebSocket upgrades later)
// sees the same context.
func newRequestContext(r *http.Request, logger *slog.Logger) *RequestContext {
	h := r.Header
	rc := &RequestContext{
		SessionID:         h.Get(api.HeaderSessionID),
		RequestID:         h.Get(api.HeaderRequestID),
		UserID:            h.Get(api.HeaderUserID),
		OAuth2CallbackURL: h.Get(headerOAuth2CallbackURL),
		Headers:           forwardedHeaders(h),
		Request:           r,
	}
	if rc.RequestID == "" {
		rc.RequestID = newUUID()
	}
	// The newer WAT header wins over the legacy one, as in the Python SDK.
	rc.WorkloadAccessToken = h.Get(headerWorkloadAccessWAT)
	if rc.WorkloadAccessToken == "" {
		rc.WorkloadAccessToken = h.Get(headerWorkloadAccessToken)
	}
	var attrs []any
	if rc.SessionID != "" {
		attrs = append(attrs, slog.String("session_id", rc.SessionID))
	}
	attrs = append(attrs, slog.String("request_id", rc.RequestID))
	rc.Logger = logger.With(attrs...)
	return rc
}

// hopByHop headers describe one connection, not the request (RFC 9110 §7.6.1),
// plus Content-Length, which is framing.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length",
}

// forwardedHeaders copies h without hop-by-hop headers. berth has already
// dropped anything not on the runtime's allowlist.
func forwardedHeaders(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		return make(http.Header)
	}
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				out.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		out.Del(name)
	}
	return out
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
