package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// migrationFiles holds the schema as numbered steps, NNNN_name.sql, applied
// in order. PRAGMA user_version records the last one applied. Never edit a
// shipped file: add the next number. A step whose first line is
// noTxMarker runs outside a transaction (VACUUM must), so it must be
// idempotent.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step.
type migration struct {
	version int
	name    string
	sql     string
	noTx    bool
}

const noTxMarker = "-- berth:no-transaction"

// migrations is the schema, in order; migrations[i].version == i+1.
var migrations = mustLoadMigrations(migrationFiles)

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

// loadMigrations reads migrations/*.sql and checks they are numbered 1..n
// with no gaps.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	// Glob returns names sorted, and the zero-padded prefix sorts numerically.
	var ms []migration
	for i, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", base)
		}
		if v != i+1 {
			return nil, fmt.Errorf("migration %s: want number %d", base, i+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b), noTx: strings.HasPrefix(string(b), noTxMarker+"\n")})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations embedded")
	}
	return ms, nil
}

// migrate applies the migrations after the database's user_version, up to
// and including target, each in its own transaction together with the new
// user_version. It returns the versions before and after.
func migrate(ctx context.Context, db *sql.DB, target int) (from, to int, err error) {
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&from); err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if from > len(migrations) {
		return from, from, fmt.Errorf("schema version %d is newer than this berth knows (%d)", from, len(migrations))
	}
	to = from
	for _, m := range migrations {
		if m.version <= from || m.version > target {
			continue
		}
		apply := step
		if m.noTx {
			apply = stepNoTx
		}
		if err := apply(ctx, db, m); err != nil {
			return from, to, fmt.Errorf("migrate %s: %w", m.name, err)
		}
		to = m.version
	}
	return from, to, nil
}

// step applies m in one transaction together with the new user_version.
func step(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	// Another process may have migrated since we looked: the IMMEDIATE
	// begin holds the write lock, so this read is final.
	var cur int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if cur >= m.version {
		return nil
	}
	if cur != m.version-1 {
		return fmt.Errorf("schema version %d, want %d", cur, m.version-1)
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, setVersion(m.version)); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return tx.Commit()
}

// stepNoTx applies m statement by statement, then sets user_version unless
// another process moved it on. A crash in between leaves the old version,
// and m runs again.
func stepNoTx(ctx context.Context, db *sql.DB, m migration) error {
	if _, err := db.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	return step(ctx, db, migration{version: m.version, name: m.name, sql: "SELECT 1"})
}

// setVersion sets user_version; PRAGMA takes no bound parameters, and the
// value is our own integer.
func setVersion(v int) string { return fmt.Sprintf("PRAGMA user_version = %d", v) }
