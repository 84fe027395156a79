package session

import (
	"context"
	"strings"
	"sync"
	"time"

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

// member is one warm sandbox.
type member struct {
	host    string
	logPath string
	state   *stateServer
	// mu guards handle, which the pinging transport reads while the
	// filler sets it.
	mu     sync.Mutex
	handle sandbox.Handle
}

func (mb *member) getHandle() sandbox.Handle {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.handle
}

// SetPool keeps size warm sandboxes of runtime version ready; size 0
// removes the pool. A new version recycles the old pool's sandboxes.
func (m *Manager) SetPool(runtimeID string, version int, cfg registry.Settings) {
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
			ctx, cancel := context.WithCancel(context.Background())
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

// RetainPools drops the pools of runtimes not in keep.
func (m *Manager) RetainPools(keep map[string]bool) {
	m.mu.Lock()
	var drop []*pool
	for id, p := range m.pools {
		if !keep[id] {
			drop = append(drop, p)
			delete(m.pools, id)
		}
	}
	m.mu.Unlock()
	for _, p := range drop {
		p.close()
	}
}

// PoolSize reports how many warm sandboxes a runtime has ready.
func (m *Manager) PoolSize(runtimeID string) int {
	m.mu.Lock()
	p := m.pools[runtimeID]
	m.mu.Unlock()
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready)
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
		m.forgetHost(mb.host)
		select {
		case <-mb.getHandle().Done():
			go p.discard(mb) // died while waiting
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
			case <-mb.getHandle().Done():
				dead = append(dead, mb)
			default:
				alive = append(alive, mb)
			}
		}
		p.ready = alive
		short := len(p.ready) < p.size
		p.mu.Unlock()
		for _, mb := range dead {
			p.m.forgetHost(mb.host)
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
	mb := &member{host: id + ".pool", logPath: m.LogPath(p.runtimeID, "pool-"+id)}
	if p.cfg.Sessions.Durable() {
		ss, err := m.startStateServer("pool-"+id[:12], int64(p.cfg.Sessions.StateMaxBytes))
		if err != nil {
			return err
		}
		mb.state = ss
	}
	m.mu.Lock()
	m.byHost[mb.host] = mb
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.ctx, m.opts.StartTimeout)
	defer cancel()
	_, err := m.launch(ctx, launchSpec{
		runtimeID: p.runtimeID,
		name:      sandbox.Name(p.runtimeID+"/pool", id),
		cfg:       p.cfg,
		backend:   p.backend,
		logPath:   mb.logPath,
		host:      mb.host,
		state:     mb.state,
	}, func(h sandbox.Handle) {
		mb.mu.Lock()
		mb.handle = h
		mb.mu.Unlock()
	})
	if err != nil {
		m.forgetHost(mb.host)
		p.discard(mb)
		return err
	}
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		m.forgetHost(mb.host)
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
	if h := mb.getHandle(); h != nil {
		h.Stop(ctx, p.m.opts.StopGrace)
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
		p.m.forgetHost(mb.host)
		wg.Go(func() { p.discard(mb) })
	}
	wg.Wait()
}

func (m *Manager) forgetHost(host string) {
	m.mu.Lock()
	delete(m.byHost, host)
	m.mu.Unlock()
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
