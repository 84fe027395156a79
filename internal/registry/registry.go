// Package registry knows berth's runtimes, their immutable versions and their
// endpoints, and resolves a (runtime, qualifier) pair to the version a new
// session should run. Runtimes are read from the store on use, behind a short
// cache, never held as boot-time config.
package registry

import (
	"context"
	"time"
)

// Status values shared by runtimes and endpoints (AgentCore's enum).
const (
	StatusCreating     = "CREATING"
	StatusCreateFailed = "CREATE_FAILED"
	StatusUpdating     = "UPDATING"
	StatusUpdateFailed = "UPDATE_FAILED"
	StatusReady        = "READY"
	StatusDeleting     = "DELETING"
)

// Runtime is a named agent definition. Its configuration lives in versions.
type Runtime struct {
	ID            string // {name}-{10 alnum}
	Name          string
	ARN           string
	Description   string
	Status        string
	LatestVersion int
	Tags          map[string]string
	// Source is "config" for runtimes declared in the config file, "api"
	// for those created through the control plane.
	Source    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Config is everything one immutable version says about how to run the agent.
type Config struct {
	Command []string          `json:"command"`
	Workdir string            `json:"workdir,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Sandbox string            `json:"sandbox,omitempty"`

	IdleTimeout time.Duration `json:"idle_timeout"`
	MaxLifetime time.Duration `json:"max_lifetime"`

	HeaderAllowlist []string `json:"header_allowlist,omitempty"`

	// Protocol is HTTP, MCP, A2A or AGUI.
	Protocol string `json:"protocol,omitempty"`

	Network     string   `json:"network,omitempty"`
	MemoryBytes int64    `json:"memory_bytes,omitempty"`
	CPUMillis   int64    `json:"cpu_millis,omitempty"`
	Pids        int64    `json:"pids,omitempty"`
	DiskBytes   int64    `json:"disk_bytes,omitempty"`
	Mounts      []Mount  `json:"mounts,omitempty"`
	Artifact    Artifact `json:"artifact,omitempty"`

	Sessions SessionPolicy `json:"sessions,omitzero"`
}

// Concurrency policies for calls into one session.
const (
	ConcurrencyAllow  = "allow"
	ConcurrencyReject = "reject"
	ConcurrencyQueue  = "queue"
)

// DurabilityState keeps an agent's saved session state across sandboxes.
const DurabilityState = "state"

// SessionPolicy holds berth's opt-in session features beyond AgentCore.
// The zero value is plain AgentCore behaviour.
type SessionPolicy struct {
	// Concurrency is allow (default), reject or queue.
	Concurrency  string        `json:"concurrency,omitempty"`
	QueueSize    int           `json:"queue_size,omitempty"`
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
	// BindUser binds a session to the first runtime user ID that touches it.
	BindUser bool `json:"bind_user,omitempty"`
	// MaxSessionsPerUser caps a user's live sessions of the runtime (0: no cap).
	MaxSessionsPerUser int `json:"max_sessions_per_user,omitempty"`
	// Durability "state" keeps the agent's saved state across sandboxes.
	Durability    string `json:"durability,omitempty"`
	StateMaxBytes int64  `json:"state_max_bytes,omitempty"`
	// SuspendAfter ends an idle durable sandbox early; the session resumes
	// on its next call.
	SuspendAfter time.Duration `json:"suspend_after,omitempty"`
	// WarmPool keeps that many started, healthy sandboxes unclaimed.
	WarmPool int `json:"warm_pool,omitempty"`
}

// Durable reports whether sessions keep saved state across sandboxes.
func (p SessionPolicy) Durable() bool { return p.Durability == DurabilityState }

// Defaults for the session policy's bounds.
const (
	DefaultQueueSize     = 16
	DefaultQueueTimeout  = 30 * time.Second
	DefaultStateMaxBytes = 10 << 20
)

// Mount is a bind mount declared by a runtime.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Artifact records the control-plane artifact a version came from, so
// GetAgentRuntime can echo it.
type Artifact struct {
	ContainerURI string   `json:"container_uri,omitempty"`
	CodeLocation string   `json:"code_location,omitempty"`
	EntryPoint   []string `json:"entry_point,omitempty"`
	Runtime      string   `json:"runtime,omitempty"`
	// RoleARN is the execution role the request named; berth only echoes it.
	RoleARN string `json:"role_arn,omitempty"`
}

// Version is one immutable configuration of a runtime.
type Version struct {
	RuntimeID string
	Version   int
	Config    Config
	CreatedAt time.Time
}

// Endpoint is a qualifier: DEFAULT follows the latest version, named ones pin.
type Endpoint struct {
	RuntimeID     string
	Name          string
	ID            string
	ARN           string
	Description   string
	Status        string
	LiveVersion   int
	TargetVersion int
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Page asks for one page of a listing.
type Page struct {
	MaxResults int
	NextToken  string
}

// Store persists runtimes, versions and endpoints. Every method is one
// transaction. Implementations return errdefs.ErrNotFound and errdefs.ErrConflict wrapped.
type Store interface {
	// CreateRuntime writes the runtime, version 1 and the DEFAULT endpoint.
	CreateRuntime(ctx context.Context, rt Runtime, v Version) error
	// UpdateRuntime appends a version, moves DEFAULT to it and updates the
	// runtime row (LatestVersion, Description, Tags, UpdatedAt).
	UpdateRuntime(ctx context.Context, rt Runtime, v Version) error
	DeleteRuntime(ctx context.Context, id string) error
	GetRuntime(ctx context.Context, id string) (Runtime, error)
	// GetRuntimeByName finds a runtime by its name.
	GetRuntimeByName(ctx context.Context, name string) (Runtime, error)
	ListRuntimes(ctx context.Context, p Page) ([]Runtime, string, error)
	GetVersion(ctx context.Context, runtimeID string, version int) (Version, error)
	ListVersions(ctx context.Context, runtimeID string, p Page) ([]Version, string, error)

	PutEndpoint(ctx context.Context, e Endpoint) error
	GetEndpoint(ctx context.Context, runtimeID, name string) (Endpoint, error)
	DeleteEndpoint(ctx context.Context, runtimeID, name string) error
	ListEndpoints(ctx context.Context, runtimeID string, p Page) ([]Endpoint, string, error)
}
