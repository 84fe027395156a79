package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/app"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

func TestServeDrainsInFlightInvocations(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	a := app.New(quiet())
	a.Entrypoint(func(context.Context, []byte) (any, error) {
		close(started)
		<-release
		return "finished", nil
	})
	ln := listen(t)
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	answered := make(chan response, 1)
	go func() { answered <- post(t, url, `{}`, nil) }()
	<-started
	stop() // shut down with the invocation in flight
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while an invocation was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)

	if resp := <-answered; resp.status != http.StatusOK || string(resp.body) != `"finished"` {
		t.Errorf("in-flight invocation = %d %s, want 200 \"finished\"", resp.status, resp.body)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after a clean shutdown", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepting after Serve returned")
	}
}

func TestServeCutsStreamsAtTheDeadline(t *testing.T) {
	cancelled := make(chan struct{})
	a := app.New(quiet(), app.WithShutdownTimeout(200*time.Millisecond))
	a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
		return app.Stream(func(send func(any) error) error {
			if err := send("open"); err != nil {
				return err
			}
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}), nil
	})
	ln := listen(t)
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+ln.Addr().String()+"/invocations", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("first event: %v", err)
	}

	stop()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "drain invocations") {
			t.Errorf("Serve = %v, want a drain error after cutting the stream", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its shutdown timeout")
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the cut stream's context was never cancelled")
	}
}

func TestServeStopsAsyncTasks(t *testing.T) {
	a := app.New(quiet())
	stopped := make(chan struct{})
	a.StartAsyncTask("watch", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return nil
	})
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, listen(t)) }()
	stop()
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("Serve returned before the async task stopped")
	}
}

// addrHandler hands over the address from the app's "listening" log line.
type addrHandler struct {
	slog.Handler
	addr chan string
}

func (addrHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h addrHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "listening" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "addr" {
				h.addr <- a.Value.String()
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func TestRunListensOnEnvAndStopsOnSIGTERM(t *testing.T) {
	t.Setenv(app.EnvHost, "127.0.0.1")
	t.Setenv(app.EnvPort, "0")
	addrs := make(chan string, 1)
	a := app.New(app.WithLogger(slog.New(addrHandler{Handler: slog.DiscardHandler, addr: addrs})))
	a.Entrypoint(func(ctx context.Context, _ []byte) (any, error) {
		return map[string]string{"session": app.RequestFrom(ctx).SessionID}, nil
	})
	ran := make(chan error, 1)
	go func() { ran <- a.Run() }()

	var addr string
	select {
	case addr = <-addrs:
	case err := <-ran:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run never logged its address")
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("listening on %s, want the BERTH_AGENT_HOST 127.0.0.1", addr)
	}
	resp := post(t, "http://"+addr, `{}`, http.Header{"X-Amzn-Bedrock-Agentcore-Runtime-Session-Id": {"run-session-0123456789-0123456789-x"}})
	var got map[string]string
	if err := json.Unmarshal(resp.body, &got); err != nil || got["session"] != "run-session-0123456789-0123456789-x" {
		t.Fatalf("invocation through Run = %d %s (%v)", resp.status, resp.body, err)
	}

	// Run registered for SIGTERM before it logged, so this reaches Run, not
	// the test binary's default handler.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run after SIGTERM = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop on SIGTERM")
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	a := app.New(quiet())
	ln := listen(t)
	ln.Close()
	err := a.Serve(t.Context(), ln)
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener = %v, want net.ErrClosed", err)
	}
}
