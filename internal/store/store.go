// Package store persists berth's runtimes, versions, endpoints and session
// incarnations in one SQLite file (modernc.org/sqlite, pure Go).
//
// Writes go through a single connection, so they are serialised inside the
// process, and each begins IMMEDIATE, so they are serialised against other
// processes too. Reads use a separate pool and never wait for the writer
// (WAL). Every method is one transaction.
package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

var (
	_ registry.Store = (*DB)(nil)
	_ session.Store  = (*DB)(nil)
)

// Page sizes for listings whose caller asked for none or too many.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// busyTimeout bounds how long a connection waits for another process's lock.
const busyTimeout = 5 * time.Second

// readConns is the size of the read pool; WAL readers never block each other.
const readConns = 4

// DB is berth's SQLite store. It is safe for concurrent use.
type DB struct {
	// w has exactly one connection: all writes queue for it.
	w *sql.DB
	// r is the read pool; its connections are query_only.
	r *sql.DB
}

// Open opens (creating if needed) the database at path and migrates it to
// the newest schema.
//
// synchronous is NORMAL: in WAL mode a commit survives a crash of berth
// (the crash test kills writers mid-write), and only a power loss can roll
// back the last few commits, never corrupt the file. berth writes on every
// invocation, and after a power loss no sandbox survives anyway, so an fsync
// per commit (FULL) would buy little for its cost.
func Open(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, len(migrations))
}

// open is Open stopping at schema version target; tests use it to build
// databases of an older schema.
func open(ctx context.Context, path string, target int) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open store: invalid path %q", path)
	}
	ms := int64(busyTimeout / time.Millisecond)
	w, err := sql.Open("sqlite", fmt.Sprintf("%s?_txlock=immediate"+
		"&_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)"+
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)", path, ms))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	// Keep the one connection open for good: reopening costs a schema parse.
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	from, to, err := migrate(ctx, w, target)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	switch {
	case from == 0:
		slog.DebugContext(ctx, "store created", "path", path, "schema", to)
	case from != to:
		slog.InfoContext(ctx, "store migrated", "path", path, "from", from, "to", to)
	}

	r, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)"+
		"&_pragma=foreign_keys(1)&_pragma=query_only(1)", path, ms))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open store %s: read pool: %w", path, err)
	}
	return &DB{w: w, r: r}, nil
}

// Close closes both pools. The last close checkpoints the WAL.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

// write runs fn in one write transaction and commits it. A full disk
// fails it with errdefs.ErrDiskFull; SQLite rolls the transaction back,
// so nothing committed before is touched.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return diskFull(db.commit(ctx, fn))
}

// diskFull marks SQLite's "database or disk is full", and the operating
// system's, as errdefs.ErrDiskFull.
func diskFull(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %w", errdefs.ErrDiskFull, err)
	}
	return errdefs.DiskFull(err)
}

func (db *DB) commit(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// Deferred, so a panicking fn (or a test's t.Fatal in an UpdateSession
	// callback) still gives the one write connection back.
	committed := false
	defer func() {
		if !committed {
			tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// reclaim gives the pages deletes freed back to the file system: with
// auto_vacuum INCREMENTAL (migration 4) they would otherwise only be
// reused. A failure leaves them for the next delete.
func (db *DB) reclaim(ctx context.Context) {
	if _, err := db.w.ExecContext(ctx, "PRAGMA incremental_vacuum"); err != nil {
		slog.WarnContext(ctx, "store: reclaim free pages", "err", err)
	}
}

// read runs fn in one read transaction, so its queries see one snapshot.
func (db *DB) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A read-only transaction has nothing to commit.
	defer tx.Rollback()
	return fn(tx)
}

// queryer is what both *sql.DB and *sql.Tx offer for reads.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// nanos encodes t as unix nanoseconds, or NULL for the zero time.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// fromNanos decodes what nanos stored.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// pageSize clamps a requested page size.
func pageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}

// encodeToken makes an opaque page token from a listing kind and the last
// key returned.
func encodeToken(kind, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "/" + key))
}

// decodeToken reverses encodeToken; an empty token means the first page.
func decodeToken(kind, token string) (key string, err error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("page token: %w", errdefs.ErrInvalidArgument)
	}
	key, ok := strings.CutPrefix(string(b), kind+"/")
	if !ok {
		return "", fmt.Errorf("page token: not a %s token: %w", kind, errdefs.ErrInvalidArgument)
	}
	return key, nil
}
