package store

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/store/storetest"
)

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openTemp(t) })
}

func TestOpenSettings(t *testing.T) {
	db := openTemp(t)
	ctx := t.Context()
	for _, tc := range []struct {
		pool   *sql.DB
		pragma string
		want   string
	}{
		{db.w, "journal_mode", "wal"},
		{db.w, "foreign_keys", "1"},
		{db.w, "synchronous", "1"}, // NORMAL
		{db.w, "busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
		{db.w, "user_version", fmt.Sprint(len(migrations))},
		{db.w, "auto_vacuum", "2"}, // INCREMENTAL
		{db.r, "journal_mode", "wal"},
		{db.r, "query_only", "1"},
		{db.r, "busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
	} {
		var got string
		if err := tc.pool.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	if s := db.w.Stats(); s.MaxOpenConnections != 1 {
		t.Errorf("write pool allows %d connections, want 1", s.MaxOpenConnections)
	}
	if _, err := db.r.ExecContext(ctx, `DELETE FROM runtimes`); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	rt := registry.Runtime{ID: "a-0123456789", Name: "a", Status: api.StatusReady}
	if err := db.CreateRuntime(t.Context(), rt, registry.Version{Settings: registry.Settings{Command: []string{"x"}}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	got, err := db.GetVersion(t.Context(), rt.ID, 1)
	if err != nil {
		t.Fatalf("get version after reopen: %v", err)
	}
	if len(got.Settings.Command) != 1 || got.Settings.Command[0] != "x" {
		t.Fatalf("version after reopen: %+v", got)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	newer := len(migrations) + 1
	if _, err := db.w.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(t.Context(), path)
	if err == nil {
		db.Close()
		t.Fatal("opened a database from a newer berth")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("error %q does not say the schema is newer", err)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", "x.db?mode=ro", filepath.Join(t.TempDir(), "missing-dir", "berth.db")} {
		if db, err := Open(t.Context(), p); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestMigrationsNumbered(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Fatalf("migration %s has version %d at position %d", m.name, m.version, i)
		}
		if strings.TrimSpace(m.sql) == "" {
			t.Fatalf("migration %s is empty", m.name)
		}
	}
	if len(migrations) < 2 {
		t.Fatalf("%d migrations; the upgrade test needs at least 2", len(migrations))
	}
}

// TestDeleteGivesSpaceBack fills a store made by schema 3 (auto_vacuum off)
// with runtimes, upgrades it, deletes them all and checks the file shrank:
// the migration turned incremental vacuum on, and deletes reclaim pages.
func TestDeleteGivesSpaceBack(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "berth.db")
	db, err := open(ctx, path, 3)
	if err != nil {
		t.Fatal(err)
	}
	var mode int
	if err := db.w.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil || mode != 0 {
		t.Fatalf("schema 3 auto_vacuum = %d, %v; want 0 (none)", mode, err)
	}
	db.Close()
	size := func() int64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	env := map[string]string{"PADDING": strings.Repeat("x", 2000)}
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("rt%04d-0123456789", i)
		rt := registry.Runtime{ID: ids[i], Name: fmt.Sprintf("rt%04d", i), Status: api.StatusReady}
		if err := db.CreateRuntime(ctx, rt, registry.Version{Settings: registry.Settings{Command: []string{"x"}, Env: env}}, 0); err != nil {
			t.Fatal(err)
		}
	}
	db.Close() // checkpoints the WAL into the file
	full := size()

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := db.DeleteRuntime(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var free int
	if err := db.w.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free); err != nil {
		t.Fatal(err)
	}
	db.Close()
	emptied := size()
	t.Logf("%d runtimes: %d bytes; all deleted: %d bytes (%d free pages left)", n, full, emptied, free)
	if emptied > full/10 || free != 0 {
		t.Fatalf("after deleting every runtime the file holds %d of %d bytes and %d free pages", emptied, full, free)
	}
}
