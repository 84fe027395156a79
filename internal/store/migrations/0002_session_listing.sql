-- 0002: indexes for session listing and crash recovery, and a table for
-- durable session state (written by the durable-sessions feature).

-- ListSessions walks (created_at, id) newest first, optionally per runtime.
CREATE INDEX sessions_created ON sessions (created_at DESC, id DESC);
CREATE INDEX sessions_runtime_created ON sessions (runtime_id, created_at DESC, id DESC);

-- EndAllLive finds an owner's live rows at start-up.
CREATE INDEX sessions_owner_live ON sessions (owner) WHERE ended_at IS NULL;

-- State an agent asked berth to keep for a session across incarnations.
CREATE TABLE session_state (
	runtime_id TEXT    NOT NULL,
	endpoint   TEXT    NOT NULL,
	session_id TEXT    NOT NULL,
	data       BLOB    NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (runtime_id, endpoint, session_id)
) STRICT, WITHOUT ROWID;
