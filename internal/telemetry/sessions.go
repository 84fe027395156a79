package telemetry

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/session"
	"github.com/prometheus/client_golang/prometheus"
)

// gib is the GB of AgentCore's GB-hours, as AWS bills memory: 1024³ bytes.
const gib = 1 << 30

// SessionStarted implements session.Observer.
func (m *Metrics) SessionStarted(k session.Key, backend string, warm bool, took time.Duration) {
	t := m.target(k)
	w := strconv.FormatBool(warm)
	m.started.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, backend, w).Inc()
	m.startup.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, w).Observe(took.Seconds())
}

// SessionEnded implements session.Observer.
func (m *Metrics) SessionEnded(k session.Key, reason session.EndReason, lifetime time.Duration) {
	t := m.target(k)
	m.ended.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, string(reason)).Inc()
	m.lifetime.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint).Observe(lifetime.Seconds())
}

// SampleUsage adds the live sessions' CPU and memory use to the usage
// counters every interval until ctx ends. Scrapes sample too; the ticker
// keeps memory's time integral fine-grained and catches short sessions.
func (m *Metrics) SampleUsage(ctx context.Context, every time.Duration) {
	if m.live == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.live.sample()
		}
	}
}

// liveCollector reports what is live at scrape time (sessions by state,
// queued calls, warm sandboxes) and the usage counters it accumulates.
type liveCollector struct {
	m                         *Metrics
	active, queued, poolReady *prometheus.Desc
	cpu, memory               *prometheus.CounterVec

	// mu serialises samples and guards last. Lock order: mu, then the
	// session manager's locks (through Sessions.Live).
	mu   sync.Mutex
	last map[string]usage // session record ID → its previous sample
}

type usage struct {
	cpu time.Duration
	at  time.Time
}

func newLiveCollector(m *Metrics) *liveCollector {
	return &liveCollector{
		m: m,
		active: prometheus.NewDesc("berth_active_sessions",
			"Live sessions on this node (starting, active or idle; AgentCore counts all three as active).",
			append(targetLabels[:len(targetLabels):len(targetLabels)], "state"), nil),
		queued: prometheus.NewDesc("berth_session_queue_depth",
			"Calls waiting for their turn in sessions whose runtime sets concurrency: queue.",
			targetLabels, nil),
		poolReady: prometheus.NewDesc("berth_warm_pool_ready",
			"Warm sandboxes ready to claim, by runtime.",
			targetLabels[:2], nil),
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_session_cpu_seconds_total",
			Help: "CPU time sessions' sandboxes used (vCPU-seconds), from their cgroups.",
		}, targetLabels),
		memory: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_session_memory_gb_seconds_total",
			Help: "Memory sessions' sandboxes held over time (GiB-seconds), from their cgroups.",
		}, targetLabels),
		last: map[string]usage{},
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.queued
	ch <- c.poolReady
	c.cpu.Describe(ch)
	c.memory.Describe(ch)
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	type stateKey struct {
		Target
		state session.State
	}
	active := map[stateKey]int{}
	queued := map[Target]int{}
	for _, in := range c.sample() {
		if in.State == session.StateTerminated {
			continue
		}
		t := c.m.target(in.Key)
		active[stateKey{t, in.State}]++
		if in.Queued > 0 {
			queued[t] += in.Queued
		}
	}
	for k, n := range active {
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(n), k.RuntimeID, k.Runtime, k.Endpoint, string(k.state))
	}
	for t, n := range queued {
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(n), t.RuntimeID, t.Runtime, t.Endpoint)
	}
	for id, n := range c.m.opts.Sessions.PoolSizes() {
		t := c.m.target(session.Key{RuntimeID: id})
		ch <- prometheus.MustNewConstMetric(c.poolReady, prometheus.GaugeValue, float64(n), t.RuntimeID, t.Runtime)
	}
	c.cpu.Collect(ch)
	c.memory.Collect(ch)
}

// sample reads the live sessions and adds the CPU each used since its
// previous sample, and its memory times the time since then. A session's
// first sample counts from its creation. What a session uses after its last
// sample before it ends is not counted.
func (c *liveCollector) sample() []session.Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	infos := c.m.opts.Sessions.Live()
	now := time.Now()
	seen := make(map[string]bool, len(infos))
	for _, in := range infos {
		if in.Stats == nil || in.ID == "" {
			continue
		}
		seen[in.ID] = true
		prev, ok := c.last[in.ID]
		if !ok {
			prev.at = in.CreatedAt
		}
		t := c.m.target(in.Key)
		// The process backend sums live processes only, so its CPU total
		// can fall when a child exits; count only growth.
		if d := in.Stats.CPUUsage - prev.cpu; d > 0 {
			c.cpu.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint).Add(d.Seconds())
		}
		if dt := now.Sub(prev.at); dt > 0 && in.Stats.MemoryBytes > 0 {
			c.memory.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint).Add(float64(in.Stats.MemoryBytes) / gib * dt.Seconds())
		}
		c.last[in.ID] = usage{cpu: in.Stats.CPUUsage, at: now}
	}
	for id := range c.last {
		if !seen[id] {
			delete(c.last, id)
		}
	}
	return infos
}
