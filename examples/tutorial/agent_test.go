package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app/apptest"
)

// newHarness starts a fresh agent, as berth does for a new session: a new
// process has an empty conversation.
func newHarness(t *testing.T) *apptest.Harness {
	t.Helper()
	return apptest.New(t, newAgent(&memory{}, slog.New(slog.DiscardHandler)))
}

func invoke(t *testing.T, h *apptest.Harness, payload map[string]any, opts ...apptest.InvokeOption) reply {
	t.Helper()
	res := h.Invoke(payload, opts...)
	if res.Status != 200 || res.ContentType != "application/json" {
		t.Fatalf("invoke %v: %d %s %s", payload, res.Status, res.ContentType, res.Body)
	}
	var r reply
	if err := res.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.RequestID != res.RequestID {
		t.Errorf("reply request_id %q, sent %q", r.RequestID, res.RequestID)
	}
	return r
}

// The tutorial's first scenario: one session remembers.
func TestSessionContinuity(t *testing.T) {
	h := newHarness(t)
	prompts := []string{"How is the weather outside?", "How much is 2X5?", "and that plus 34?"}

	weather := invoke(t, h, map[string]any{"prompt": prompts[0], "user_id": "1"})
	if weather.UserName != userNames["1"] || !strings.Contains(weather.Answer, userNames["1"]) ||
		!strings.Contains(weather.Answer, "sunny") {
		t.Errorf("weather reply %+v, want a sunny greeting for %s", weather, userNames["1"])
	}
	if weather.SessionID != h.SessionID || weather.Turn != 1 || weather.Result != nil {
		t.Errorf("first turn %+v", weather)
	}

	product := invoke(t, h, map[string]any{"prompt": prompts[1], "user_id": "1"})
	if product.Result == nil || *product.Result != 2*5 || product.Turn != 2 {
		t.Fatalf("2X5 turn %+v, want result %d on turn 2", product, 2*5)
	}
	if !strings.Contains(product.Answer, fmt.Sprint(2*5)) {
		t.Errorf("answer %q does not state the result", product.Answer)
	}

	sum := invoke(t, h, map[string]any{"prompt": prompts[2], "user_id": "1"})
	if sum.Result == nil || *sum.Result != *product.Result+34 || sum.Turn != 3 {
		t.Fatalf("'that plus 34' turn %+v, want result %v", sum, *product.Result+34)
	}
	if !reflect.DeepEqual(sum.Remembered, prompts) {
		t.Errorf("remembered %q, want %q", sum.Remembered, prompts)
	}
	if sum.PID != os.Getpid() || sum.SessionID != h.SessionID {
		t.Errorf("pid %d session %q", sum.PID, sum.SessionID)
	}
}

// The tutorial's third scenario: a new session starts from nothing.
func TestNewSessionHasNoPreviousResult(t *testing.T) {
	first := newHarness(t)
	invoke(t, first, map[string]any{"prompt": "How much is 2X5?", "user_id": "1"})

	fresh := newHarness(t)
	r := invoke(t, fresh, map[string]any{"prompt": "And plus 10?", "user_id": "1"})
	if r.Result != nil || r.Turn != 1 || !strings.Contains(r.Answer, "no previous result") {
		t.Errorf("fresh session reply %+v, want no result and a request for a number", r)
	}
	if r.SessionID == first.SessionID {
		t.Error("two harnesses shared a session ID")
	}
	if len(r.Remembered) != 1 || r.Remembered[0] != "And plus 10?" {
		t.Errorf("fresh session remembers %q", r.Remembered)
	}

	mani := invoke(t, newHarness(t), map[string]any{"prompt": "How is the weather?", "user_id": "2"})
	if mani.UserName != userNames["2"] || !strings.Contains(mani.Answer, userNames["2"]) || mani.Turn != 1 {
		t.Errorf("user 2 reply %+v", mani)
	}
}

func TestUserNames(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name    string
		payload map[string]any
		opts    []apptest.InvokeOption
		want    string
	}{
		{"string id", map[string]any{"user_id": "3"}, nil, userNames["3"]},
		{"numeric id", map[string]any{"user_id": 4}, nil, userNames["4"]},
		{"id from the runtime header", map[string]any{}, []apptest.InvokeOption{apptest.WithUserID("5")}, userNames["5"]},
		{"payload wins over header", map[string]any{"user_id": "1"}, []apptest.InvokeOption{apptest.WithUserID("2")}, userNames["1"]},
		{"unknown id", map[string]any{"user_id": "42"}, nil, unknownUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.payload["prompt"] = "hi"
			if got := invoke(t, h, tc.payload, tc.opts...).UserName; got != tc.want {
				t.Errorf("user_name %q, want %q", got, tc.want)
			}
		})
	}
}

// The tutorial's fourth scenario: any payload fields pass through.
func TestPayloadAndHeadersPassThrough(t *testing.T) {
	h := newHarness(t)
	payload := map[string]any{
		"prompt":       "hello",
		"user_id":      "1",
		"preferences":  map[string]any{"units": "metric", "tone": "brief"},
		"context_data": []any{"a", float64(2), true, nil},
	}
	r := invoke(t, h, payload,
		apptest.WithCustomHeader("Tenant", "acme"),
		apptest.WithCustomHeader("Trace", "xyz"),
		apptest.WithHeader("X-Not-Custom", "ignored"))
	var echoed map[string]any
	if err := json.Unmarshal(r.Payload, &echoed); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(echoed, payload) {
		t.Errorf("payload came back as %v, want %v", echoed, payload)
	}
	want := map[string]string{api.HeaderCustomPrefix + "Tenant": "acme", api.HeaderCustomPrefix + "Trace": "xyz"}
	if !reflect.DeepEqual(r.CustomHeaders, want) {
		t.Errorf("custom_headers %v, want %v", r.CustomHeaders, want)
	}
}

func TestStreamingReply(t *testing.T) {
	h := newHarness(t)
	invoke(t, h, map[string]any{"prompt": "How much is 2X5?"})
	res := h.Invoke(map[string]any{"prompt": "and that plus 34?", "user_id": "1", "stream": true})
	if res.Status != 200 || res.ContentType != "text/event-stream" || len(res.Events) < 2 {
		t.Fatalf("stream answer %d %s with %d events", res.Status, res.ContentType, len(res.Events))
	}
	var text strings.Builder
	for _, raw := range res.Events[:len(res.Events)-1] {
		var ev streamEvent
		if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != "delta" {
			t.Fatalf("event %s (%v), want a delta", raw, err)
		}
		text.WriteString(ev.Text)
	}
	var done streamEvent
	if err := json.Unmarshal(res.Events[len(res.Events)-1], &done); err != nil || done.Type != "done" || done.Reply == nil {
		t.Fatalf("last event %s (%v), want done with the reply", res.Events[len(res.Events)-1], err)
	}
	if text.String() != done.Reply.Answer {
		t.Errorf("deltas spell %q, reply says %q", text.String(), done.Reply.Answer)
	}
	if done.Reply.Result == nil || *done.Reply.Result != 2*5+34 || done.Reply.Turn != 2 {
		t.Errorf("streamed reply %+v, want result %d on turn 2", done.Reply, 2*5+34)
	}
}

func TestRejectsNonObjectPayloads(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name    string
		payload []byte
		status  int
	}{
		{"string", []byte(`"hi"`), 400},
		{"array", []byte(`[1]`), 400},
		{"null", []byte(`null`), 400},
		{"prompt not a string", []byte(`{"prompt": 5}`), 400},
		{"not JSON", []byte(`prompt=hi`), 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Invoke(tc.payload)
			if res.Status != tc.status || res.Error() == "" {
				t.Errorf("status %d error %q, want %d with an error", res.Status, res.Error(), tc.status)
			}
		})
	}
}

func TestConcurrentTurnsAreCounted(t *testing.T) {
	h := newHarness(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := h.Do(map[string]any{"prompt": fmt.Sprintf("note %d", i)})
			if err == nil && res.Status != 200 {
				err = fmt.Errorf("status %d", res.Status)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	last := invoke(t, h, map[string]any{"prompt": "count"})
	if last.Turn != n+1 || len(last.Remembered) != n+1 {
		t.Errorf("after %d concurrent turns: turn %d, %d remembered", n, last.Turn, len(last.Remembered))
	}
}
