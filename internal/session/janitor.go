package session

import (
	"time"
)

// janitorEvery is how often the janitor looks for what has outlived its
// retention.
const janitorEvery = time.Hour

// janitor expires what sessions leave behind: logs past LogRetention,
// session storage unused for StorageRetention, and durable state unsaved
// for StateRetention. It runs until Shutdown.
func (m *Manager) janitor() {
	t := time.NewTicker(janitorEvery)
	defer t.Stop()
	for {
		m.expire(time.Now())
		select {
		case <-m.shutdownCtx.Done():
			return
		case <-t.C:
		}
	}
}

// expire runs one janitor pass as of now.
func (m *Manager) expire(now time.Time) {
	if err := m.pruneLogs(m.opts.LogRetention); err != nil {
		m.log.Warn("prune session logs", "err", err)
	}
	if r := m.opts.StorageRetention; r > 0 && m.opts.Storage != nil {
		if err := m.opts.Storage.Expire(now.Add(-r)); err != nil {
			m.log.Warn("expire session storage", "err", err)
		}
	}
	if r := m.opts.StateRetention; r > 0 && m.state != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		if n, err := m.state.DeleteStates(ctx, "", now.Add(-r)); err != nil {
			m.log.Warn("expire durable session states", "err", err)
		} else if n > 0 {
			m.log.Info("expired durable session states", "count", n)
		}
	}
}
