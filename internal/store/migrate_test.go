package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// Regenerate testdata/v1.db (a database made by migration 1 only) with
//
//	go test ./internal/store -run TestGenerateV1 -args -gen
//
// Only ever needed if the fixture below changes; migration 1 itself never does.
var gen = flag.Bool("gen", false, "regenerate testdata/v1.db")

const v1File = "testdata/v1.db"

// v1Time is the fixture's clock.
var v1Time = time.Date(2026, 11, 1, 12, 0, 0, 987654321, time.UTC)

// The v1 fixture, as the store should read it back after upgrading.
var (
	v1Runtime = registry.Runtime{
		ID: "legacy-0123456789", Name: "legacy",
		ARN:         "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/legacy-0123456789",
		Description: "made by schema v1", Status: api.StatusReady, LatestVersion: 2,
		Tags: map[string]string{"env": "test"}, Source: registry.SourceConfig,
		CreatedAt: v1Time, UpdatedAt: v1Time.Add(time.Hour),
	}
	v1Versions = []registry.Version{
		{RuntimeID: v1Runtime.ID, Version: 1, CreatedAt: v1Time,
			Settings: registry.Settings{Command: []string{"./agent", "--v1"}, IdleTimeout: registry.Duration(15 * time.Minute), MaxLifetime: registry.Duration(8 * time.Hour)}},
		{RuntimeID: v1Runtime.ID, Version: 2, CreatedAt: v1Time.Add(time.Hour),
			Settings: registry.Settings{Command: []string{"./agent", "--v2"}, Env: map[string]string{"A": "b"},
				IdleTimeout: registry.Duration(time.Minute), MaxLifetime: registry.Duration(time.Hour), Limits: registry.Limits{Memory: 1 << 28}}},
	}
	v1Endpoints = []registry.Endpoint{
		{RuntimeID: v1Runtime.ID, Name: "DEFAULT", ID: "DEFAULT", ARN: v1Runtime.ARN + "/runtime-endpoint/DEFAULT",
			Status: api.StatusReady, LiveVersion: 2, TargetVersion: 2, CreatedAt: v1Time, UpdatedAt: v1Time.Add(time.Hour)},
		{RuntimeID: v1Runtime.ID, Name: "prod", ID: "prod-0123456789", ARN: v1Runtime.ARN + "/runtime-endpoint/prod",
			Description: "pinned", Status: api.StatusReady, LiveVersion: 1, TargetVersion: 1,
			CreatedAt: v1Time.Add(time.Minute), UpdatedAt: v1Time.Add(time.Minute)},
	}
	v1Key      = session.Key{RuntimeID: v1Runtime.ID, Endpoint: "DEFAULT", SessionID: strings.Repeat("a", 40)}
	v1Sessions = []session.Record{
		{ID: "0193a000-0000-7000-8000-000000000001", Key: v1Key, Lease: session.Lease{Owner: "node-old", Epoch: 1},
			Version: 1, UserID: "u1", State: session.StateTerminated, EndReason: session.EndIdleTimeout, Detail: "idle",
			Backend: "process", SandboxID: "sb-1", Addr: "127.0.0.1:4001",
			CreatedAt: v1Time.Add(2 * time.Minute), LastActiveAt: v1Time.Add(3 * time.Minute),
			ExpiresAt: v1Time.Add(8 * time.Hour), EndedAt: v1Time.Add(20 * time.Minute), Invocations: 4},
		{ID: "0193a000-0000-7000-8000-000000000002", Key: v1Key, Lease: session.Lease{Owner: "node-old", Epoch: 2},
			Version: 2, UserID: "u1", State: session.StateIdle,
			Backend: "linux", SandboxID: "sb-2", Addr: "127.0.0.1:4002",
			CreatedAt: v1Time.Add(30 * time.Minute), LastActiveAt: v1Time.Add(31 * time.Minute),
			ExpiresAt: v1Time.Add(9 * time.Hour), Invocations: 1},
	}
)

// writeV1 builds the fixture at path with migration 1 only, writing rows
// with plain SQL in the v1 layout so the file never depends on later code.
func writeV1(ctx context.Context, path string) error {
	db, err := open(ctx, path, 1)
	if err != nil {
		return err
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		tags, _ := json.Marshal(v1Runtime.Tags)
		rt := v1Runtime
		if _, err := tx.ExecContext(ctx, `INSERT INTO runtimes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rt.ID, rt.Name, rt.ARN, rt.Description, rt.Status, rt.LatestVersion, string(tags), rt.Source,
			rt.CreatedAt.UnixNano(), rt.UpdatedAt.UnixNano()); err != nil {
			return err
		}
		for _, v := range v1Versions {
			config, _ := json.Marshal(v.Settings)
			if _, err := tx.ExecContext(ctx, `INSERT INTO runtime_versions VALUES (?, ?, ?, ?)`,
				v.RuntimeID, v.Version, string(config), v.CreatedAt.UnixNano()); err != nil {
				return err
			}
		}
		for _, e := range v1Endpoints {
			if _, err := tx.ExecContext(ctx, `INSERT INTO runtime_endpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				e.RuntimeID, e.Name, e.ID, e.ARN, e.Description, e.Status, e.LiveVersion, e.TargetVersion,
				e.CreatedAt.UnixNano(), e.UpdatedAt.UnixNano()); err != nil {
				return err
			}
		}
		for _, r := range v1Sessions {
			if _, err := tx.ExecContext(ctx, `INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.ID, r.RuntimeID, r.Endpoint, r.SessionID, r.Owner, r.Epoch, r.Version, r.UserID, r.State,
				r.EndReason, r.Detail, r.Backend, r.SandboxID, r.Addr, r.CreatedAt.UnixNano(),
				nanos(r.LastActiveAt), nanos(r.ExpiresAt), nanos(r.EndedAt), r.Invocations); err != nil {
				return err
			}
		}
		return nil
	})
	// Close checkpoints the WAL into the main file, which is all we keep.
	return errors.Join(err, db.Close())
}

// dump renders a database's schema version, schema and rows as text.
func dump(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "user_version %d\n", version)
	rows, err := db.Query(`SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s: %s\n", typ, name, text)
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	rows.Close()
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `" ORDER BY 1, 2`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %v\n", table, vals)
		}
		rows.Close()
	}
	return b.String()
}

// TestGenerateV1 checks that testdata/v1.db is what migration 1 and the
// fixture produce; with -gen it rewrites the file instead.
func TestGenerateV1(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "v1.db")
	if err := writeV1(t.Context(), fresh); err != nil {
		t.Fatalf("build v1 database: %v", err)
	}
	if *gen {
		b, err := os.ReadFile(fresh)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(v1File, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", v1File, len(b))
		return
	}
	if got, want := dump(t, v1File), dump(t, fresh); got != want {
		t.Fatalf("%s differs from migration 1 plus the fixture; regenerate with -args -gen\ncommitted:\n%s\nfresh:\n%s", v1File, got, want)
	}
}

// TestUpgradeFromV1 opens a database made by schema version 1 and checks
// that it is migrated and that its data reads back and keeps working.
func TestUpgradeFromV1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "berth.db")
	b, err := os.ReadFile(v1File)
	if err != nil {
		t.Fatalf("read %s (generate it with -run TestGenerateV1 -args -gen): %v", v1File, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump(t, path), "user_version 1\n") {
		t.Fatalf("%s is not at schema version 1", v1File)
	}

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open v1 database: %v", err)
	}
	defer db.Close()

	var version int
	if err := db.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) {
		t.Fatalf("schema version %d after open, want %d", version, len(migrations))
	}
	for _, name := range []string{"sessions_created", "sessions_runtime_created", "sessions_owner_live", "session_state"} {
		var n int
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = ?`, name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("schema object %s after upgrade: count %d, err %v", name, n, err)
		}
	}
	plan := explain(t, db.r, `SELECT id FROM sessions ORDER BY created_at DESC, id DESC LIMIT 5`)
	if !strings.Contains(plan, "sessions_created") {
		t.Errorf("session listing does not use the v2 index: %s", plan)
	}

	// The data survived.
	rt, err := db.GetRuntime(ctx, v1Runtime.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rt, v1Runtime) {
		t.Errorf("runtime after upgrade:\n got  %+v\n want %+v", rt, v1Runtime)
	}
	vs, _, err := db.ListVersions(ctx, v1Runtime.ID, registry.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vs, v1Versions) {
		t.Errorf("versions after upgrade:\n got  %+v\n want %+v", vs, v1Versions)
	}
	es, _, err := db.ListEndpoints(ctx, v1Runtime.ID, registry.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(es, v1Endpoints) {
		t.Errorf("endpoints after upgrade:\n got  %+v\n want %+v", es, v1Endpoints)
	}
	recs, _, err := db.ListSessions(ctx, session.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	wantRecs := slices.Clone(v1Sessions)
	slices.Reverse(wantRecs) // newest first
	if !reflect.DeepEqual(recs, wantRecs) {
		t.Errorf("sessions after upgrade:\n got  %+v\n want %+v", recs, wantRecs)
	}

	// And it keeps working: the live v1 incarnation still fences a claim,
	// recovery ends it, and the next incarnation continues the epochs.
	if _, err := db.ClaimSession(ctx, session.Record{Key: v1Key, Lease: session.Lease{Owner: "node-new"}}); !errors.Is(err, session.ErrLive) {
		t.Fatalf("claim over the live v1 incarnation: %v, want ErrLive", err)
	}
	ended, err := db.EndAllLive(ctx, "node-old", session.EndShutdown, time.Now())
	if err != nil || len(ended) != 1 || ended[0].ID != v1Sessions[1].ID {
		t.Fatalf("EndAllLive(node-old) = %+v, %v; want the live v1 incarnation", ended, err)
	}
	rec, err := db.ClaimSession(ctx, session.Record{Key: v1Key, Lease: session.Lease{Owner: "node-new"}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Epoch != v1Sessions[1].Epoch+1 {
		t.Fatalf("new incarnation has epoch %d, want %d", rec.Epoch, v1Sessions[1].Epoch+1)
	}
	next := v1Runtime
	next.UpdatedAt = time.Now().UTC()
	if err := db.UpdateRuntime(ctx, next, registry.Version{Version: 3, Settings: v1Versions[1].Settings}, 0); err != nil {
		t.Fatalf("update v1 runtime: %v", err)
	}
	if err := db.SaveState(ctx, v1Key, "user-1", []byte("state"), time.Now()); err != nil {
		t.Fatalf("write session_state: %v", err)
	}
	data, user, err := db.LoadState(ctx, v1Key)
	if err != nil || string(data) != "state" || user != "user-1" {
		t.Fatalf("read session_state back: %q %q %v", data, user, err)
	}
}

// explain returns SQLite's query plan for query, one step per line.
func explain(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatalf("explain: %v", err)
		}
		b.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("explain: %v", err)
	}
	return b.String()
}
