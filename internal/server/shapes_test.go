package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/protocol"
	"github.com/berth-dev/berth/internal/registry"
)

// berth's own errors take each protocol's shape, with the codes and
// statuses of AgentCore's "Server protocols" contract (issue 14).
func TestProtocolErrorShapes(t *testing.T) {
	type want struct {
		status int
		code   any // JSON-RPC code (int) or RUN_ERROR code (string); nil: AgentCore's body
	}
	cases := map[api.ErrorType]map[registry.Protocol]want{
		api.ErrUnauthorized: {registry.ProtocolMCP: {401, -32001}, registry.ProtocolA2A: {401, nil}, registry.ProtocolAGUI: {401, "UNAUTHORIZED"}},
		api.ErrAccessDenied: {registry.ProtocolMCP: {403, -32002}, registry.ProtocolA2A: {403, nil}, registry.ProtocolAGUI: {403, "ACCESS_DENIED"}},
		api.ErrThrottling:   {registry.ProtocolMCP: {200, -32003}, registry.ProtocolA2A: {429, -32053}, registry.ProtocolAGUI: {429, "RATE_LIMIT_EXCEEDED"}},
		api.ErrServiceQuota: {registry.ProtocolMCP: {200, -32003}, registry.ProtocolA2A: {429, -32053}, registry.ProtocolAGUI: {429, "SERVICE_QUOTA_EXCEEDED"}},
		api.ErrResourceNotFound: {registry.ProtocolMCP: {200, -32004}, registry.ProtocolA2A: {404, -32051},
			registry.ProtocolAGUI: {404, "NOT_FOUND"}},
		api.ErrConflict:          {registry.ProtocolMCP: {200, -32005}, registry.ProtocolA2A: {409, -32054}, registry.ProtocolAGUI: {409, "SESSION_BUSY"}},
		api.ErrRetryableConflict: {registry.ProtocolMCP: {200, -32005}, registry.ProtocolA2A: {409, -32054}, registry.ProtocolAGUI: {409, "SESSION_BUSY"}},
		api.ErrValidation:        {registry.ProtocolMCP: {200, -32006}, registry.ProtocolA2A: {400, -32052}, registry.ProtocolAGUI: {400, "VALIDATION_ERROR"}},
		api.ErrRuntimeClient:     {registry.ProtocolMCP: {200, -32010}, registry.ProtocolA2A: {424, -32055}, registry.ProtocolAGUI: {200, "AGENT_ERROR"}},
		api.ErrMCPUnacceptable:   {registry.ProtocolMCP: {406, -32011}},
		api.ErrInternalServer:    {registry.ProtocolMCP: {200, -32603}, registry.ProtocolA2A: {500, -32603}, registry.ProtocolAGUI: {500, "INTERNAL_ERROR"}},
	}
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for typ, byProto := range cases {
		for p, w := range byProto {
			t.Run(string(p)+"/"+string(typ), func(t *testing.T) {
				ad := protocol.For(p)
				r := httptest.NewRequest("POST", "/runtimes/x/invocations", nil)
				r = withWire(r, &wire{proto: ad, shape: ad.Errors, sessionHeader: ad.SessionHeader, rpcID: json.RawMessage(`"req-1"`), session: "sess-1"})
				rec := httptest.NewRecorder()
				s.writeError(rec, r, &apiError{typ: typ, msg: "what went wrong"})
				body := rec.Body.String()
				if rec.Code != w.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, w.status, body)
				}
				switch code := w.code.(type) {
				case nil:
					if rec.Header().Get(api.HeaderErrorType) != string(typ) || !strings.Contains(body, `"message":"what went wrong"`) {
						t.Fatalf("want AgentCore's error: %v %s", rec.Header(), body)
					}
				case int:
					var a struct {
						JSONRPC string          `json:"jsonrpc"`
						ID      json.RawMessage `json:"id"`
						Error   struct {
							Code    int    `json:"code"`
							Message string `json:"message"`
							Data    struct{ Type string }
						}
					}
					if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.JSONRPC != "2.0" || string(a.ID) != `"req-1"` ||
						a.Error.Code != code || a.Error.Message != "what went wrong" || a.Error.Data.Type != string(typ) {
						t.Fatalf("JSON-RPC error: %s (%v), want code %d", body, err, code)
					}
					if ad.SessionHeader != "" && rec.Header().Get(ad.SessionHeader) != "sess-1" {
						t.Errorf("%s = %q", ad.SessionHeader, rec.Header().Get(ad.SessionHeader))
					}
				case string:
					if rec.Header().Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(body, "data: ") || !strings.HasSuffix(body, "\n\n") {
						t.Fatalf("not an SSE event: %v %q", rec.Header(), body)
					}
					var ev api.RunErrorEvent
					if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(body), "data: ")), &ev); err != nil ||
						ev.Type != "RUN_ERROR" || ev.Code != code || ev.Message != "what went wrong" {
						t.Fatalf("RUN_ERROR: %q (%v), want code %s", body, err, code)
					}
				}
			})
		}
	}
}
