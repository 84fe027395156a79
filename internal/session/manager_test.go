package session_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxfake"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
)

type harness struct {
	t    *testing.T
	db   *store.DB
	fake *sandboxfake.Backend
	m    *session.Manager
}

// newHarness must run inside a synctest bubble: the manager's timers, the
// fake agents and the store's goroutines all belong to it.
func newHarness(t *testing.T) *harness { return newHarnessWith(t) }

func newHarnessWith(t *testing.T, mutate ...func(*session.Options)) *harness {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	fake := sandboxfake.New(sandboxfake.Options{})
	// No LogDir: sandboxfake's agents run in this process and print
	// nothing, and the log pump's epoll goroutine would stall synctest.
	opts := session.Options{
		DefaultBackend: "fake",
		StopGrace:      time.Second,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mutate {
		m(&opts)
	}
	m := session.NewManager(db, map[string]sandbox.Backend{"fake": fake}, opts)
	h := &harness{t: t, db: db, fake: fake, m: m}
	t.Cleanup(func() {
		m.Shutdown(context.Background())
		db.Close()
	})
	return h
}

func spec(sid string, idle, maxLife time.Duration) session.Spec {
	return session.Spec{
		Key:      session.Key{RuntimeID: "rt-0123456789", Endpoint: "DEFAULT", SessionID: sid},
		Version:  1,
		Settings: registry.Settings{Command: []string{"agent"}, IdleTimeout: registry.Duration(idle), MaxLifetime: registry.Duration(maxLife)},
	}
}

// invoke runs one call into the session's agent.
func (h *harness) invoke(sp session.Spec) session.Record {
	h.t.Helper()
	c, err := h.m.Acquire(context.Background(), sp)
	if err != nil {
		h.t.Fatalf("acquire: %v", err)
	}
	defer c.Release()
	req, _ := http.NewRequest(http.MethodPost, api.PathInvocations, nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		h.t.Fatalf("invoke: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c.Session()
}

// ended waits for the session's record to end and returns it.
func (h *harness) ended(id string) session.Record {
	h.t.Helper()
	synctest.Wait()
	r, err := h.db.GetSession(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := spec("idle-session-0123456789012345678901234", 15*time.Minute, 8*time.Hour)
		rec := h.invoke(sp)
		time.Sleep(14 * time.Minute)
		if r := h.ended(rec.ID); r.State == session.StateTerminated {
			t.Fatalf("ended after 14m of a 15m idle timeout: %+v", r)
		}
		h.invoke(sp) // resets the idle clock
		time.Sleep(14 * time.Minute)
		if r := h.ended(rec.ID); r.State == session.StateTerminated {
			t.Fatal("an invocation did not reset the idle clock")
		}
		time.Sleep(2 * time.Minute)
		r := h.ended(rec.ID)
		if r.State != session.StateTerminated || r.EndReason != session.EndIdleTimeout || r.Invocations != 2 {
			t.Fatalf("want idle_timeout after 2 calls, got %+v", r)
		}
		if !h.fake.Last().Stopped() {
			t.Fatal("sandbox not stopped")
		}
		// The same ID then gets a new sandbox and a new record.
		if again := h.invoke(sp); again.ID == rec.ID || again.Epoch <= rec.Epoch {
			t.Fatalf("reuse after end: %+v vs %+v", again, rec)
		}
	})
}

func TestHealthyBusyHoldsOffIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := spec("busy-session-0123456789012345678901234", 15*time.Minute, 8*time.Hour)
		rec := h.invoke(sp)
		agent := h.fake.Last()
		agent.SetPing(sandboxfake.PingHealthyBusy)
		time.Sleep(2 * time.Hour)
		if r := h.ended(rec.ID); r.State == session.StateTerminated {
			t.Fatalf("HealthyBusy session reaped: %+v", r)
		}
		agent.SetPing(sandboxfake.PingHealthy) // background work done
		time.Sleep(14 * time.Minute)
		if r := h.ended(rec.ID); r.State == session.StateTerminated {
			t.Fatal("idle clock did not restart at the Healthy transition")
		}
		time.Sleep(2 * time.Minute)
		if r := h.ended(rec.ID); r.EndReason != session.EndIdleTimeout {
			t.Fatalf("want idle_timeout, got %+v", r)
		}
	})
}

func TestMaxLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := spec("life-session-0123456789012345678901234", 15*time.Minute, time.Hour)
		rec := h.invoke(sp)
		for range 5 {
			time.Sleep(10 * time.Minute)
			h.invoke(sp)
		}
		time.Sleep(11 * time.Minute)
		if r := h.ended(rec.ID); r.EndReason != session.EndMaxLifetime {
			t.Fatalf("want max_lifetime, got %+v", r)
		}
	})
}

func TestUnhealthyAndCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := spec("sick-session-0123456789012345678901234", 15*time.Minute, 8*time.Hour)
		rec := h.invoke(sp)
		h.fake.Last().SetPing(strconv.Itoa(http.StatusInternalServerError))
		// Three failed pings at 2 s, then one more interval in which an
		// exit would have said the agent crashed instead.
		time.Sleep(9 * time.Second)
		if r := h.ended(rec.ID); r.EndReason != session.EndUnhealthy {
			t.Fatalf("want unhealthy, got %+v", r)
		}

		sp.SessionID = "dead-session-0123456789012345678901234"
		rec = h.invoke(sp)
		h.fake.Last().Crash(3)
		if r := h.ended(rec.ID); r.EndReason != session.EndCrashed || r.Detail == "" {
			t.Fatalf("want crashed with detail, got %+v", r)
		}
	})
}

func TestStopAndShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		a := spec("stop-session-0123456789012345678901234", 15*time.Minute, 8*time.Hour)
		b := spec("down-session-0123456789012345678901234", 15*time.Minute, 8*time.Hour)
		ra, rb := h.invoke(a), h.invoke(b)
		if err := h.m.Stop(context.Background(), session.StopRequest{Key: a.Key}); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Stop(context.Background(), session.StopRequest{Key: a.Key}); err == nil {
			t.Fatal("second stop succeeded")
		}
		if r := h.ended(ra.ID); r.EndReason != session.EndStopped {
			t.Fatalf("want stopped, got %+v", r)
		}
		if err := h.m.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := h.ended(rb.ID); r.EndReason != session.EndShutdown {
			t.Fatalf("want shutdown, got %+v", r)
		}
		if _, err := h.m.Acquire(context.Background(), a); err != session.ErrShuttingDown {
			t.Fatalf("acquire after shutdown: %v", err)
		}
	})
}

func TestWarmPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := spec("x", 15*time.Minute, 8*time.Hour).Settings
		cfg.Sessions.WarmPool = 2
		h.m.SetPool("rt-0123456789", 1, cfg)
		synctest.Wait()
		if n := h.m.PoolSize("rt-0123456789"); n != 2 {
			t.Fatalf("pool has %d ready, want 2", n)
		}
		pooled := h.fake.Handles()[0]

		// Claims never share a sandbox, and the pool refills.
		seen := map[string]bool{}
		for i := range 5 {
			sp := spec(fmt.Sprintf("pool-session-%02d-0123456789012345678901", i), 15*time.Minute, 8*time.Hour)
			sp.Settings = cfg
			rec := h.invoke(sp)
			if seen[rec.SandboxID] {
				t.Fatalf("sandbox %s handed to two sessions", rec.SandboxID)
			}
			seen[rec.SandboxID] = true
			if i == 0 && rec.SandboxID != pooled.ID() {
				t.Fatalf("first session did not claim the warm sandbox: %s vs %s", rec.SandboxID, pooled.ID())
			}
			synctest.Wait()
		}
		if n := h.m.PoolSize("rt-0123456789"); n != 2 {
			t.Fatalf("pool did not refill: %d ready", n)
		}
		// A new version recycles the unclaimed sandboxes.
		before := h.fake.Handles()
		h.m.SetPool("rt-0123456789", 2, cfg)
		synctest.Wait()
		stopped := 0
		for _, fh := range before {
			if fh.Stopped() {
				stopped++
			}
		}
		if stopped != 2 {
			t.Fatalf("%d old pool sandboxes stopped on a version change, want 2", stopped)
		}
		sp := spec("old-version-session-0123456789012345678", 15*time.Minute, 8*time.Hour)
		sp.Settings = cfg // version 1: must not claim a version-2 sandbox
		if rec := h.invoke(sp); seen[rec.SandboxID] || h.m.PoolSize("rt-0123456789") != 2 {
			t.Fatalf("a version-1 session took from the version-2 pool")
		}
	})
}

// TestLaunchFollowsCapabilities: a session's default network and the way
// its durable-state socket reaches the agent follow what the backend says
// it can do, whatever its name.
func TestLaunchFollowsCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps sandbox.Capabilities
	}{
		{"HostPaths", sandbox.Capabilities{DefaultNetwork: sandbox.NetworkHost, Networks: []sandbox.NetworkMode{sandbox.NetworkHost}, HostPaths: true}},
		{"Mounts", sandbox.Capabilities{DefaultNetwork: sandbox.NetworkNone, Networks: []sandbox.NetworkMode{sandbox.NetworkNone}, PrivateNetwork: true, Mounts: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			fake := sandboxfake.New(sandboxfake.Options{Capabilities: &tc.caps})
			m := session.NewManager(db, map[string]sandbox.Backend{"any": fake}, session.Options{
				LogDir:         t.TempDir(),
				StateDir:       t.TempDir(),
				DefaultBackend: "any",
				Logger:         slog.New(slog.DiscardHandler),
			})
			defer m.Shutdown(context.Background())
			sp := spec("caps-session-0123456789012345678901234", 15*time.Minute, time.Hour)
			sp.Settings.Sessions.Durability = registry.DurabilityState
			sp.Settings.Sessions.StateMaxBytes = 1 << 20
			c, err := m.Acquire(context.Background(), sp)
			if err != nil {
				t.Fatal(err)
			}
			c.Release()

			got := fake.Last().Spec()
			if got.Network != tc.caps.DefaultNetwork {
				t.Errorf("network %q, want the backend's default %q", got.Network, tc.caps.DefaultNetwork)
			}
			socket := ""
			for _, kv := range got.Env {
				if v, ok := strings.CutPrefix(kv, api.EnvStateSocket+"="); ok {
					socket = v
				}
			}
			isSocket := func(p string) bool {
				fi, err := os.Stat(p)
				return err == nil && fi.Mode()&os.ModeSocket != 0
			}
			if tc.caps.HostPaths {
				if !isSocket(socket) || len(got.Mounts) != 0 {
					t.Errorf("state socket %q with mounts %v; want the socket's host path and no mount", socket, got.Mounts)
				}
				return
			}
			if len(got.Mounts) != 1 || !isSocket(filepath.Join(got.Mounts[0].Source, "state.sock")) ||
				socket != filepath.Join(got.Mounts[0].Target, "state.sock") {
				t.Errorf("state socket %q with mounts %v; want it inside a mount of the socket's dir", socket, got.Mounts)
			}
		})
	}
}
