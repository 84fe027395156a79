package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session"
)

const sessionCols = `id, runtime_id, endpoint, session_id, owner, epoch, version, user_id, state,
	end_reason, detail, backend, sandbox_id, addr, created_at, last_active_at, expires_at, ended_at, invocations`

func scanRecord(s scanner) (session.Record, error) {
	var (
		r                          session.Record
		created                    int64
		lastActive, expires, ended sql.NullInt64
	)
	err := s.Scan(&r.ID, &r.RuntimeID, &r.Endpoint, &r.SessionID, &r.Owner, &r.Epoch, &r.Version,
		&r.UserID, &r.State, &r.EndReason, &r.Detail, &r.Backend, &r.SandboxID, &r.Addr,
		&created, &lastActive, &expires, &ended, &r.Invocations)
	if err != nil {
		return session.Record{}, err
	}
	r.CreatedAt = time.Unix(0, created).UTC()
	r.LastActiveAt, r.ExpiresAt, r.EndedAt = fromNanos(lastActive), fromNanos(expires), fromNanos(ended)
	return r, nil
}

// ClaimSession inserts rec as the live incarnation of rec.Key with an epoch
// one past the key's highest; rec.Epoch is ignored. An empty rec.ID gets a
// UUIDv7, a zero CreatedAt the current time and an empty State "starting".
// A live incarnation of the key fails it with session.ErrLive.
func (db *DB) ClaimSession(ctx context.Context, rec session.Record) (session.Record, error) {
	rec, err := db.claimSession(ctx, rec)
	if err != nil {
		return session.Record{}, fmt.Errorf("claim session %s/%s/%s: %w", rec.RuntimeID, rec.Endpoint, rec.SessionID, err)
	}
	return rec, nil
}

func (db *DB) claimSession(ctx context.Context, rec session.Record) (session.Record, error) {
	if rec.RuntimeID == "" || rec.Endpoint == "" || rec.SessionID == "" || rec.Owner == "" {
		return rec, errors.New("record needs a runtime, endpoint, session ID and owner")
	}
	if rec.State == session.StateTerminated || !rec.EndedAt.IsZero() {
		return rec, errors.New("a claimed record must be live")
	}
	if rec.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return rec, fmt.Errorf("new incarnation ID: %w", err)
		}
		rec.ID = id.String()
	}
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = time.Now()
	}
	if rec.State == "" {
		rec.State = session.StateStarting
	}
	rec.EndReason = ""
	err := db.write(ctx, func(tx *sql.Tx) error {
		var live string
		err := tx.QueryRowContext(ctx, `SELECT id FROM sessions
			WHERE runtime_id = ? AND endpoint = ? AND session_id = ? AND ended_at IS NULL`,
			rec.RuntimeID, rec.Endpoint, rec.SessionID).Scan(&live)
		switch {
		case err == nil:
			return fmt.Errorf("incarnation %s: %w", live, session.ErrLive)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("find live incarnation: %w", err)
		}
		var top int64
		err = tx.QueryRowContext(ctx, `SELECT coalesce(max(epoch), 0) FROM sessions
			WHERE runtime_id = ? AND endpoint = ? AND session_id = ?`,
			rec.RuntimeID, rec.Endpoint, rec.SessionID).Scan(&top)
		if err != nil {
			return fmt.Errorf("read epoch: %w", err)
		}
		rec.Epoch = top + 1
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)`,
			rec.ID, rec.RuntimeID, rec.Endpoint, rec.SessionID, rec.Owner, rec.Epoch, rec.Version,
			rec.UserID, rec.State, rec.EndReason, rec.Detail, rec.Backend, rec.SandboxID, rec.Addr,
			rec.CreatedAt.UnixNano(), nanos(rec.LastActiveAt), nanos(rec.ExpiresAt), rec.Invocations)
		if err != nil {
			return fmt.Errorf("insert incarnation: %w", err)
		}
		return nil
	})
	if err != nil {
		return rec, err
	}
	return normalise(rec), nil
}

// normalise makes rec read back exactly as the store returns it: times in
// UTC at nanosecond precision, without monotonic readings.
func normalise(rec session.Record) session.Record {
	utc := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return time.Unix(0, t.UnixNano()).UTC()
	}
	rec.CreatedAt, rec.LastActiveAt = utc(rec.CreatedAt), utc(rec.LastActiveAt)
	rec.ExpiresAt, rec.EndedAt = utc(rec.ExpiresAt), utc(rec.EndedAt)
	return rec
}

// fenced reports whether l no longer holds the incarnation r.
func fenced(r session.Record, l session.Lease) error {
	if r.Owner != l.Owner || r.Epoch != l.Epoch {
		return fmt.Errorf("lease %s/%d, record held by %s/%d: %w", l.Owner, l.Epoch, r.Owner, r.Epoch, session.ErrFenced)
	}
	return nil
}

// UpdateSession applies fn to the live incarnation id under lease l and
// writes the result, in one transaction. fn runs while the store's write
// connection is held: it must be quick and must not call the store. It may
// change anything but ID, Key, Lease, CreatedAt, EndedAt, EndReason and
// State terminated (EndSession ends sessions). A lease that does not match,
// or an incarnation already ended, fails with session.ErrFenced and changes
// nothing.
func (db *DB) UpdateSession(ctx context.Context, id string, l session.Lease, fn func(*session.Record)) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		old, err := scanRecord(tx.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read incarnation: %w", err)
		}
		if err := fenced(old, l); err != nil {
			return err
		}
		if !old.EndedAt.IsZero() {
			return fmt.Errorf("incarnation ended %s: %w", old.EndReason, session.ErrFenced)
		}
		rec := old
		fn(&rec)
		rec = normalise(rec)
		switch {
		case rec.ID != old.ID || rec.Key != old.Key || rec.Lease != old.Lease:
			return errors.New("fn changed the record's ID, key or lease")
		case !rec.CreatedAt.Equal(old.CreatedAt) || !rec.EndedAt.IsZero() || rec.EndReason != "":
			return errors.New("fn changed CreatedAt, EndedAt or EndReason")
		case rec.State == session.StateTerminated:
			return errors.New("fn set state terminated; use EndSession")
		}
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET version = ?, user_id = ?, state = ?, detail = ?,
			backend = ?, sandbox_id = ?, addr = ?, last_active_at = ?, expires_at = ?, invocations = ?
			WHERE id = ? AND owner = ? AND epoch = ? AND ended_at IS NULL`,
			rec.Version, rec.UserID, rec.State, rec.Detail, rec.Backend, rec.SandboxID, rec.Addr,
			nanos(rec.LastActiveAt), nanos(rec.ExpiresAt), rec.Invocations, id, l.Owner, l.Epoch)
		if err != nil {
			return fmt.Errorf("write incarnation: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("incarnation changed under the write lock: %w", session.ErrFenced)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update session %s: %w", id, err)
	}
	return nil
}

// EndSession marks incarnation id terminated with reason and detail at at
// (now if zero), under lease l. A lease that does not match fails with
// session.ErrFenced. Ending an ended incarnation is a no-op: the first end
// reason stands.
func (db *DB) EndSession(ctx context.Context, id string, l session.Lease, reason session.EndReason, detail string, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		var (
			cur   session.Record
			ended sql.NullInt64
		)
		err := tx.QueryRowContext(ctx, `SELECT owner, epoch, ended_at FROM sessions WHERE id = ?`, id).
			Scan(&cur.Owner, &cur.Epoch, &ended)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read incarnation: %w", err)
		}
		if err := fenced(cur, l); err != nil {
			return err
		}
		if ended.Valid {
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET state = ?, end_reason = ?, detail = ?, ended_at = ?
			WHERE id = ?`, session.StateTerminated, reason, detail, at.UnixNano(), id)
		if err != nil {
			return fmt.Errorf("write incarnation: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("end session %s: %w", id, err)
	}
	return nil
}

// EndAllLive ends every live incarnation owned by owner with reason at at
// (now if zero), in one transaction, and returns them ended, oldest first.
// Their Detail is kept.
func (db *DB) EndAllLive(ctx context.Context, owner string, reason session.EndReason, at time.Time) ([]session.Record, error) {
	if at.IsZero() {
		at = time.Now()
	}
	var recs []session.Record
	err := db.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE sessions SET state = ?, end_reason = ?, ended_at = ?
			WHERE owner = ? AND ended_at IS NULL RETURNING `+sessionCols,
			session.StateTerminated, reason, at.UnixNano(), owner)
		if err != nil {
			return err
		}
		recs, err = collect(rows, scanRecord)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("end live sessions of %s: %w", owner, err)
	}
	slices.SortFunc(recs, func(a, b session.Record) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return recs, nil
}

// GetSession returns incarnation id.
func (db *DB) GetSession(ctx context.Context, id string) (session.Record, error) {
	rec, err := scanRecord(db.r.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = errdefs.ErrNotFound
	}
	if err != nil {
		return session.Record{}, fmt.Errorf("get session %s: %w", id, err)
	}
	return rec, nil
}

// ListSessions lists incarnations newest first by (CreatedAt, ID). The
// cursor names the last row returned, so rows inserted meanwhile never shift
// later pages. CreatedAfter and CreatedBefore are exclusive. A zero Limit
// means DefaultPageSize, and no page holds more than MaxPageSize. A malformed
// cursor fails with errdefs.ErrInvalidArgument.
func (db *DB) ListSessions(ctx context.Context, f session.Filter) ([]session.Record, string, error) {
	recs, next, err := db.listSessions(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("list sessions: %w", err)
	}
	return recs, next, nil
}

func (db *DB) listSessions(ctx context.Context, f session.Filter) ([]session.Record, string, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.RuntimeID != "" {
		add("runtime_id = ?", f.RuntimeID)
	}
	if f.Endpoint != "" {
		add("endpoint = ?", f.Endpoint)
	}
	if f.SessionID != "" {
		add("session_id = ?", f.SessionID)
	}
	if f.UserID != "" {
		add("user_id = ?", f.UserID)
	}
	if f.State == session.StateLive {
		add("ended_at IS NULL")
	} else if f.State != "" {
		add("state = ?", string(f.State))
	}
	if !f.CreatedAfter.IsZero() {
		add("created_at > ?", f.CreatedAfter.UnixNano())
	}
	if !f.CreatedBefore.IsZero() {
		add("created_at < ?", f.CreatedBefore.UnixNano())
	}
	if f.After != "" {
		at, id, err := decodeCursor(f.After)
		if err != nil {
			return nil, "", err
		}
		add("(created_at < ? OR (created_at = ? AND id < ?))", at, at, id)
	}
	q := `SELECT ` + sessionCols + ` FROM sessions`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	n := pageSize(f.Limit)
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, n+1)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	recs, err := collect(rows, scanRecord)
	if err != nil {
		return nil, "", err
	}
	var next string
	if len(recs) > n {
		recs = recs[:n]
		last := recs[n-1]
		next = encodeToken("sessions", strconv.FormatInt(last.CreatedAt.UnixNano(), 10)+"/"+last.ID)
	}
	return recs, next, nil
}

func decodeCursor(c string) (at int64, id string, err error) {
	key, err := decodeToken("sessions", c)
	if err != nil {
		return 0, "", err
	}
	ns, id, ok := strings.Cut(key, "/")
	at, perr := strconv.ParseInt(ns, 10, 64)
	if !ok || perr != nil {
		return 0, "", fmt.Errorf("cursor: %w", errdefs.ErrInvalidArgument)
	}
	return at, id, nil
}
