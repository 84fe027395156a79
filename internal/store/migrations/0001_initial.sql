-- 0001: runtimes, their immutable versions and endpoints, and session
-- incarnations. Times are INTEGER unix nanoseconds in UTC; NULL is the zero
-- time. JSON columns hold encoding/json output.

CREATE TABLE runtimes (
	id             TEXT    NOT NULL PRIMARY KEY,
	name           TEXT    NOT NULL UNIQUE,
	arn            TEXT    NOT NULL,
	description    TEXT    NOT NULL,
	status         TEXT    NOT NULL,
	latest_version INTEGER NOT NULL CHECK (latest_version >= 1),
	tags           TEXT    NOT NULL,
	source         TEXT    NOT NULL,
	created_at     INTEGER,
	updated_at     INTEGER
) STRICT;

CREATE TABLE runtime_versions (
	runtime_id TEXT    NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
	version    INTEGER NOT NULL CHECK (version >= 1),
	config     TEXT    NOT NULL,
	created_at INTEGER,
	PRIMARY KEY (runtime_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE runtime_endpoints (
	runtime_id     TEXT    NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
	name           TEXT    NOT NULL,
	id             TEXT    NOT NULL,
	arn            TEXT    NOT NULL,
	description    TEXT    NOT NULL,
	status         TEXT    NOT NULL,
	live_version   INTEGER NOT NULL,
	target_version INTEGER NOT NULL,
	created_at     INTEGER,
	updated_at     INTEGER,
	PRIMARY KEY (runtime_id, name)
) STRICT, WITHOUT ROWID;

-- One row per incarnation. Session history outlives its runtime, so there is
-- no foreign key to runtimes.
CREATE TABLE sessions (
	id             TEXT    NOT NULL PRIMARY KEY,
	runtime_id     TEXT    NOT NULL,
	endpoint       TEXT    NOT NULL,
	session_id     TEXT    NOT NULL,
	owner          TEXT    NOT NULL,
	epoch          INTEGER NOT NULL CHECK (epoch >= 1),
	version        INTEGER NOT NULL,
	user_id        TEXT    NOT NULL,
	state          TEXT    NOT NULL,
	end_reason     TEXT    NOT NULL,
	detail         TEXT    NOT NULL,
	backend        TEXT    NOT NULL,
	sandbox_id     TEXT    NOT NULL,
	addr           TEXT    NOT NULL,
	created_at     INTEGER NOT NULL,
	last_active_at INTEGER,
	expires_at     INTEGER,
	ended_at       INTEGER,
	invocations    INTEGER NOT NULL,
	-- A row is live exactly while it has no end time.
	CHECK ((ended_at IS NULL) = (state <> 'terminated'))
) STRICT;

-- At most one live incarnation per key.
CREATE UNIQUE INDEX sessions_live_key ON sessions (runtime_id, endpoint, session_id)
	WHERE ended_at IS NULL;

-- Epochs never repeat within a key; also serves max(epoch) at claim time.
CREATE UNIQUE INDEX sessions_key_epoch ON sessions (runtime_id, endpoint, session_id, epoch);
