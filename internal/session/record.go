package session

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// State is where a session is in its lifecycle.
type State string

const (
	StateStarting   State = "starting"
	StateActive     State = "active"
	StateIdle       State = "idle"
	StateTerminated State = "terminated"
	// StateLive matches every state but terminated, in filters only.
	StateLive State = "live"
)

// EndReason says why a session terminated.
type EndReason string

const (
	EndIdleTimeout EndReason = "idle_timeout"
	EndMaxLifetime EndReason = "max_lifetime"
	EndStopped     EndReason = "stopped"
	EndCrashed     EndReason = "crashed"
	EndUnhealthy   EndReason = "unhealthy"
	EndShutdown    EndReason = "shutdown"
	EndDeleted     EndReason = "deleted"
	EndStartFailed EndReason = "start_failed"
	EndSuspended   EndReason = "suspended"
)

// Key identifies a session within a runtime endpoint.
type Key struct {
	RuntimeID string
	Endpoint  string
	SessionID string
}

// Lease fences store writes: a write carrying a stale epoch fails with
// ErrFenced. On one node Owner is always this node, but the epoch still
// moves, so the multi-node code path is the same.
type Lease struct {
	Owner string
	Epoch int64
}

// ErrFenced means the session's row has moved on past the writer's lease.
var ErrFenced = fmt.Errorf("session lease fenced: %w", errdefs.ErrConflict)

// Record is one incarnation of a session: a session ID reused after the
// session ended gets a new record with a new ID and a higher epoch.
type Record struct {
	ID string // incarnation ID
	Key
	Lease
	Version int
	UserID  string
	State   State
	// EndReason and Detail are set once the session terminated.
	EndReason EndReason
	Detail    string

	Backend   string
	SandboxID string
	// Addr is where the sandbox answers (placement is data).
	Addr string

	CreatedAt    time.Time
	LastActiveAt time.Time
	// ExpiresAt is the max-lifetime deadline.
	ExpiresAt   time.Time
	EndedAt     time.Time
	Invocations int64
}

// Filter narrows a session listing. Zero fields match everything.
type Filter struct {
	RuntimeID string
	Endpoint  string
	// SessionID is the runtime session ID: every incarnation of it.
	SessionID     string
	UserID        string
	State         State
	CreatedAfter  time.Time
	CreatedBefore time.Time
	Limit         int
	// After is the opaque cursor returned by the previous page.
	After string
}

// Store is what the session manager needs from persistence.
type Store interface {
	// ClaimSession inserts rec as the live incarnation of rec.Key, with an
	// epoch one past the key's highest. It fails with ErrLive if a live
	// incarnation exists. The returned record carries the
	// lease.
	ClaimSession(ctx context.Context, rec Record) (Record, error)
	// UpdateSession applies fn to the live record under the lease, in one
	// transaction.
	UpdateSession(ctx context.Context, id string, l Lease, fn func(*Record)) error
	// EndSession marks the incarnation terminated.
	EndSession(ctx context.Context, id string, l Lease, reason EndReason, detail string, at time.Time) error
	// EndAllLive ends every live incarnation owned by owner; used at start
	// to recover from a crash or a clean stop. It returns the ended records.
	EndAllLive(ctx context.Context, owner string, reason EndReason, at time.Time) ([]Record, error)
	GetSession(ctx context.Context, id string) (Record, error)
	// ListSessions lists incarnations, newest first, stable under
	// concurrent inserts. It returns the cursor for the next page.
	ListSessions(ctx context.Context, f Filter) ([]Record, string, error)
}

// ErrLive: the key already has a live incarnation.
var ErrLive = fmt.Errorf("session already live: %w", errdefs.ErrConflict)

// StateStore keeps durable sessions' saved state. Writes are whole: a
// reader sees the previous state or the new one.
type StateStore interface {
	LoadState(ctx context.Context, k Key) (data []byte, user string, err error)
	SaveState(ctx context.Context, k Key, user string, data []byte, at time.Time) error
	DeleteState(ctx context.Context, k Key) error
	// DeleteStates deletes the states of a runtime ("" for all) last saved
	// before a time (zero for all), and says how many went.
	DeleteStates(ctx context.Context, runtimeID string, before time.Time) (int64, error)
}
