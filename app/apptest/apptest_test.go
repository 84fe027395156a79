package apptest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
	"github.com/berth-dev/berth/app/apptest"
)

// seen is what the echo agent reports about an invocation.
type seen struct {
	SessionID string            `json:"session_id"`
	RequestID string            `json:"request_id"`
	UserID    string            `json:"user_id"`
	Custom    map[string]string `json:"custom"`
	Auth      string            `json:"auth"`
	Accept    string            `json:"accept"`
	Payload   json.RawMessage   `json:"payload"`
}

func echoApp() *app.App {
	a := app.New(app.WithLogger(slog.New(slog.DiscardHandler)))
	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
		rc := app.RequestFrom(ctx)
		var in struct {
			Stream []string `json:"stream"`
			Fail   string   `json:"fail"`
		}
		_ = json.Unmarshal(payload, &in) // other payload shapes are fine
		if in.Fail != "" {
			return nil, &app.HTTPError{Status: http.StatusTeapot, Detail: in.Fail}
		}
		if in.Stream != nil {
			return app.Stream(func(send func(any) error) error {
				for _, s := range in.Stream {
					if err := send(s); err != nil {
						return err
					}
				}
				return nil
			}), nil
		}
		return seen{
			SessionID: rc.SessionID,
			RequestID: rc.RequestID,
			UserID:    rc.UserID,
			Custom:    rc.CustomHeaders(),
			Auth:      rc.Headers.Get("Authorization"),
			Accept:    rc.Headers.Get("Accept"),
			Payload:   payload,
		}, nil
	})
	return a
}

func TestInvokeSendsRuntimeHeaders(t *testing.T) {
	h := apptest.New(t, echoApp())
	if !api.ValidSessionID(h.SessionID) {
		t.Fatalf("harness session ID %q is not a valid AgentCore session ID", h.SessionID)
	}

	first := h.Invoke(map[string]any{"prompt": "hi"},
		apptest.WithUserID("1"),
		apptest.WithCustomHeader("Tenant", "acme"),
		apptest.WithHeader("Authorization", "Bearer tok"))
	if first.Status != 200 || first.ContentType != "application/json" {
		t.Fatalf("got %d %s: %s", first.Status, first.ContentType, first.Body)
	}
	var got seen
	if err := first.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.SessionID != h.SessionID || got.SessionID != first.SessionID {
		t.Errorf("session %q, harness %q, result %q", got.SessionID, h.SessionID, first.SessionID)
	}
	if got.RequestID == "" || got.RequestID != first.RequestID {
		t.Errorf("request ID seen %q, sent %q", got.RequestID, first.RequestID)
	}
	if got.UserID != "1" || got.Auth != "Bearer tok" || !strings.Contains(got.Accept, "text/event-stream") {
		t.Errorf("seen %+v", got)
	}
	if got.Custom[api.HeaderCustomPrefix+"Tenant"] != "acme" {
		t.Errorf("custom headers %v", got.Custom)
	}
	var payload map[string]any
	if err := json.Unmarshal(got.Payload, &payload); err != nil || payload["prompt"] != "hi" {
		t.Errorf("payload %s (%v)", got.Payload, err)
	}

	second := h.Invoke(map[string]any{})
	var again seen
	if err := second.Decode(&again); err != nil {
		t.Fatal(err)
	}
	if again.RequestID == got.RequestID {
		t.Errorf("request ID %q reused", again.RequestID)
	}
	if again.SessionID != got.SessionID {
		t.Errorf("session changed between invocations: %q then %q", got.SessionID, again.SessionID)
	}
}

func TestInvokeOverrides(t *testing.T) {
	h := apptest.New(t, echoApp())
	const other = "another-session-0123456789-0123456789"
	var got seen
	if err := h.Invoke(map[string]any{}, apptest.WithSessionID(other), apptest.WithRequestID("fixed")).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.SessionID != other || got.RequestID != "fixed" {
		t.Errorf("seen session %q request %q", got.SessionID, got.RequestID)
	}
	if err := h.Invoke(map[string]any{}, apptest.WithSessionID(""), apptest.WithRequestID("")).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.SessionID != "" || got.RequestID == "" {
		t.Errorf("without IDs: session %q (want none), request %q (want generated)", got.SessionID, got.RequestID)
	}
}

func TestInvokeRawPayloads(t *testing.T) {
	h := apptest.New(t, echoApp())
	encoded, err := json.Marshal("plain words")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		payload    any
		wantSent   string // the body the agent should see
		wantStatus int
	}{
		{"bytes sent as is", []byte(`{"prompt":"raw"}`), `{"prompt":"raw"}`, 200},
		{"raw message sent as is", json.RawMessage(`[1, 2]`), `[1, 2]`, 200},
		{"string is JSON-encoded", "plain words", string(encoded), 200},
		{"invalid JSON bytes", []byte(`{oops`), "", 400},
		{"empty bytes", []byte{}, "", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Invoke(tc.payload)
			if res.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.Status, tc.wantStatus, res.Body)
			}
			if tc.wantStatus == 400 {
				if res.Error() != "Invalid JSON" {
					t.Errorf("error %q", res.Error())
				}
				return
			}
			var got seen
			if err := res.Decode(&got); err != nil {
				t.Fatal(err)
			}
			// The echo re-encodes the payload compactly; compare as JSON.
			var g, w any
			if err := json.Unmarshal(got.Payload, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.wantSent), &w); err != nil {
				t.Fatal(err)
			}
			if gb, wb := mustMarshal(t, g), mustMarshal(t, w); gb != wb {
				t.Errorf("agent saw %s, want %s", gb, wb)
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInvokeErrorsAndStreams(t *testing.T) {
	h := apptest.New(t, echoApp())
	res := h.Invoke(map[string]any{"fail": "not today"})
	if res.Status != http.StatusTeapot || res.Error() != "not today" {
		t.Errorf("error answer %d %q", res.Status, res.Error())
	}

	words := []string{"one", "two", "three"}
	res = h.Invoke(map[string]any{"stream": words})
	if res.Status != 200 || res.ContentType != "text/event-stream" {
		t.Fatalf("stream answer %d %s", res.Status, res.ContentType)
	}
	if len(res.Events) != len(words) {
		t.Fatalf("events %q, want %d", res.Events, len(words))
	}
	for i, w := range words {
		var got string
		if err := json.Unmarshal(res.Events[i], &got); err != nil || got != w {
			t.Errorf("event %d = %s (%v), want %q", i, res.Events[i], err, w)
		}
	}
}

func TestOpenReadsLive(t *testing.T) {
	h := apptest.New(t, echoApp())
	resp, err := h.Open(map[string]any{"stream": []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := apptest.NewEventReader(resp.Body)
	for _, want := range []string{`"a"`, `"b"`} {
		ev, err := r.Next()
		if err != nil || string(ev) != want {
			t.Fatalf("Next = %s, %v; want %s", ev, err, want)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: %v, want io.EOF", err)
	}
}

func TestPing(t *testing.T) {
	a := echoApp()
	h := apptest.New(t, a)
	if p := h.Ping(); p.Status != api.PingHealthy || p.TimeOfLastUpdate == 0 {
		t.Errorf("idle ping %+v", p)
	}
	id := a.AddAsyncTask("job", nil)
	if p := h.Ping(); p.Status != api.PingHealthyBusy {
		t.Errorf("busy ping %+v", p)
	}
	a.CompleteAsyncTask(id)
}

func TestConnectToRunningAgent(t *testing.T) {
	srv := httptest.NewServer(echoApp().Handler())
	defer srv.Close()
	h := apptest.Connect(t, srv.URL+"/")
	var got seen
	if err := h.Invoke(map[string]any{"x": 1}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.SessionID != h.SessionID {
		t.Errorf("session %q, want %q", got.SessionID, h.SessionID)
	}
	if h.Ping().Status != api.PingHealthy {
		t.Error("ping through Connect")
	}
}

func TestEventReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []string
	}{
		{"single", "data: {\"a\":1}\n\n", []string{`{"a":1}`}},
		{"several", "data: 1\n\ndata: 2\n\n", []string{"1", "2"}},
		{"no space after colon", "data:3\n\n", []string{"3"}},
		{"multi-line data joined", "data: [1,\ndata: 2]\n\n", []string{"[1,\n2]"}},
		{"comments and other fields skipped", ": keepalive\nevent: msg\nid: 7\ndata: \"x\"\n\n", []string{`"x"`}},
		{"CRLF line ends", "data: 1\r\n\r\ndata: 2\r\n\r\n", []string{"1", "2"}},
		{"unterminated last event", "data: 1\n\ndata: 2", []string{"1", "2"}},
		{"blank lines alone are not events", "\n\n\ndata: 1\n\n\n", []string{"1"}},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := apptest.NewEventReader(strings.NewReader(tc.stream))
			var got []string
			for {
				ev, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(ev))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("events %q, want %q", got, tc.want)
			}
		})
	}
}
