package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// The session policies' logic, on fake sandboxes and synctest's clock: no
// sleeps decide an order here, the bubble does. internal/daemon keeps one
// end-to-end test per policy, and suspend_after's (a durable session
// serves a real Unix socket, which a synctest bubble cannot wait on).

// call acquires a call in sp's session and has the agent sleep ms.
func (h *harness) call(sp session.Spec, ms int) error {
	c, err := h.m.Acquire(context.Background(), sp)
	if err != nil {
		return err
	}
	defer c.Release()
	req, _ := http.NewRequest(http.MethodPost, api.PathInvocations, strings.NewReader(fmt.Sprintf(`{"op":"sleep","ms":%d}`, ms)))
	resp, err := c.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

func withPolicy(sp session.Spec, p registry.SessionPolicy) session.Spec {
	sp.Settings.Sessions = p
	return sp
}

func TestRejectPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := withPolicy(spec("reject-session-0123456789012345678901", 15*time.Minute, time.Hour),
			registry.SessionPolicy{Concurrency: registry.ConcurrencyReject})
		if err := h.call(sp, 0); err != nil { // the session exists
			t.Fatal(err)
		}
		first := make(chan error, 1)
		go func() { first <- h.call(sp, 10_000) }()
		synctest.Wait() // the first call is in the agent
		err := h.call(sp, 0)
		if !errors.Is(err, session.ErrBusy) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("a second call while one runs: %v, want busy", err)
		}
		if err := <-first; err != nil {
			t.Fatalf("the first call: %v", err)
		}
		if err := h.call(sp, 0); err != nil {
			t.Fatalf("a call after the first finished: %v", err)
		}
	})
}

func TestQueuePolicyRunsInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := withPolicy(spec("queue-session-01234567890123456789012", 15*time.Minute, time.Hour),
			registry.SessionPolicy{Concurrency: registry.ConcurrencyQueue, QueueSize: 3, QueueTimeout: registry.Duration(time.Minute)})
		if err := h.call(sp, 0); err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i := range 4 { // one runs, three wait
			wg.Go(func() {
				if err := h.call(sp, 1000); err != nil {
					t.Errorf("call %d: %v", i, err)
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			})
			synctest.Wait() // call i has arrived before call i+1 is made
		}
		err := h.call(sp, 0)
		if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "waiting") {
			t.Fatalf("a call past a full queue: %v, want unavailable (queue full)", err)
		}
		wg.Wait()
		if fmt.Sprint(order) != "[0 1 2 3]" {
			t.Fatalf("calls finished in order %v, want arrival order", order)
		}
	})
}

func TestQueuePolicyTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := withPolicy(spec("qtime-session-01234567890123456789012", 15*time.Minute, time.Hour),
			registry.SessionPolicy{Concurrency: registry.ConcurrencyQueue, QueueSize: 4, QueueTimeout: registry.Duration(5 * time.Second)})
		if err := h.call(sp, 0); err != nil {
			t.Fatal(err)
		}
		go h.call(sp, 60_000)
		synctest.Wait()
		start := time.Now()
		err := h.call(sp, 0)
		if !errors.Is(err, errdefs.ErrUnavailable) || time.Since(start) != 5*time.Second {
			t.Fatalf("a queued call behind a long one: %v after %s, want unavailable after 5s", err, time.Since(start))
		}
	})
}

func TestBindUserAndQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		pol := registry.SessionPolicy{BindUser: true, MaxSessionsPerUser: 2}
		mine := withPolicy(spec("bound-session-01234567890123456789012", 15*time.Minute, time.Hour), pol)
		mine.UserID = "alice"
		if err := h.call(mine, 0); err != nil {
			t.Fatal(err)
		}
		theirs := mine
		theirs.UserID = "bob"
		if err := h.call(theirs, 0); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Fatalf("bob calling alice's session: %v, want permission denied", err)
		}
		if err := h.m.Stop(context.Background(), session.StopRequest{Key: mine.Key, UserID: "bob", Policy: pol}); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Fatalf("bob stopping alice's session: %v, want permission denied", err)
		}
		second := mine
		second.SessionID = "bound-session-second-0123456789012345"
		if err := h.call(second, 0); err != nil {
			t.Fatalf("alice's second session: %v", err)
		}
		third := mine
		third.SessionID = "bound-session-third-01234567890123456"
		if err := h.call(third, 0); !errors.Is(err, errdefs.ErrResourceExhausted) {
			t.Fatalf("alice's third session with a cap of 2: %v, want resource exhausted", err)
		}
		bobs := theirs
		bobs.SessionID = "bound-session-bobs-012345678901234567"
		if err := h.call(bobs, 0); err != nil {
			t.Fatalf("bob's own session: %v", err)
		}
		if err := h.m.Stop(context.Background(), session.StopRequest{Key: mine.Key, UserID: "alice", Policy: pol}); err != nil {
			t.Fatalf("alice stopping her session: %v", err)
		}
	})
}

func TestCapsOnNewSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarnessWith(t, func(o *session.Options) { o.MaxSessions = 3; o.NewSessionsPerSecond = 1 })
		sid := func(i int) session.Spec {
			return spec(fmt.Sprintf("capped-session-%02d-0123456789012345678", i), 15*time.Minute, time.Hour)
		}
		// Bursts of twice the pace, then the pace.
		for i := range 2 {
			if err := h.call(sid(i), 0); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
		if err := h.call(sid(2), 0); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("a third new session within the burst: %v, want throttled", err)
		}
		time.Sleep(time.Second)
		if err := h.call(sid(2), 0); err != nil {
			t.Fatalf("a new session a second later: %v", err)
		}
		time.Sleep(time.Second)
		if err := h.call(sid(3), 0); !errors.Is(err, errdefs.ErrResourceExhausted) {
			t.Fatalf("a fourth live session with max_sessions 3: %v, want resource exhausted", err)
		}
		// Live sessions keep working.
		if err := h.call(sid(0), 0); err != nil {
			t.Fatalf("a live session past the cap: %v", err)
		}
	})
}
