-- 0003: the user a durable session is bound to, so binding outlives any one
-- incarnation; and an index for retention sweeps.
ALTER TABLE session_state ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
CREATE INDEX session_state_updated ON session_state (updated_at);
