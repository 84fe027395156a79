package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session"
)

// LoadState returns a durable session's saved state and the user it is
// bound to; errdefs.ErrNotFound if nothing was saved.
func (db *DB) LoadState(ctx context.Context, k session.Key) ([]byte, string, error) {
	var (
		data []byte
		user string
	)
	err := db.r.QueryRowContext(ctx, `SELECT data, user_id FROM session_state WHERE runtime_id = ? AND endpoint = ? AND session_id = ?`,
		k.RuntimeID, k.Endpoint, k.SessionID).Scan(&data, &user)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("state of session %s: %w", k.SessionID, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("load state of session %s: %w", k.SessionID, err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, user, nil
}

// SaveState replaces a durable session's state in one transaction: a
// reader sees the old state or the new one, never a part.
func (db *DB) SaveState(ctx context.Context, k session.Key, user string, data []byte, at time.Time) error {
	if data == nil {
		data = []byte{}
	}
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO session_state (runtime_id, endpoint, session_id, data, updated_at, user_id)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (runtime_id, endpoint, session_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at,
				user_id = CASE WHEN session_state.user_id = '' THEN excluded.user_id ELSE session_state.user_id END`,
			k.RuntimeID, k.Endpoint, k.SessionID, data, at.UnixNano(), user)
		if err != nil {
			return fmt.Errorf("save state of session %s: %w", k.SessionID, err)
		}
		return nil
	})
}

// DeleteState forgets a session's state (an explicit stop).
func (db *DB) DeleteState(ctx context.Context, k session.Key) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM session_state WHERE runtime_id = ? AND endpoint = ? AND session_id = ?`,
			k.RuntimeID, k.Endpoint, k.SessionID)
		if err != nil {
			return fmt.Errorf("delete state of session %s: %w", k.SessionID, err)
		}
		return nil
	})
}

// DeleteStates forgets every state of a runtime (runtimeID non-empty), or
// every state not saved since before (retention).
func (db *DB) DeleteStates(ctx context.Context, runtimeID string, before time.Time) (int64, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if runtimeID != "" {
			res, err = tx.ExecContext(ctx, `DELETE FROM session_state WHERE runtime_id = ?`, runtimeID)
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM session_state WHERE updated_at < ?`, before.UnixNano())
		}
		if err != nil {
			return fmt.Errorf("delete states: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if n > 0 {
		db.reclaim(ctx)
	}
	return n, err
}
