package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session"
)

func TestSessionState(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := session.Key{RuntimeID: "rt-0123456789", Endpoint: "DEFAULT", SessionID: "state-session-000000000000000000000"}
	if _, _, err := db.LoadState(ctx, k); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("empty load: %v", err)
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := db.SaveState(ctx, k, "alice", []byte("v1"), old); err != nil {
		t.Fatal(err)
	}
	// The first user to bind a state keeps it.
	if err := db.SaveState(ctx, k, "mallory", []byte("v2"), old); err != nil {
		t.Fatal(err)
	}
	data, user, err := db.LoadState(ctx, k)
	if err != nil || string(data) != "v2" || user != "alice" {
		t.Fatalf("load: %q %q %v", data, user, err)
	}
	other := k
	other.SessionID = "state-session-111111111111111111111"
	if err := db.SaveState(ctx, other, "", []byte{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if data, _, err := db.LoadState(ctx, other); err != nil || data == nil || len(data) != 0 {
		t.Fatalf("empty state: %q %v", data, err)
	}
	// Retention removes only what was not saved since the cutoff.
	if n, err := db.DeleteStates(ctx, "", time.Now().Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("retention: %d %v", n, err)
	}
	if _, _, err := db.LoadState(ctx, other); err != nil {
		t.Fatalf("fresh state swept: %v", err)
	}
	if err := db.DeleteState(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.LoadState(ctx, other); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}
