package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/google/uuid"
)

// A warm pool keeps started, healthy sandboxes of one runtime version that
// no session has claimed yet. A new session claims one, so its cold start
// is only the claim; the pool refills in the background. A sandbox leaves
// the pool exactly once, under pool.mu, so two sessions never share one.

// pool is one runtime version's warm sandboxes. Its filler goroutine is
// owned by the pool's wg, waited for in close.
type pool struct {
	m         *Manager
	runtimeID string
	version   int
	cfg       registry.Settings
	backend   sandbox.Backend
	size      int

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wake   chan struct{}
	wg     sync.WaitGroup

	// mu guards ready.
	mu    sync.Mutex
	ready []*member
}

// member is one warm sandbox. Its agent is set before it joins ready and
// never changes after.
type member struct {
	state *stateServer
	agent *agent
}

// syncPool makes a runtime's warm pool follow its DEFAULT version.
func (m *Manager) syncPool(ctx context.Context, runtimeID string) {
	if m.opts.Runtimes == nil {
		return
	}
	res, err := m.opts.Runtimes.Resolve(ctx, runtimeID, registry.DefaultEndpoint)
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			m.log.Warn("warm pool: resolve runtime", "runtime_id", runtimeID, "err", err)
		}
		m.dropPool(runtimeID)
		return
	}
	m.setPool(runtimeID, res.Version.Version, res.Version.Settings)
}

// SyncPools brings every listed runtime's warm pool in line; berth calls
// it once at start, then follows registry changes.
func (m *Manager) SyncPools(ctx context.Context, runtimeIDs []string) {
	for _, id := range runtimeIDs {
		m.syncPool(ctx, id)
	}
}

// setPool keeps size warm sandboxes of runtime version ready; size 0
// removes the pool. A new version recycles the old pool's sandboxes.
func (m *Manager) setPool(runtimeID string, version int, cfg registry.Settings) {
	size := cfg.Sessions.WarmPool
	m.mu.Lock()
	old := m.pools[runtimeID]
	if m.closed || (old != nil && old.version == version && old.size == size) {
		m.mu.Unlock()
		return
	}
	delete(m.pools, runtimeID)
	var p *pool
	if size > 0 {
		name := string(cfg.Sandbox)
		if name == "" || name == "auto" {
			name = m.opts.DefaultBackend
		}
		if b, ok := m.backends[name]; ok {
			ctx, cancel := context.WithCancel(m.shutdownCtx)
			p = &pool{m: m, runtimeID: runtimeID, version: version, cfg: cfg, backend: b, size: size,
				ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
			m.pools[runtimeID] = p
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.fill()
			}()
		}
	}
	m.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// dropPool stops a runtime's warm pool, if it has one.
func (m *Manager) dropPool(runtimeID string) {
	m.mu.Lock()
	p := m.pools[runtimeID]
	delete(m.pools, runtimeID)
	m.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// claimPooled hands out a healthy warm sandbox of the version, if any.
func (m *Manager) claimPooled(runtimeID string, version int) *member {
	m.mu.Lock()
	p := m.pools[runtimeID]
	m.mu.Unlock()
	if p == nil || p.version != version {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) > 0 {
		mb := p.ready[0]
		p.ready = p.ready[1:]
		select {
		case <-mb.agent.h.Done():
			m.wg.Go(func() { p.discard(mb) }) // died while waiting
			continue
		default:
		}
		p.poke()
		return mb
	}
	p.poke()
	return nil
}

func (p *pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill starts sandboxes until the pool is full, then waits to be poked,
// checking its members for deaths now and then.
func (p *pool) fill() {
	t := time.NewTicker(p.m.opts.PingInterval)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		p.mu.Lock()
		var dead []*member
		alive := p.ready[:0]
		for _, mb := range p.ready {
			select {
			case <-mb.agent.h.Done():
				dead = append(dead, mb)
			default:
				alive = append(alive, mb)
			}
		}
		p.ready = alive
		short := len(p.ready) < p.size
		p.mu.Unlock()
		for _, mb := range dead {
			p.discard(mb)
		}
		if short {
			if err := p.startOne(); err != nil {
				p.m.log.Warn("warm pool: start sandbox", "runtime_id", p.runtimeID, "err", err)
				backoff = min(max(backoff*2, 100*time.Millisecond), 10*time.Second)
			} else {
				backoff = 0
				continue
			}
		}
		wait := t.C
		var retry <-chan time.Time
		if backoff > 0 {
			retry = time.After(backoff)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-wait:
		case <-retry:
		}
	}
}

func (p *pool) startOne() error {
	m := p.m
	id := strings.ReplaceAll(uuid.NewString(), "-", "")
	mb := &member{}
	if p.cfg.Sessions.Durable() {
		ss, err := m.startStateServer("pool-"+id[:12], int64(p.cfg.Sessions.StateMaxBytes))
		if err != nil {
			return err
		}
		mb.state = ss
	}
	ctx, cancel := context.WithTimeout(p.ctx, m.opts.StartTimeout)
	defer cancel()
	a, err := m.launch(ctx, launchSpec{
		runtimeID: p.runtimeID,
		name:      sandbox.Name(p.runtimeID+"/pool", id),
		cfg:       p.cfg,
		backend:   p.backend,
		logPath:   m.LogPath(p.runtimeID, "pool-"+id),
		state:     mb.state,
	}, func(a *agent) { mb.agent = a })
	if err != nil {
		p.discard(mb)
		return err
	}
	mb.agent = a
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		p.discard(mb)
		return nil
	}
	p.ready = append(p.ready, mb)
	p.mu.Unlock()
	return nil
}

// discard stops an unclaimed sandbox.
func (p *pool) discard(mb *member) {
	ctx, cancel := context.WithTimeout(context.Background(), p.m.opts.StopGrace+30*time.Second)
	defer cancel()
	if mb.agent != nil {
		mb.agent.stop(ctx, p.m.opts.StopGrace)
	}
	if mb.state != nil {
		mb.state.close()
	}
}

// close stops the filler and every unclaimed sandbox.
func (p *pool) close() {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	members := p.ready
	p.ready = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, mb := range members {
		wg.Go(func() { p.discard(mb) })
	}
	wg.Wait()
}

// PoolSizes reports every warm pool's ready count, by runtime ID.
func (m *Manager) PoolSizes() map[string]int {
	m.mu.Lock()
	pools := make(map[string]*pool, len(m.pools))
	for id, p := range m.pools {
		pools[id] = p
	}
	m.mu.Unlock()
	out := make(map[string]int, len(pools))
	for id, p := range pools {
		p.mu.Lock()
		out[id] = len(p.ready)
		p.mu.Unlock()
	}
	return out
}
