package sandboxfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxfake"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

// TestConformance runs the backend suite: every instance a subtest asks
// for shares one world, as instances over one root would.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	worlds := map[*testing.T]*sandboxfake.Backend{}
	sandboxtest.RunWithOptions(t, sandboxtest.Options{InProcess: true}, func(t *testing.T) sandbox.Backend {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := worlds[t]; ok {
			return b.Restart()
		}
		b := sandboxfake.New(sandboxfake.Options{})
		worlds[t] = b
		t.Cleanup(func() {
			mu.Lock()
			delete(worlds, t)
			mu.Unlock()
		})
		return b
	})
}

func spec(name string, script sandboxfake.Script) sandbox.Spec {
	return sandbox.Spec{Name: sandbox.Name("rt", name), Command: []string{"agent"}, Env: script.Env()}
}

// ping asks h's agent for its health; code 0 means no answer.
func ping(ctx context.Context, h sandbox.Handle) (int, api.PingStatus) {
	hc := &http.Client{Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.Addr()+api.PathPing, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var pr api.PingResponse
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &pr)
	return resp.StatusCode, pr.Status
}

// The script's delays run on synctest's fake clock: no real socket or
// sleep is involved.
func TestScript(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := sandboxfake.New(sandboxfake.Options{})
		ctx := context.Background()

		began := time.Now()
		h, err := b.Start(ctx, spec("delay", sandboxfake.Script{StartDelay: 3 * time.Second, ExitAfter: time.Minute, ExitCode: 7}))
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took != 3*time.Second {
			t.Errorf("Start took %v, want the 3s start delay", took)
		}
		time.Sleep(time.Minute - time.Second)
		select {
		case <-h.Done():
			t.Fatal("exited before ExitAfter")
		default:
		}
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case <-h.Done():
		default:
			t.Fatal("still running after ExitAfter")
		}
		if ex := h.Exit(); ex.Code != 7 {
			t.Errorf("Exit() = %+v, want code 7", ex)
		}
		if err := h.Stop(ctx, time.Second); err != nil {
			t.Fatal(err)
		}

		short, cancel := context.WithTimeout(ctx, time.Second)
		_, err = b.Start(short, spec("slow", sandboxfake.Script{StartDelay: time.Hour}))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Start past its context: %v", err)
		}
		if _, err := b.Start(ctx, spec("broken", sandboxfake.Script{StartError: "no such image"})); err == nil {
			t.Error("Start with a StartError succeeded")
		}

		h, err = b.Start(ctx, spec("pings", sandboxfake.Script{Pings: []string{"500", "HealthyBusy", "Healthy"}}))
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			code   int
			status api.PingStatus
		}{{500, ""}, {200, api.PingHealthyBusy}, {200, api.PingHealthy}, {200, api.PingHealthy}} {
			if code, st := ping(ctx, h); code != want.code || st != want.status {
				t.Errorf("ping %d: %d %q, want %d %q", i, code, st, want.code, want.status)
			}
		}
		h.(*sandboxfake.Handle).SetPing("503")
		if code, _ := ping(ctx, h); code != 503 {
			t.Errorf("after SetPing: %d, want 503", code)
		}
		if err := h.Stop(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		if ex := h.Exit(); ex.Code != 0 || ex.Signal != "" {
			t.Errorf("graceful Stop: Exit() = %+v, want code 0", ex)
		}
	})
}

func TestHangAndIgnoreTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := sandboxfake.New(sandboxfake.Options{})
		ctx := context.Background()
		h, err := b.Start(ctx, spec("hang", sandboxfake.Script{Hang: true, IgnoreTerm: true}))
		if err != nil {
			t.Fatal(err)
		}
		// The connection is accepted; the answer never comes.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		began := time.Now()
		code, _ := ping(pctx, h)
		cancel()
		if code != 0 || time.Since(began) != 5*time.Second {
			t.Errorf("ping of a hung agent: status %d after %v, want none after 5s", code, time.Since(began))
		}
		began = time.Now()
		if err := h.Stop(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took != 10*time.Second {
			t.Errorf("Stop of an agent ignoring SIGTERM took %v, want the 10s grace", took)
		}
		if ex := h.Exit(); ex.Signal != "SIGKILL" {
			t.Errorf("Exit() = %+v, want killed", ex)
		}
		if b.Live() != 0 {
			t.Errorf("%d sandboxes live after Stop", b.Live())
		}
	})
}

// TestExecOnFakeClock: a scripted command's sleep runs on the bubble's
// clock, its context stops it, and the handle reports what ran.
func TestExecOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := sandboxfake.New(sandboxfake.Options{})
		h, err := b.Start(context.Background(), spec("exec", sandboxfake.Script{}))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Stop(context.Background(), 0)
		fh := h.(*sandboxfake.Handle)

		var out strings.Builder
		began := time.Now()
		st, err := h.Exec(context.Background(), sandbox.ExecSpec{Argv: []string{"bash", "-c", "sleep 90; echo $PORT; exit 4"}, Stdout: &out})
		if err != nil || st.Code != 4 || out.String() != "8080\n" || time.Since(began) != 90*time.Second {
			t.Errorf("sleep 90; echo; exit 4: status %+v, out %q, err %v, took %v", st, out.String(), err, time.Since(began))
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan error)
		go func() {
			_, err := h.Exec(ctx, sandbox.ExecSpec{Argv: []string{"bash", "-c", "sleep 600"}})
			done <- err
		}()
		synctest.Wait()
		if n := fh.Running(); n != 1 {
			t.Errorf("Running() = %d during a command, want 1", n)
		}
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) || time.Since(began) != 95*time.Second {
			t.Errorf("timed-out command: %v after %v", err, time.Since(began))
		}
		if got := fh.Commands(); len(got) != 2 || got[1] != "sleep 600" {
			t.Errorf("Commands() = %q", got)
		}
	})
}
