// Package registry knows berth's runtimes, their immutable versions and their
// endpoints, and resolves a (runtime, qualifier) pair to the version a new
// session should run. Runtimes are read from the store on use, behind a short
// cache, never held as boot-time config.
package registry

import (
	"context"
	"time"
)

// Runtime is a named agent definition. Its settings live in versions.
type Runtime struct {
	ID            string // {name}-{10 alnum}
	Name          string
	ARN           string
	Description   string
	Status        string
	LatestVersion int
	Tags          map[string]string
	// Source says who declared the runtime and so who may change it.
	Source    Source
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Version is one immutable configuration of a runtime.
type Version struct {
	RuntimeID string
	Version   int
	Settings  Settings
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
	// With maxRuntimes > 0 it fails with errdefs.ErrResourceExhausted when
	// that many runtimes exist already.
	CreateRuntime(ctx context.Context, rt Runtime, v Version, maxRuntimes int) error
	// UpdateRuntime appends a version, moves DEFAULT to it and updates the
	// runtime row (LatestVersion, Description, Tags, UpdatedAt). With
	// keep > 0 it then deletes every version but the newest keep and those
	// an endpoint points at.
	UpdateRuntime(ctx context.Context, rt Runtime, v Version, keep int) error
	// DeleteRuntime removes the runtime with its versions and endpoints,
	// and gives their space back.
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
