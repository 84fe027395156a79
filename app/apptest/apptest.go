// Package apptest invokes an agent the way berth's runtime does, so agent
// authors can test handlers without a runtime:
//
//	func TestAgent(t *testing.T) {
//		h := apptest.New(t, newApp())
//		res := h.Invoke(map[string]any{"prompt": "hi"}, apptest.WithUserID("1"))
//		if res.Status != 200 { ... }
//		var out reply
//		if err := res.Decode(&out); err != nil { ... }
//	}
//
// Invoke sends the runtime's headers: the harness's session ID, a fresh
// request ID, and any user ID or custom headers you add. [Connect] points the
// same harness at an agent already listening elsewhere, in any language.
//
// A harness talks to one process. Under berth every session gets its own
// process, so state a handler keeps in memory is shared across the session
// IDs you send to one harness; to test isolation, start a fresh App (or
// process) per session.
package apptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
)

// Harness sends invocations and pings to one agent.
type Harness struct {
	// URL is the agent's base URL, without a trailing slash.
	URL string
	// Client sends the requests.
	Client *http.Client
	// SessionID is sent with every invocation unless overridden with
	// [WithSessionID]. New and Connect set a fresh one.
	SessionID string

	t testing.TB
}

// New serves a on an httptest server for the rest of the test. At cleanup it
// closes the server and calls a.Shutdown, failing the test if async tasks
// do not stop within 10s.
func New(t testing.TB, a *app.App) *Harness {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("apptest: shut down app: %v", err)
		}
	})
	return &Harness{URL: srv.URL, Client: srv.Client(), SessionID: NewSessionID(), t: t}
}

// Connect returns a harness for an agent already serving at baseURL, such
// as an agent process the test started.
func Connect(t testing.TB, baseURL string) *Harness {
	return &Harness{
		URL:       strings.TrimSuffix(baseURL, "/"),
		Client:    &http.Client{},
		SessionID: NewSessionID(),
		t:         t,
	}
}

// NewSessionID returns a random session ID of the shape AWS SDKs generate
// (a UUID, 36 characters, within AgentCore's 33 to 256).
func NewSessionID() string {
	return newUUID()
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Result is one invocation's answer.
type Result struct {
	Status int
	// ContentType is the media type without parameters, such as
	// "application/json" or "text/event-stream".
	ContentType string
	Header      http.Header
	// Body is the whole response body (for a stream, the raw SSE bytes).
	Body []byte
	// Events holds the data of each Server-Sent Event when the answer is a
	// stream; nil otherwise.
	Events []json.RawMessage
	// SessionID and RequestID are the IDs the harness sent.
	SessionID string
	RequestID string
}

// Decode unmarshals the JSON body into v.
func (r *Result) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d %s body %q: %w", r.Status, r.ContentType, r.Body, err)
	}
	return nil
}

// Error returns the "error" field of a JSON error body, or "".
func (r *Result) Error() string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e) // not an error body: ""
	return e.Error
}

// InvokeOption adjusts one invocation.
type InvokeOption func(*invocation)

type invocation struct {
	ctx       context.Context
	sessionID string
	requestID string
	header    http.Header
}

// WithSessionID sends id as the runtime session ID; "" sends none.
func WithSessionID(id string) InvokeOption {
	return func(c *invocation) { c.sessionID = id }
}

// WithRequestID sends id as the request ID instead of a fresh one; "" sends
// none, so the app generates one.
func WithRequestID(id string) InvokeOption {
	return func(c *invocation) { c.requestID = id }
}

// WithUserID sends the runtime user ID header.
func WithUserID(id string) InvokeOption {
	return WithHeader(api.HeaderUserID, id)
}

// WithCustomHeader sends X-Amzn-Bedrock-AgentCore-Runtime-Custom-<name>, as
// the starter toolkit's --headers flag does.
func WithCustomHeader(name, value string) InvokeOption {
	return WithHeader(api.HeaderCustomPrefix+name, value)
}

// WithHeader adds any header, such as Authorization or an allow-listed one.
func WithHeader(name, value string) InvokeOption {
	return func(c *invocation) { c.header.Add(name, value) }
}

// WithContext bounds the invocation by ctx instead of the test's context.
func WithContext(ctx context.Context) InvokeOption {
	return func(c *invocation) { c.ctx = ctx }
}

// Invoke is [Harness.Do] that fails the test on a transport error. Call it
// from the test's goroutine; use Do from others.
func (h *Harness) Invoke(payload any, opts ...InvokeOption) *Result {
	h.t.Helper()
	res, err := h.Do(payload, opts...)
	if err != nil {
		h.t.Fatalf("apptest: %v", err)
	}
	return res
}

// Do sends one invocation and reads the whole answer. A []byte or
// json.RawMessage payload is sent as is (so tests can send invalid JSON);
// anything else is JSON-encoded first. Non-2xx statuses are results, not
// errors.
func (h *Harness) Do(payload any, opts ...InvokeOption) (*Result, error) {
	req, inv, err := h.newRequest(payload, opts)
	if err != nil {
		return nil, err
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	res := &Result{
		Status:    resp.StatusCode,
		Header:    resp.Header,
		Body:      body,
		SessionID: inv.sessionID,
		RequestID: inv.requestID,
	}
	res.ContentType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if res.ContentType == "text/event-stream" {
		events := NewEventReader(bytes.NewReader(body))
		for {
			ev, err := events.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return res, fmt.Errorf("read events: %w", err)
			}
			res.Events = append(res.Events, ev)
		}
	}
	return res, nil
}

// Open sends one invocation and returns the live response, for reading a
// stream event by event with [NewEventReader]. The caller closes the body.
func (h *Harness) Open(payload any, opts ...InvokeOption) (*http.Response, error) {
	req, _, err := h.newRequest(payload, opts)
	if err != nil {
		return nil, err
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	return resp, nil
}

func (h *Harness) newRequest(payload any, opts []InvokeOption) (*http.Request, *invocation, error) {
	inv := &invocation{
		ctx:       h.t.Context(),
		sessionID: h.SessionID,
		requestID: newUUID(),
		header:    make(http.Header),
	}
	for _, opt := range opts {
		opt(inv)
	}
	var body []byte
	switch p := payload.(type) {
	case []byte:
		body = p
	case json.RawMessage:
		body = p
	default:
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, nil, fmt.Errorf("encode payload: %w", err)
		}
		body = b
	}
	req, err := http.NewRequestWithContext(inv.ctx, http.MethodPost, h.URL+api.PathInvocations, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	// What berth (and AgentCore) send to an agent.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream, application/json")
	if inv.sessionID != "" {
		req.Header.Set(api.HeaderSessionID, inv.sessionID)
	}
	if inv.requestID != "" {
		req.Header.Set(api.HeaderRequestID, inv.requestID)
	}
	for k, vs := range inv.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req, inv, nil
}

// Ping gets /ping and fails the test unless it answers 200 with a ping body.
func (h *Harness) Ping() api.PingResponse {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), http.MethodGet, h.URL+api.PathPing, nil)
	if err != nil {
		h.t.Fatalf("apptest: build ping: %v", err)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		h.t.Fatalf("apptest: ping: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("apptest: read ping: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("apptest: ping answered %d: %s", resp.StatusCode, body)
	}
	var p api.PingResponse
	if err := json.Unmarshal(body, &p); err != nil {
		h.t.Fatalf("apptest: ping body %q: %v", body, err)
	}
	return p
}
