package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
)

func TestInvocationPayloadMustBeJSON(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		valid bool
	}{
		{"object", `{"prompt":"hi","user_id":"1"}`, true},
		{"object with spacing", "{\n  \"prompt\" : \"hi\"\n}", true},
		{"array", `[1,2,3]`, true},
		{"string", `"just text"`, true},
		{"number", `42`, true},
		{"null", `null`, true},
		{"empty body", ``, false},
		{"whitespace only", " \n\t", false},
		{"truncated object", `{"prompt":`, false},
		{"trailing garbage", `{} x`, false},
		{"bare word", `hello`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			got := make(chan []byte, 1)
			a := app.New(quiet())
			a.Entrypoint(func(_ context.Context, payload []byte) (any, error) {
				calls.Add(1)
				got <- bytes.Clone(payload)
				return "ok", nil
			})
			resp := post(t, serve(t, a), tc.body, nil)

			if !tc.valid {
				if resp.status != http.StatusBadRequest {
					t.Fatalf("status = %d, want 400 (body %s)", resp.status, resp.body)
				}
				var e struct {
					Error   string `json:"error"`
					Details string `json:"details"`
				}
				if err := json.Unmarshal(resp.body, &e); err != nil {
					t.Fatalf("400 body %q: %v", resp.body, err)
				}
				if e.Error != "Invalid JSON" || e.Details == "" {
					t.Errorf("400 body = %+v, want error \"Invalid JSON\" with details", e)
				}
				if n := calls.Load(); n != 0 {
					t.Errorf("handler called %d times for an invalid payload", n)
				}
				return
			}
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
			}
			if p := <-got; string(p) != tc.body {
				t.Errorf("handler got payload %q, want the raw body %q", p, tc.body)
			}
		})
	}
}

type toolAnswer struct {
	Answer string   `json:"answer"`
	Steps  []string `json:"steps"`
}

func TestInvocationResults(t *testing.T) {
	mustJSON := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name       string
		result     any
		err        error
		panicWith  any
		wantStatus int
		wantType   string
		wantBody   string // exact body; empty means check wantError
		wantError  string // prefix of the "error" field
	}{
		{name: "string becomes a JSON string", result: "text", wantStatus: 200, wantType: "application/json", wantBody: `"text"`},
		{name: "HTML is not escaped", result: "<b>a & b</b>", wantStatus: 200, wantType: "application/json", wantBody: `"<b>a & b</b>"`},
		{name: "unicode is sent as is", result: "héllo ✓", wantStatus: 200, wantType: "application/json", wantBody: `"héllo ✓"`},
		{name: "map", result: map[string]int{"a": 1, "b": 2}, wantStatus: 200, wantType: "application/json", wantBody: `{"a":1,"b":2}`},
		{name: "struct", result: toolAnswer{Answer: "10", Steps: []string{"2x5"}}, wantStatus: 200, wantType: "application/json",
			wantBody: mustJSON(toolAnswer{Answer: "10", Steps: []string{"2x5"}})},
		{name: "nil becomes null", result: nil, wantStatus: 200, wantType: "application/json", wantBody: `null`},
		{name: "raw JSON passes through verbatim", result: json.RawMessage(`{"kept": [1, 2]}`), wantStatus: 200, wantType: "application/json", wantBody: `{"kept": [1, 2]}`},
		{name: "empty raw JSON is null", result: json.RawMessage(nil), wantStatus: 200, wantType: "application/json", wantBody: `null`},
		{name: "invalid raw JSON is a server error", result: json.RawMessage(`{nope`), wantStatus: 500, wantType: "application/json", wantError: "handler returned invalid JSON"},
		{name: "bytes are base64 like encoding/json", result: []byte("hi"), wantStatus: 200, wantType: "application/json",
			wantBody: `"` + base64.StdEncoding.EncodeToString([]byte("hi")) + `"`},
		{name: "response pointer passes through", result: &app.Response{Status: 201, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("made")},
			wantStatus: 201, wantType: "text/plain", wantBody: "made"},
		{name: "response value passes through", result: app.Response{Header: http.Header{"Content-Type": {"text/csv"}}, Body: []byte("a,b\n")},
			wantStatus: 200, wantType: "text/csv", wantBody: "a,b\n"},
		{name: "unencodable result is a server error", result: make(chan int), wantStatus: 500, wantType: "application/json", wantError: "encode response: "},
		{name: "plain error is 500 with its message", err: errors.New("model unavailable"), wantStatus: 500, wantType: "application/json", wantBody: `{"error":"model unavailable"}`},
		{name: "HTTPError sets the status", err: &app.HTTPError{Status: 404, Detail: "no such document"}, wantStatus: 404, wantType: "application/json", wantBody: `{"error":"no such document"}`},
		{name: "wrapped HTTPError is found", err: fmt.Errorf("lookup: %w", &app.HTTPError{Status: 422, Detail: "prompt missing"}),
			wantStatus: 422, wantType: "application/json", wantBody: `{"error":"prompt missing"}`},
		{name: "HTTPError without detail uses the status text", err: &app.HTTPError{Status: 429}, wantStatus: 429, wantType: "application/json",
			wantBody: mustJSON(map[string]string{"error": http.StatusText(http.StatusTooManyRequests)})},
		{name: "HTTPError with a non-error status is 500", err: &app.HTTPError{Status: 200, Detail: "odd"}, wantStatus: 500, wantType: "application/json", wantBody: `{"error":"odd"}`},
		{name: "panic with a string is 500", panicWith: "kaboom", wantStatus: 500, wantType: "application/json", wantBody: `{"error":"panic: kaboom"}`},
		{name: "panic with an error is 500", panicWith: errors.New("nil map"), wantStatus: 500, wantType: "application/json", wantBody: `{"error":"panic: nil map"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := app.New(quiet())
			a.Entrypoint(func(context.Context, []byte) (any, error) {
				if tc.panicWith != nil {
					panic(tc.panicWith)
				}
				return tc.result, tc.err
			})
			url := serve(t, a)
			resp := post(t, url, `{}`, nil)
			if resp.status != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.status, tc.wantStatus, resp.body)
			}
			if resp.contentType != tc.wantType {
				t.Errorf("content type = %q, want %q", resp.contentType, tc.wantType)
			}
			if tc.wantBody != "" {
				if string(resp.body) != tc.wantBody {
					t.Errorf("body = %s, want %s", resp.body, tc.wantBody)
				}
			} else if got := errorField(t, resp.body); !strings.HasPrefix(got, tc.wantError) {
				t.Errorf("error = %q, want prefix %q", got, tc.wantError)
			}

			// The server survives whatever the handler did.
			a.Entrypoint(func(context.Context, []byte) (any, error) { return "still here", nil })
			if again := post(t, url, `{}`, nil); again.status != 200 || string(again.body) != `"still here"` {
				t.Errorf("follow-up invocation = %d %s, want 200 \"still here\"", again.status, again.body)
			}
		})
	}
}

func TestNoEntrypoint(t *testing.T) {
	resp := post(t, serve(t, app.New(quiet())), `{}`, nil)
	if resp.status != http.StatusInternalServerError || errorField(t, resp.body) != "No entrypoint defined" {
		t.Errorf("got %d %s, want 500 No entrypoint defined", resp.status, resp.body)
	}
}

func TestRoutesCheckMethods(t *testing.T) {
	a := app.New(quiet())
	a.Entrypoint(func(context.Context, []byte) (any, error) { return nil, nil })
	url := serve(t, a)
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/invocations", http.StatusMethodNotAllowed},
		{http.MethodPost, "/ping", http.StatusMethodNotAllowed},
		{http.MethodGet, "/ping", http.StatusOK},
		{http.MethodHead, "/ping", http.StatusOK},
		{http.MethodGet, "/nowhere", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, url+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestPayloadLimit(t *testing.T) {
	const limit = 32
	a := app.New(quiet(), app.WithMaxPayloadBytes(limit))
	a.Entrypoint(func(_ context.Context, p []byte) (any, error) { return len(p), nil })
	url := serve(t, a)

	atLimit := `{"p":"` + strings.Repeat("x", limit-8) + `"}`
	if len(atLimit) != limit {
		t.Fatalf("test payload is %d bytes, want %d", len(atLimit), limit)
	}
	if resp := post(t, url, atLimit, nil); resp.status != http.StatusOK || string(resp.body) != fmt.Sprint(limit) {
		t.Errorf("payload at the limit: %d %s, want 200 %d", resp.status, resp.body, limit)
	}
	over := `{"p":"` + strings.Repeat("x", limit-7) + `"}`
	if resp := post(t, url, over, nil); resp.status != http.StatusRequestEntityTooLarge {
		t.Errorf("payload over the limit: status %d, want 413 (body %s)", resp.status, resp.body)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRequestContext(t *testing.T) {
	const session = "7f8e2a6c-5d41-4b1a-9c3e-0a1b2c3d4e5f-tutorial"
	tests := []struct {
		name   string
		header http.Header
		check  func(t *testing.T, rc *app.RequestContext)
	}{
		{
			name: "runtime headers",
			header: http.Header{
				api.HeaderSessionID: {session},
				api.HeaderRequestID: {"req-123"},
				api.HeaderUserID:    {"user-9"},
			},
			check: func(t *testing.T, rc *app.RequestContext) {
				if rc.SessionID != session || rc.RequestID != "req-123" || rc.UserID != "user-9" {
					t.Errorf("ids = %q %q %q", rc.SessionID, rc.RequestID, rc.UserID)
				}
			},
		},
		{
			name:   "request ID generated when absent",
			header: http.Header{api.HeaderSessionID: {session}},
			check: func(t *testing.T, rc *app.RequestContext) {
				if !uuidRE.MatchString(rc.RequestID) {
					t.Errorf("generated request ID %q is not a v4 UUID", rc.RequestID)
				}
			},
		},
		{
			name: "forwarded headers",
			header: http.Header{
				"Authorization":                   {"Bearer tok"},
				api.HeaderCustomPrefix + "Tenant": {"acme"},
				api.HeaderCustomPrefix + "Trace":  {"a", "b"},
				api.HeaderTraceParent:             {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
				"X-Allowed-By-Runtime":            {"yes"},
			},
			check: func(t *testing.T, rc *app.RequestContext) {
				if got := rc.Headers.Get("Authorization"); got != "Bearer tok" {
					t.Errorf("Authorization = %q", got)
				}
				if got := rc.Headers.Get("X-Allowed-By-Runtime"); got != "yes" {
					t.Errorf("allow-listed header = %q", got)
				}
				if got := rc.Headers.Get(api.HeaderTraceParent); got == "" {
					t.Error("traceparent missing")
				}
				if _, ok := rc.Headers["Content-Length"]; ok {
					t.Error("Content-Length (framing) was kept")
				}
				custom := rc.CustomHeaders()
				want := map[string]string{api.HeaderCustomPrefix + "Tenant": "acme", api.HeaderCustomPrefix + "Trace": "a, b"}
				if len(custom) != len(want) {
					t.Errorf("custom headers = %v, want %v", custom, want)
				}
				for k, v := range want {
					if custom[k] != v {
						t.Errorf("custom %s = %q, want %q", k, custom[k], v)
					}
				}
			},
		},
		{
			name: "newer workload access token header wins",
			header: http.Header{
				"WorkloadAccessToken":                  {"legacy"},
				"X-Amz-Bedrock-AgentCore-Identity-WAT": {"current"},
				"OAuth2CallbackUrl":                    {"https://example.test/cb"},
			},
			check: func(t *testing.T, rc *app.RequestContext) {
				if rc.WorkloadAccessToken != "current" {
					t.Errorf("WorkloadAccessToken = %q, want current", rc.WorkloadAccessToken)
				}
				if rc.OAuth2CallbackURL != "https://example.test/cb" {
					t.Errorf("OAuth2CallbackURL = %q", rc.OAuth2CallbackURL)
				}
			},
		},
		{
			name:   "legacy workload access token header",
			header: http.Header{"WorkloadAccessToken": {"legacy"}},
			check: func(t *testing.T, rc *app.RequestContext) {
				if rc.WorkloadAccessToken != "legacy" {
					t.Errorf("WorkloadAccessToken = %q, want legacy", rc.WorkloadAccessToken)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan *app.RequestContext, 1)
			a := app.New(quiet())
			a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
				seen <- app.RequestFrom(ctx)
				return nil, nil
			})
			if resp := post(t, serve(t, a), `{}`, tc.header); resp.status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			got := <-seen
			if got == nil || got.Request == nil || got.Logger == nil || got.Headers == nil {
				t.Fatalf("incomplete request context: %+v", got)
			}
			tc.check(t, got)
		})
	}
}

func TestRequestIDsAreFreshPerInvocation(t *testing.T) {
	ids := make(chan string, 2)
	a := app.New(quiet())
	a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
		ids <- app.RequestFrom(ctx).RequestID
		return nil, nil
	})
	url := serve(t, a)
	post(t, url, `{}`, nil)
	post(t, url, `{}`, nil)
	if first, second := <-ids, <-ids; first == second {
		t.Errorf("two invocations got the same generated request ID %q", first)
	}
}

func TestRequestFromWithoutApp(t *testing.T) {
	rc := app.RequestFrom(context.Background())
	if rc == nil || rc.Headers == nil || rc.Logger == nil || rc.SessionID != "" {
		t.Fatalf("RequestFrom(background) = %+v, want an empty usable context", rc)
	}
	want := &app.RequestContext{SessionID: "s", RequestID: "r"}
	if got := app.RequestFrom(app.ContextWithRequest(context.Background(), want)); got != want {
		t.Errorf("ContextWithRequest round trip = %p, want %p", got, want)
	}
}

func TestInvocationLogsCarryIDs(t *testing.T) {
	const session = "log-session-0123456789-0123456789-abc"
	var logs syncBuffer
	a := app.New(app.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
		app.RequestFrom(ctx).Logger.Info("thinking")
		return "done", nil
	})
	post(t, serve(t, a), `{}`, http.Header{api.HeaderSessionID: {session}, api.HeaderRequestID: {"req-log"}})

	seen := map[string]bool{}
	for _, rec := range logs.records(t) {
		msg, _ := rec["msg"].(string)
		if msg != "thinking" && msg != "invocation" {
			continue
		}
		seen[msg] = true
		if rec["session_id"] != session || rec["request_id"] != "req-log" {
			t.Errorf("log %q has session_id=%v request_id=%v", msg, rec["session_id"], rec["request_id"])
		}
		if msg == "invocation" && rec["status"] != float64(200) {
			t.Errorf("invocation log status = %v, want 200", rec["status"])
		}
	}
	if !seen["thinking"] || !seen["invocation"] {
		t.Errorf("missing log lines; saw %v", seen)
	}
}

func TestDebugActions(t *testing.T) {
	tests := []struct {
		name       string
		payload    string
		wantStatus int
		wantBody   map[string]any
		wantPing   api.PingStatus
	}{
		{"force busy", `{"_agent_core_app_action":"force_busy"}`, 200, map[string]any{"forced_status": "HealthyBusy"}, api.PingHealthyBusy},
		{"force healthy", `{"_agent_core_app_action":"force_healthy"}`, 200, map[string]any{"forced_status": "Healthy"}, api.PingHealthy},
		{"clear", `{"_agent_core_app_action":"clear_forced_status"}`, 200, map[string]any{"forced_status": "Cleared"}, api.PingHealthyBusy},
		{"job status", `{"_agent_core_app_action":"job_status"}`, 200, nil, api.PingHealthyBusy},
		{"ping status", `{"_agent_core_app_action":"ping_status"}`, 200, nil, api.PingHealthyBusy},
		{"unknown", `{"_agent_core_app_action":"dance"}`, 400, map[string]any{"error": "Unknown action: dance"}, api.PingHealthyBusy},
	}
	a := app.New(quiet(), app.WithDebugActions())
	var handled atomic.Int32
	a.Entrypoint(func(context.Context, []byte) (any, error) { handled.Add(1); return "handler", nil })
	url := serve(t, a)
	a.AddAsyncTask("background", nil) // so clearing shows the automatic status

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, url, tc.payload, nil)
			if resp.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", resp.status, tc.wantStatus, resp.body)
			}
			var got map[string]any
			if err := json.Unmarshal(resp.body, &got); err != nil {
				t.Fatalf("body %s: %v", resp.body, err)
			}
			for k, v := range tc.wantBody {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if p := a.Ping(); p.Status != tc.wantPing {
				t.Errorf("ping after action = %s, want %s", p.Status, tc.wantPing)
			}
		})
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("handler ran %d times for debug actions", n)
	}
	if resp := post(t, url, `{"prompt":"normal"}`, nil); string(resp.body) != `"handler"` {
		t.Errorf("ordinary payload answered %s, want the handler's", resp.body)
	}

	// Without the option the action is just payload.
	plain := app.New(quiet())
	plain.Entrypoint(func(_ context.Context, p []byte) (any, error) { return json.RawMessage(p), nil })
	payload := `{"_agent_core_app_action":"force_busy"}`
	if resp := post(t, serve(t, plain), payload, nil); string(resp.body) != payload {
		t.Errorf("debug actions off: body %s, want the payload echoed", resp.body)
	}
	if p := plain.Ping(); p.Status != api.PingHealthy {
		t.Errorf("debug actions off: ping %s, want Healthy", p.Status)
	}
}

func TestHTTPErrorMessage(t *testing.T) {
	err := fmt.Errorf("find: %w", &app.HTTPError{Status: 404, Detail: "gone"})
	if !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Error() = %q, want status and detail", err.Error())
	}
	var he *app.HTTPError
	if !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("errors.As failed on %v", err)
	}
}
