package session_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// An ID an agent minted for its session (an MCP server's Mcp-Session-Id)
// reaches that session while it lives, never another one, and dies with it.
func TestAlias(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		a := spec("alias-session-a-0123456789012345678901", 15*time.Minute, 8*time.Hour)
		b := spec("alias-session-b-0123456789012345678901", 15*time.Minute, 8*time.Hour)
		ra, rb := h.invoke(a), h.invoke(b)

		c, err := h.m.Acquire(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Alias("minted-by-the-server"); err != nil {
			t.Fatalf("alias: %v", err)
		}
		if err := c.Alias("minted-by-the-server"); err != nil {
			t.Fatalf("the same alias again: %v", err)
		}
		// Another session's key, or another session's alias, is refused.
		if err := c.Alias(b.SessionID); !errors.Is(err, session.ErrAliasTaken) {
			t.Errorf("alias naming session b: %v, want ErrAliasTaken", err)
		}
		c.Release()
		cb, err := h.m.Acquire(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := cb.Alias("minted-by-the-server"); !errors.Is(err, session.ErrAliasTaken) {
			t.Errorf("session b took session a's alias: %v", err)
		}
		cb.Release()

		viaAlias := a
		viaAlias.SessionID = "minted-by-the-server"
		if got := h.invoke(viaAlias); got.ID != ra.ID {
			t.Fatalf("the alias reached record %s, want session a's %s", got.ID, ra.ID)
		}
		if got := h.invoke(b); got.ID != rb.ID {
			t.Fatalf("session b moved: %s", got.ID)
		}

		// The alias ends with its session: the ID then starts a new one.
		if err := h.m.Stop(context.Background(), session.StopRequest{Key: a.Key}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := h.invoke(viaAlias); got.ID == ra.ID || got.Key.SessionID != viaAlias.SessionID {
			t.Fatalf("after session a ended its alias reached %+v", got)
		}
	})
}

// An MCP agent has no /ping: it is healthy while its port accepts, and its
// sandbox is asked for MCP's port.
func TestMCPHealthIsThePort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		sp := spec("mcp-session-0123456789012345678901234", 15*time.Minute, 8*time.Hour)
		sp.Settings.Protocol = registry.ProtocolMCP
		rec := h.invoke(sp)
		agent := h.fake.Last()
		if p := agent.Spec().Port; p != 8000 {
			t.Errorf("sandbox port %d, want MCP's 8000", p)
		}
		// /ping fails, but the port accepts: the session lives on.
		agent.SetPing("500")
		time.Sleep(time.Minute)
		if r := h.ended(rec.ID); r.State == session.StateTerminated {
			t.Fatalf("an MCP session ended on failed pings: %+v", r)
		}
		agent.Crash(1)
		if r := h.ended(rec.ID); r.EndReason != session.EndCrashed {
			t.Fatalf("want crashed, got %+v", r)
		}
	})
}
