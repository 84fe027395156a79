package session_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestJanitorExpiresSessionStorage: storage nobody used for the retention
// (AgentCore's 14 days) is wiped by the manager's janitor, and storage
// used within it is kept. Time is synctest's, so two weeks pass at once.
func TestJanitorExpiresSessionStorage(t *testing.T) {
	testenv.Require(t, testenv.Root, storage.Available())
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		vols, err := storage.Open(filepath.Join(dir, "storage"), 16<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		use := func(sid string) {
			v, err := vols.Attach(storage.Key{RuntimeID: "rt", Endpoint: "DEFAULT", SessionID: sid}, 1)
			if err != nil {
				t.Fatal(err)
			}
			v.Detach()
		}
		exists := func(sid string) bool {
			// Attaching an existing storage keeps its files; a wiped one
			// comes back empty. A marker file tells them apart.
			v, err := vols.Attach(storage.Key{RuntimeID: "rt", Endpoint: "DEFAULT", SessionID: sid}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Detach()
			used, _ := v.Used()
			return used > 64<<10
		}
		mark := func(sid string) {
			v, err := vols.Attach(storage.Key{RuntimeID: "rt", Endpoint: "DEFAULT", SessionID: sid}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Detach()
			writeFile(t, filepath.Join(v.Dir, "marker"), 1<<20)
		}
		db, err := store.Open(context.Background(), filepath.Join(dir, "berth.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		m := session.NewManager(db, map[string]sandbox.Backend{}, session.Options{
			LogDir: t.TempDir(), Storage: vols, StorageRetention: 14 * 24 * time.Hour,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		defer m.Shutdown(context.Background())
		mark("old")
		mark("recent")
		time.Sleep(13 * 24 * time.Hour)
		use("recent")
		time.Sleep(2 * 24 * time.Hour) // old: 15 days unused; recent: 2
		synctest.Wait()
		if exists("old") {
			t.Error("storage unused for 15 days survived the janitor")
		}
		if !exists("recent") {
			t.Error("storage used 2 days ago was wiped")
		}
	})
}

func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}
