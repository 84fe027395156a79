package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
)

// CreateRuntime creates the DEFAULT endpoint (registry.DefaultEndpoint)
// with ID "DEFAULT" and ARN {runtime ARN}/runtime-endpoint/DEFAULT;
// PutEndpoint may rewrite its descriptive fields later.

const runtimeCols = `id, name, arn, description, status, latest_version, tags, source, created_at, updated_at`

const endpointCols = `runtime_id, name, id, arn, description, status, live_version, target_version, created_at, updated_at`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanRuntime(s scanner) (registry.Runtime, error) {
	var (
		rt               registry.Runtime
		tags             string
		created, updated sql.NullInt64
	)
	err := s.Scan(&rt.ID, &rt.Name, &rt.ARN, &rt.Description, &rt.Status, &rt.LatestVersion,
		&tags, &rt.Source, &created, &updated)
	if err != nil {
		return registry.Runtime{}, err
	}
	if err := json.Unmarshal([]byte(tags), &rt.Tags); err != nil {
		return registry.Runtime{}, fmt.Errorf("decode tags of runtime %s: %w", rt.ID, err)
	}
	rt.CreatedAt, rt.UpdatedAt = fromNanos(created), fromNanos(updated)
	return rt, nil
}

func scanVersion(s scanner) (registry.Version, error) {
	var (
		v       registry.Version
		config  string
		created sql.NullInt64
	)
	if err := s.Scan(&v.RuntimeID, &v.Version, &config, &created); err != nil {
		return registry.Version{}, err
	}
	if err := json.Unmarshal([]byte(config), &v.Settings); err != nil {
		return registry.Version{}, fmt.Errorf("decode config of %s version %d: %w", v.RuntimeID, v.Version, err)
	}
	v.CreatedAt = fromNanos(created)
	return v, nil
}

func scanEndpoint(s scanner) (registry.Endpoint, error) {
	var (
		e                registry.Endpoint
		created, updated sql.NullInt64
	)
	err := s.Scan(&e.RuntimeID, &e.Name, &e.ID, &e.ARN, &e.Description, &e.Status,
		&e.LiveVersion, &e.TargetVersion, &created, &updated)
	if err != nil {
		return registry.Endpoint{}, err
	}
	e.CreatedAt, e.UpdatedAt = fromNanos(created), fromNanos(updated)
	return e, nil
}

// CreateRuntime writes rt, its version 1 (v.Version must be 0 or 1) and the
// DEFAULT endpoint pointing at it. rt.LatestVersion is set to 1. A taken ID
// or name fails with errdefs.ErrConflict; maxRuntimes (> 0) runtimes
// existing already, with errdefs.ErrResourceExhausted.
func (db *DB) CreateRuntime(ctx context.Context, rt registry.Runtime, v registry.Version, maxRuntimes int) error {
	if err := db.createRuntime(ctx, rt, v, maxRuntimes); err != nil {
		return fmt.Errorf("create runtime %s: %w", rt.ID, err)
	}
	return nil
}

func (db *DB) createRuntime(ctx context.Context, rt registry.Runtime, v registry.Version, maxRuntimes int) error {
	if rt.ID == "" || rt.Name == "" {
		return fmt.Errorf("runtime needs an ID and a name: %w", errdefs.ErrInvalidArgument)
	}
	if v.Version == 0 {
		v.Version = 1
	}
	if v.Version != 1 {
		return fmt.Errorf("first version is %d, want 1: %w", v.Version, errdefs.ErrInvalidArgument)
	}
	tags, config, err := encodeRuntime(rt, v)
	if err != nil {
		return err
	}
	return db.write(ctx, func(tx *sql.Tx) error {
		var taken string
		err := tx.QueryRowContext(ctx, `SELECT id FROM runtimes WHERE id = ? OR name = ?`, rt.ID, rt.Name).Scan(&taken)
		switch {
		case err == nil:
			return fmt.Errorf("runtime %s already has that ID or name %q: %w", taken, rt.Name, errdefs.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("check name: %w", err)
		}
		if maxRuntimes > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM runtimes`).Scan(&n); err != nil {
				return fmt.Errorf("count runtimes: %w", err)
			}
			if n >= maxRuntimes {
				return fmt.Errorf("berth holds %d runtimes, the most it allows: %w", n, errdefs.ErrResourceExhausted)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO runtimes (`+runtimeCols+`) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)`,
			rt.ID, rt.Name, rt.ARN, rt.Description, rt.Status, string(tags), rt.Source,
			nanos(rt.CreatedAt), nanos(rt.UpdatedAt))
		if err != nil {
			return fmt.Errorf("insert runtime: %w", err)
		}
		if err := insertVersion(ctx, tx, rt.ID, v.Version, config, v); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO runtime_endpoints (`+endpointCols+`) VALUES (?, ?, ?, ?, '', ?, 1, 1, ?, ?)`,
			rt.ID, registry.DefaultEndpoint, registry.DefaultEndpoint, rt.ARN+"/runtime-endpoint/"+registry.DefaultEndpoint, rt.Status,
			nanos(rt.CreatedAt), nanos(rt.UpdatedAt))
		if err != nil {
			return fmt.Errorf("insert DEFAULT endpoint: %w", err)
		}
		return nil
	})
}

// encodeRuntime checks v belongs to rt and encodes the JSON columns.
func encodeRuntime(rt registry.Runtime, v registry.Version) (tags, config []byte, err error) {
	if v.RuntimeID != "" && v.RuntimeID != rt.ID {
		return nil, nil, fmt.Errorf("version belongs to runtime %s: %w", v.RuntimeID, errdefs.ErrInvalidArgument)
	}
	if tags, err = json.Marshal(rt.Tags); err != nil {
		return nil, nil, fmt.Errorf("encode tags: %w", err)
	}
	if config, err = json.Marshal(v.Settings); err != nil {
		return nil, nil, fmt.Errorf("encode config: %w", err)
	}
	return tags, config, nil
}

func insertVersion(ctx context.Context, tx *sql.Tx, runtimeID string, version int, config []byte, v registry.Version) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO runtime_versions (runtime_id, version, config, created_at) VALUES (?, ?, ?, ?)`,
		runtimeID, version, string(config), nanos(v.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert version %d: %w", version, err)
	}
	return nil
}

// UpdateRuntime appends v, which must be the runtime's next version (else
// errdefs.ErrConflict: someone else updated first), moves DEFAULT to it,
// and updates the runtime's LatestVersion, Description, Tags, UpdatedAt and,
// when rt.Status is set, Status. With keep > 0 it deletes the versions
// older than the newest keep that no endpoint points at.
func (db *DB) UpdateRuntime(ctx context.Context, rt registry.Runtime, v registry.Version, keep int) error {
	pruned, err := db.updateRuntime(ctx, rt, v, keep)
	if err != nil {
		return fmt.Errorf("update runtime %s: %w", rt.ID, err)
	}
	if pruned > 0 {
		db.reclaim(ctx)
	}
	return nil
}

func (db *DB) updateRuntime(ctx context.Context, rt registry.Runtime, v registry.Version, keep int) (pruned int64, err error) {
	tags, config, err := encodeRuntime(rt, v)
	if err != nil {
		return 0, err
	}
	return pruned, db.write(ctx, func(tx *sql.Tx) error {
		var latest int
		err := tx.QueryRowContext(ctx, `SELECT latest_version FROM runtimes WHERE id = ?`, rt.ID).Scan(&latest)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read runtime: %w", err)
		}
		if v.Version != latest+1 {
			return fmt.Errorf("version %d, but the next is %d: %w", v.Version, latest+1, errdefs.ErrConflict)
		}
		if err := insertVersion(ctx, tx, rt.ID, v.Version, config, v); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE runtimes SET latest_version = ?, description = ?, tags = ?,
			updated_at = ?, status = CASE WHEN ? = '' THEN status ELSE ? END WHERE id = ?`,
			v.Version, rt.Description, string(tags), nanos(rt.UpdatedAt), rt.Status, rt.Status, rt.ID)
		if err != nil {
			return fmt.Errorf("update runtime row: %w", err)
		}
		// Upsert, so a DEFAULT lost to a bug is recreated rather than left
		// missing.
		_, err = tx.ExecContext(ctx, `INSERT INTO runtime_endpoints (`+endpointCols+`)
			SELECT id, ?, ?, arn || '/runtime-endpoint/' || ?, '', status, ?, ?, updated_at, updated_at
			FROM runtimes WHERE id = ?
			ON CONFLICT (runtime_id, name) DO UPDATE SET
				live_version = excluded.live_version,
				target_version = excluded.target_version,
				updated_at = excluded.updated_at`,
			registry.DefaultEndpoint, registry.DefaultEndpoint, registry.DefaultEndpoint, v.Version, v.Version, rt.ID)
		if err != nil {
			return fmt.Errorf("move DEFAULT endpoint: %w", err)
		}
		if keep <= 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM runtime_versions WHERE runtime_id = ? AND version <= ?
			AND version NOT IN (SELECT live_version FROM runtime_endpoints WHERE runtime_id = ?
				UNION SELECT target_version FROM runtime_endpoints WHERE runtime_id = ?)`,
			rt.ID, v.Version-keep, rt.ID, rt.ID)
		if err != nil {
			return fmt.Errorf("prune old versions: %w", err)
		}
		pruned, err = res.RowsAffected()
		return err
	})
}

// DeleteRuntime removes the runtime with its versions and endpoints, and
// gives the file system their pages back. Session history stays.
func (db *DB) DeleteRuntime(ctx context.Context, id string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		// Foreign keys cascade to versions and endpoints.
		res, err := tx.ExecContext(ctx, `DELETE FROM runtimes WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errdefs.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete runtime %s: %w", id, err)
	}
	db.reclaim(ctx)
	return nil
}

// GetRuntime returns the runtime with the given ID.
func (db *DB) GetRuntime(ctx context.Context, id string) (registry.Runtime, error) {
	rt, err := getRuntime(ctx, db.r, `id = ?`, id)
	if err != nil {
		return registry.Runtime{}, fmt.Errorf("get runtime %s: %w", id, err)
	}
	return rt, nil
}

// GetRuntimeByName returns the runtime with the given name.
func (db *DB) GetRuntimeByName(ctx context.Context, name string) (registry.Runtime, error) {
	rt, err := getRuntime(ctx, db.r, `name = ?`, name)
	if err != nil {
		return registry.Runtime{}, fmt.Errorf("get runtime named %q: %w", name, err)
	}
	return rt, nil
}

func getRuntime(ctx context.Context, q queryer, where string, arg any) (registry.Runtime, error) {
	rt, err := scanRuntime(q.QueryRowContext(ctx, `SELECT `+runtimeCols+` FROM runtimes WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Runtime{}, errdefs.ErrNotFound
	}
	return rt, err
}

// ListRuntimes lists runtimes ordered by ID.
func (db *DB) ListRuntimes(ctx context.Context, p registry.Page) ([]registry.Runtime, string, error) {
	after, err := decodeToken("runtimes", p.NextToken)
	if err != nil {
		return nil, "", fmt.Errorf("list runtimes: %w", err)
	}
	n := pageSize(p.MaxResults)
	rows, err := db.r.QueryContext(ctx, `SELECT `+runtimeCols+` FROM runtimes WHERE id > ? ORDER BY id LIMIT ?`, after, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("list runtimes: %w", err)
	}
	rts, err := collect(rows, scanRuntime)
	if err != nil {
		return nil, "", fmt.Errorf("list runtimes: %w", err)
	}
	var next string
	if len(rts) > n {
		rts = rts[:n]
		next = encodeToken("runtimes", rts[n-1].ID)
	}
	return rts, next, nil
}

// GetVersion returns one version of a runtime.
func (db *DB) GetVersion(ctx context.Context, runtimeID string, version int) (registry.Version, error) {
	v, err := scanVersion(db.r.QueryRowContext(ctx,
		`SELECT runtime_id, version, config, created_at FROM runtime_versions WHERE runtime_id = ? AND version = ?`,
		runtimeID, version))
	if errors.Is(err, sql.ErrNoRows) {
		err = errdefs.ErrNotFound
	}
	if err != nil {
		return registry.Version{}, fmt.Errorf("get runtime %s version %d: %w", runtimeID, version, err)
	}
	return v, nil
}

// ListVersions lists a runtime's versions, oldest first. An unknown runtime
// fails with errdefs.ErrNotFound.
func (db *DB) ListVersions(ctx context.Context, runtimeID string, p registry.Page) ([]registry.Version, string, error) {
	var (
		vs   []registry.Version
		next string
	)
	err := db.read(ctx, func(tx *sql.Tx) error {
		tok, err := decodeToken("versions", p.NextToken)
		if err != nil {
			return err
		}
		after := 0
		if tok != "" {
			if after, err = strconv.Atoi(tok); err != nil {
				return fmt.Errorf("page token: %w", errdefs.ErrInvalidArgument)
			}
		}
		if err := runtimeExists(ctx, tx, runtimeID); err != nil {
			return err
		}
		n := pageSize(p.MaxResults)
		rows, err := tx.QueryContext(ctx, `SELECT runtime_id, version, config, created_at FROM runtime_versions
			WHERE runtime_id = ? AND version > ? ORDER BY version LIMIT ?`, runtimeID, after, n+1)
		if err != nil {
			return err
		}
		if vs, err = collect(rows, scanVersion); err != nil {
			return err
		}
		if len(vs) > n {
			vs = vs[:n]
			next = encodeToken("versions", strconv.Itoa(vs[n-1].Version))
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list versions of runtime %s: %w", runtimeID, err)
	}
	return vs, next, nil
}

func runtimeExists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM runtimes WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("runtime %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read runtime: %w", err)
	}
	return nil
}

// PutEndpoint creates or replaces an endpoint. The runtime must exist, and
// so must the live and target versions when they are set; otherwise it
// fails with errdefs.ErrNotFound.
func (db *DB) PutEndpoint(ctx context.Context, e registry.Endpoint) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		if e.Name == "" {
			return fmt.Errorf("endpoint needs a name: %w", errdefs.ErrInvalidArgument)
		}
		if err := runtimeExists(ctx, tx, e.RuntimeID); err != nil {
			return err
		}
		for _, v := range []int{e.LiveVersion, e.TargetVersion} {
			if v == 0 {
				continue
			}
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM runtime_versions WHERE runtime_id = ? AND version = ?`,
				e.RuntimeID, v).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("version %d: %w", v, errdefs.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("read version %d: %w", v, err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO runtime_endpoints (`+endpointCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.RuntimeID, e.Name, e.ID, e.ARN, e.Description, e.Status, e.LiveVersion, e.TargetVersion,
			nanos(e.CreatedAt), nanos(e.UpdatedAt))
		if err != nil {
			return fmt.Errorf("write endpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put endpoint %s of runtime %s: %w", e.Name, e.RuntimeID, err)
	}
	return nil
}

// GetEndpoint returns one endpoint of a runtime.
func (db *DB) GetEndpoint(ctx context.Context, runtimeID, name string) (registry.Endpoint, error) {
	e, err := scanEndpoint(db.r.QueryRowContext(ctx,
		`SELECT `+endpointCols+` FROM runtime_endpoints WHERE runtime_id = ? AND name = ?`, runtimeID, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = errdefs.ErrNotFound
	}
	if err != nil {
		return registry.Endpoint{}, fmt.Errorf("get endpoint %s of runtime %s: %w", name, runtimeID, err)
	}
	return e, nil
}

// DeleteEndpoint removes a named endpoint. DEFAULT cannot be deleted
// (errdefs.ErrInvalidArgument); it goes with its runtime.
func (db *DB) DeleteEndpoint(ctx context.Context, runtimeID, name string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		if name == registry.DefaultEndpoint {
			return fmt.Errorf("DEFAULT goes only with its runtime: %w", errdefs.ErrInvalidArgument)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM runtime_endpoints WHERE runtime_id = ? AND name = ?`, runtimeID, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errdefs.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete endpoint %s of runtime %s: %w", name, runtimeID, err)
	}
	return nil
}

// ListEndpoints lists a runtime's endpoints ordered by name. An unknown
// runtime fails with errdefs.ErrNotFound.
func (db *DB) ListEndpoints(ctx context.Context, runtimeID string, p registry.Page) ([]registry.Endpoint, string, error) {
	var (
		es   []registry.Endpoint
		next string
	)
	err := db.read(ctx, func(tx *sql.Tx) error {
		after, err := decodeToken("endpoints", p.NextToken)
		if err != nil {
			return err
		}
		if err := runtimeExists(ctx, tx, runtimeID); err != nil {
			return err
		}
		n := pageSize(p.MaxResults)
		rows, err := tx.QueryContext(ctx, `SELECT `+endpointCols+` FROM runtime_endpoints
			WHERE runtime_id = ? AND name > ? ORDER BY name LIMIT ?`, runtimeID, after, n+1)
		if err != nil {
			return err
		}
		if es, err = collect(rows, scanEndpoint); err != nil {
			return err
		}
		if len(es) > n {
			es = es[:n]
			next = encodeToken("endpoints", es[n-1].Name)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list endpoints of runtime %s: %w", runtimeID, err)
	}
	return es, next, nil
}

// collect scans every row and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		t, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
