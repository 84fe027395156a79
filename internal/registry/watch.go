package registry

import (
	"context"
	"sync"
)

// A registry write is followed by a Change, handed to every watcher after
// the write committed and the cache was dropped. This is how the rest of
// berth follows runtimes: the session manager ends a deleted runtime's
// sessions and keeps warm pools on DEFAULT. (A cluster feeds the same
// changes from other nodes' writes.)

// ChangeKind says what a write did.
type ChangeKind int

// The kinds of change.
const (
	RuntimeCreated ChangeKind = iota + 1
	RuntimeUpdated
	RuntimeDeleted
	// EndpointChanged: a named endpoint was created or moved.
	EndpointChanged
	EndpointDeleted
)

// Change is one committed registry write.
type Change struct {
	Kind      ChangeKind
	RuntimeID string
	// Endpoint names the endpoint of an EndpointChanged.
	Endpoint string
}

// Watcher hears of every change, in order, on the writer's goroutine: a
// delete's caller waits until the watchers are done with it.
type Watcher interface {
	RegistryChanged(ctx context.Context, c Change)
}

// watchers is the registry's list; mu guards it.
type watchers struct {
	mu   sync.Mutex
	list []Watcher
}

// Watch adds w to the watchers of every later change.
func (r *Registry) Watch(w Watcher) {
	r.watchers.mu.Lock()
	r.watchers.list = append(r.watchers.list, w)
	r.watchers.mu.Unlock()
}

// changed drops the cache and tells every watcher.
func (r *Registry) changed(ctx context.Context, c Change) {
	r.Invalidate()
	r.watchers.mu.Lock()
	list := r.watchers.list
	r.watchers.mu.Unlock()
	for _, w := range list {
		w.RegistryChanged(ctx, c)
	}
}
