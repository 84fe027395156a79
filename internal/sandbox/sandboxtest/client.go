package sandboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
)

// HTTPClient returns a client whose every connection goes through
// h.DialContext; keep-alives are off so no connection outlives a request.
func HTTPClient(h sandbox.Handle) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       h.DialContext,
		DisableKeepAlives: true,
	}}
}

// WaitHealthy polls GET /ping on h until it answers 200 with status Healthy
// or HealthyBusy. It fails early when the agent exits.
func WaitHealthy(ctx context.Context, h sandbox.Handle) error {
	hc := HTTPClient(h)
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		st, err := ping(ctx, hc, h)
		if err == nil {
			if st == api.PingHealthy || st == api.PingHealthyBusy {
				return nil
			}
			err = fmt.Errorf("ping status %q", st)
		}
		last = err
		select {
		case <-h.Done():
			return fmt.Errorf("agent exited before it was healthy (%v): last ping: %w", h.Exit(), last)
		case <-ctx.Done():
			return fmt.Errorf("wait for healthy agent: %w (last ping: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func ping(ctx context.Context, hc *http.Client, h sandbox.Handle) (api.PingStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.Addr()+api.PathPing, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ping answered %d: %s", resp.StatusCode, body)
	}
	var pr api.PingResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return "", fmt.Errorf("decode ping %q: %w", body, err)
	}
	return pr.Status, nil
}

// box is one sandbox started by the suite, with what the checks need.
type box struct {
	t     *testing.T
	h     sandbox.Handle
	spec  sandbox.Spec
	token string
	hc    *http.Client
}

// echoReply is the test agent's answer to the echo op.
type echoReply struct {
	PID      int               `json:"pid"`
	PPID     int               `json:"ppid"`
	UID      int               `json:"uid"`
	Headers  http.Header       `json:"headers"`
	Payload  json.RawMessage   `json:"payload"`
	Env      map[string]string `json:"env"`
	Cwd      string            `json:"cwd"`
	Hostname string            `json:"hostname"`
	Count    int64             `json:"count"`
}

// invoke posts payload to /invocations and returns status and body.
func (b *box) invoke(ctx context.Context, payload any, header http.Header) (int, []byte, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.h.Addr()+api.PathInvocations, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// mustInvoke is invoke that fails the test unless the agent answers 200.
func (b *box) mustInvoke(payload any) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, body, err := b.invoke(ctx, payload, nil)
	if err != nil {
		b.t.Fatalf("invoke %v: %v\nagent log:\n%s", payload, err, b.logText())
	}
	if code != http.StatusOK {
		b.t.Fatalf("invoke %v: status %d: %s", payload, code, body)
	}
	return body
}

// echo runs the echo op, asking for the extra env vars named.
func (b *box) echo(env ...string) echoReply {
	b.t.Helper()
	body := b.mustInvoke(map[string]any{"op": "echo", "env": append([]string{"SANDBOXTEST_TOKEN"}, env...)})
	var r echoReply
	if err := json.Unmarshal(body, &r); err != nil {
		b.t.Fatalf("decode echo reply %q: %v", body, err)
	}
	if got := r.Env["SANDBOXTEST_TOKEN"]; got != b.token {
		b.t.Fatalf("echo reached the wrong agent: token %q, want %q", got, b.token)
	}
	return r
}

func (b *box) waitHealthy() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitHealthy(ctx, b.h); err != nil {
		b.t.Fatalf("sandbox %s: %v\nagent log:\n%s", b.spec.Name, err, b.logText())
	}
}

// waitDone waits for the agent to exit by itself.
func (b *box) waitDone(timeout time.Duration) {
	b.t.Helper()
	select {
	case <-b.h.Done():
	case <-time.After(timeout):
		b.t.Fatalf("sandbox %s: Done not closed within %v\nagent log:\n%s", b.spec.Name, timeout, b.logText())
	}
}

func (b *box) stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
	defer cancel()
	return b.h.Stop(ctx, grace)
}

func (b *box) logText() string {
	return Captured(b.spec.Output)
}

// waitLog polls the log until it contains every want string.
func (b *box) waitLog(timeout time.Duration, want ...string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		text := b.logText()
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("output lacks %q after %v; it holds:\n%s", missing, timeout, text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
