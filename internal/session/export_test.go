package session

import "github.com/berth-dev/berth/internal/registry"

// Test-only entry points.

// SetPool keeps size warm sandboxes of a runtime version ready, as a
// registry change would.
func (m *Manager) SetPool(runtimeID string, version int, cfg registry.Settings) {
	m.setPool(runtimeID, version, cfg)
}

// PoolSize reports how many warm sandboxes a runtime has ready.
func (m *Manager) PoolSize(runtimeID string) int { return m.PoolSizes()[runtimeID] }
