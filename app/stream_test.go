package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/app"
)

// sseEvents splits an SSE body into its data payloads, checking the framing
// the app promises: every event is one `data: ` line and a blank line.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	s := string(body)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("SSE body does not end with a blank line: %q", s)
	}
	var out []string
	for block := range strings.SplitSeq(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(block, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("malformed SSE event %q", block)
		}
		out = append(out, data)
	}
	return out
}

type streamErr struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
	Message   string `json:"message"`
}

func TestStreamEvents(t *testing.T) {
	events := []any{"first", map[string]int{"n": 2}, toolAnswer{Answer: "<done>"}}
	a := app.New(quiet())
	a.Entrypoint(func(context.Context, []byte) (any, error) {
		return app.Stream(func(send func(any) error) error {
			for _, ev := range events {
				if err := send(ev); err != nil {
					return err
				}
			}
			return nil
		}), nil
	})
	resp := post(t, serve(t, a), `{}`, nil)
	if resp.status != http.StatusOK || resp.contentType != "text/event-stream" {
		t.Fatalf("got %d %q, want 200 text/event-stream", resp.status, resp.contentType)
	}
	got := sseEvents(t, resp.body)
	if len(got) != len(events) {
		t.Fatalf("got %d events %q, want %d", len(got), got, len(events))
	}
	for i, ev := range events {
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		// The app does not HTML-escape; compare decoded values.
		var g, w any
		if err := json.Unmarshal([]byte(got[i]), &g); err != nil {
			t.Fatalf("event %d %q: %v", i, got[i], err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("event %d = %s, want %s", i, got[i], want)
		}
	}
	if !strings.Contains(got[2], "<done>") {
		t.Errorf("event %q was HTML-escaped", got[2])
	}
}

type quotaError struct{}

func (quotaError) Error() string     { return "quota exceeded" }
func (quotaError) ErrorType() string { return "ThrottlingException" }

type toolError struct{ tool string }

func (e *toolError) Error() string { return "tool " + e.tool + " failed" }

func TestStreamMidStreamError(t *testing.T) {
	tests := []struct {
		name      string
		produce   func(send func(any) error) error
		wantError string // substring of the error field
		wantType  string
	}{
		{
			name:      "plain error",
			produce:   func(func(any) error) error { return errors.New("model timed out") },
			wantError: "model timed out",
			wantType:  "errors.errorString",
		},
		{
			name:      "custom error type",
			produce:   func(func(any) error) error { return &toolError{tool: "search"} },
			wantError: "tool search failed",
			wantType:  "app_test.toolError",
		},
		{
			name:      "wrapped custom error type",
			produce:   func(func(any) error) error { return fmt.Errorf("step 2: %w", &toolError{tool: "calculator"}) },
			wantError: "step 2: tool calculator failed",
			wantType:  "fmt.wrapError",
		},
		{
			name:      "error type named by ErrorType",
			produce:   func(func(any) error) error { return fmt.Errorf("call model: %w", quotaError{}) },
			wantError: "call model: quota exceeded",
			wantType:  "ThrottlingException",
		},
		{
			name:      "panic",
			produce:   func(func(any) error) error { panic("index out of range") },
			wantError: "panic: index out of range",
			wantType:  "panic",
		},
		{
			name:      "unencodable event",
			produce:   func(send func(any) error) error { return send(func() {}) },
			wantError: "encode event",
			wantType:  "fmt.wrapError",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := app.New(quiet())
			a.Entrypoint(func(context.Context, []byte) (any, error) {
				return app.Stream(func(send func(any) error) error {
					if err := send("before"); err != nil {
						return err
					}
					return tc.produce(send)
				}), nil
			})
			resp := post(t, serve(t, a), `{}`, nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d, want 200: the stream had started", resp.status)
			}
			got := sseEvents(t, resp.body)
			if len(got) != 2 || got[0] != `"before"` {
				t.Fatalf("events = %q, want the first event then an error event", got)
			}
			var e streamErr
			if err := json.Unmarshal([]byte(got[1]), &e); err != nil {
				t.Fatalf("error event %q: %v", got[1], err)
			}
			if !strings.Contains(e.Error, tc.wantError) || e.ErrorType != tc.wantType ||
				e.Message != "An error occurred during streaming" {
				t.Errorf("error event = %+v, want error ~%q type %q", e, tc.wantError, tc.wantType)
			}
			// Field order matches the Python SDK's event.
			if !strings.HasPrefix(got[1], `{"error":`) || !strings.Contains(got[1], `,"error_type":`) {
				t.Errorf("error event %s, want fields error, error_type, message", got[1])
			}
		})
	}
}

func TestStreamFlushesEachEvent(t *testing.T) {
	release := make(chan struct{})
	a := app.New(quiet())
	a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
		return app.Stream(func(send func(any) error) error {
			for i := range 3 {
				if err := send(map[string]int{"chunk": i}); err != nil {
					return err
				}
				// Hold the next event until the client has read this one:
				// only a flushed event can be read.
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}), nil
	})
	url := serve(t, a)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/invocations", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d not delivered before the next was produced: %v", i, err)
		}
		if want := fmt.Sprintf(`data: {"chunk":%d}`+"\n", i); line != want {
			t.Fatalf("line %q, want %q", line, want)
		}
		if blank, err := r.ReadString('\n'); err != nil || blank != "\n" {
			t.Fatalf("event %d not terminated by a blank line: %q %v", i, blank, err)
		}
		release <- struct{}{}
	}
	if rest, err := r.ReadString('\n'); rest != "" || err == nil {
		t.Errorf("trailing data after the stream: %q %v", rest, err)
	}
}

func TestStreamStopsWhenClientDisconnects(t *testing.T) {
	type outcome struct {
		sent    int
		sendErr error
		ctxErr  error
	}
	done := make(chan outcome, 1)
	a := app.New(quiet())
	a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
		return app.Stream(func(send func(any) error) error {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				if err := send(i); err != nil {
					<-ctx.Done() // the app cancels the invocation's ctx too
					done <- outcome{sent: i, sendErr: err, ctxErr: ctx.Err()}
					return err
				}
				<-tick.C
			}
		}), nil
	})
	url := serve(t, a)

	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/invocations", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("first event: %v", err)
	}
	cancel()
	resp.Body.Close()

	select {
	case o := <-done:
		if o.sendErr == nil || o.ctxErr == nil {
			t.Errorf("after disconnect: send error %v, ctx error %v; want both set", o.sendErr, o.ctxErr)
		}
		if o.sent < 1 {
			t.Errorf("producer stopped after %d events, want at least the one read", o.sent)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("producer still sending 20s after the client disconnected")
	}
}

func TestStreamSendIsSafeConcurrentlyAndClosedAfterReturn(t *testing.T) {
	const workers, each = 4, 25
	leaked := make(chan func(any) error, 1)
	a := app.New(quiet())
	a.Entrypoint(func(context.Context, []byte) (any, error) {
		return app.Stream(func(send func(any) error) error {
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						_ = send(map[string]int{"w": w, "i": i})
					}
				})
			}
			wg.Wait()
			leaked <- send
			return nil
		}), nil
	})
	resp := post(t, serve(t, a), `{}`, nil)
	got := sseEvents(t, resp.body)
	if len(got) != workers*each {
		t.Fatalf("got %d events, want %d", len(got), workers*each)
	}
	seen := map[string]bool{}
	for _, ev := range got {
		if seen[ev] {
			t.Errorf("event %s sent twice", ev)
		}
		seen[ev] = true
	}
	if err := (<-leaked)("late"); err == nil {
		t.Error("send after the stream returned succeeded, want an error")
	}
}

func TestStreamSeq(t *testing.T) {
	counter := func(n int, failAt int) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			for i := range n {
				if i == failAt {
					yield(0, errors.New("ran dry"))
					return
				}
				if !yield(i*i, nil) {
					return
				}
			}
		}
	}
	tests := []struct {
		name       string
		seq        iter.Seq2[int, error]
		wantValues int
		wantError  bool
	}{
		{"all values", counter(4, -1), 4, false},
		{"error ends the stream", counter(4, 2), 2, true},
		{"empty", counter(0, -1), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := app.New(quiet())
			a.Entrypoint(func(context.Context, []byte) (any, error) { return app.StreamSeq(tc.seq), nil })
			got := sseEvents(t, post(t, serve(t, a), `{}`, nil).body)
			values := got
			if tc.wantError {
				if len(got) == 0 || !strings.Contains(got[len(got)-1], "ran dry") {
					t.Fatalf("events %q, want an error event last", got)
				}
				values = got[:len(got)-1]
			}
			if len(values) != tc.wantValues {
				t.Fatalf("events %q, want %d values", got, tc.wantValues)
			}
			for i, v := range values {
				if v != fmt.Sprint(i*i) {
					t.Errorf("event %d = %s, want %d", i, v, i*i)
				}
			}
		})
	}
}

func TestNilStreamIsEmpty(t *testing.T) {
	a := app.New(quiet())
	a.Entrypoint(func(context.Context, []byte) (any, error) { return app.Stream(nil), nil })
	resp := post(t, serve(t, a), `{}`, nil)
	if resp.status != 200 || resp.contentType != "text/event-stream" || len(resp.body) != 0 {
		t.Errorf("got %d %q %q, want an empty 200 event stream", resp.status, resp.contentType, resp.body)
	}
}
