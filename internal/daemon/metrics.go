package daemon

import (
	"time"

	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/session"
)

// sessionMetrics turns session starts and ends into metrics.
type sessionMetrics struct {
	started *metrics.Counter
	startup *metrics.Histogram
	ended   *metrics.Counter
	life    *metrics.Histogram
}

var _ session.Observer = (*sessionMetrics)(nil)

func newMetrics(d *Daemon) (*metrics.Registry, *sessionMetrics) {
	r := &metrics.Registry{}
	sm := &sessionMetrics{
		started: r.NewCounter("berth_sessions_started_total", "Sessions started, by runtime, backend and whether a warm pool served them.", "runtime", "backend", "warm"),
		startup: r.NewHistogram("berth_session_start_seconds", "Time from a new session ID to its sandbox's first healthy ping.", metrics.DefaultBuckets, "runtime", "warm"),
		ended:   r.NewCounter("berth_sessions_ended_total", "Sessions ended, by runtime and end reason.", "runtime", "reason"),
		life:    r.NewHistogram("berth_session_lifetime_seconds", "How long sessions lived, by runtime.", []float64{1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800}, "runtime"),
	}
	r.NewGaugeFunc("berth_sessions_live", "Live sessions on this node, by runtime and state.", func(emit func(float64, ...string)) {
		type k struct{ rt, st string }
		n := map[k]int{}
		for _, in := range d.sessions.Live() {
			n[k{in.RuntimeID, string(in.State)}]++
		}
		for key, v := range n {
			emit(float64(v), key.rt, key.st)
		}
	}, "runtime", "state")
	r.NewGaugeFunc("berth_warm_pool_ready", "Warm sandboxes ready to claim, by runtime.", func(emit func(float64, ...string)) {
		for id, n := range d.sessions.PoolSizes() {
			emit(float64(n), id)
		}
	}, "runtime")
	return r, sm
}

func (m *sessionMetrics) SessionStarted(k session.Key, backend string, warm bool, took time.Duration) {
	w := "false"
	if warm {
		w = "true"
	}
	m.started.Inc(k.RuntimeID, backend, w)
	m.startup.ObserveDuration(took, k.RuntimeID, w)
}

func (m *sessionMetrics) SessionEnded(k session.Key, reason session.EndReason, lifetime time.Duration) {
	m.ended.Inc(k.RuntimeID, string(reason))
	m.life.ObserveDuration(lifetime, k.RuntimeID)
}
