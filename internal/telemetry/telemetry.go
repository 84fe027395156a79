// Package telemetry keeps berth's Prometheus metrics. They carry the meaning
// and dimensions of AgentCore Runtime's CloudWatch metrics (invocations,
// throttles, user and system errors, latency, sessions, vCPU and memory use)
// under berth_ names; docs/observability.md maps one to the other.
package telemetry

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/session"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Target is where a call or session ran: AgentCore's Resource and Name
// (AgentName::EndpointName) dimensions. The zero Target is a call whose
// runtime did not resolve.
type Target struct {
	RuntimeID string
	Runtime   string // the runtime's name
	Endpoint  string
}

// Outcome is how a call ended, in AgentCore's error classes.
type Outcome uint8

const (
	OK          Outcome = iota
	UserError           // the caller's fault (4xx other than 429)
	SystemError         // berth's fault (5xx)
	Throttle            // refused for load or quota (429)
)

// Sessions is what the metrics read from the session manager at scrape.
type Sessions interface {
	Live() []session.Info
	PoolSizes() map[string]int
}

// Options configure Metrics.
type Options struct {
	// Sessions, if set, is read at every scrape and usage sample for the
	// live-session gauges and the usage counters.
	Sessions Sessions
	// RuntimeName finds a runtime's name by ID. Names are cached: a
	// runtime's ID is derived from its name, so neither changes.
	RuntimeName func(ctx context.Context, runtimeID string) (string, error)
}

// Metrics is berth's metric set. It is safe for concurrent use.
type Metrics struct {
	opts Options
	reg  *prometheus.Registry

	invocations *prometheus.CounterVec
	throttles   *prometheus.CounterVec
	userErrors  *prometheus.CounterVec
	sysErrors   *prometheus.CounterVec
	latency     *prometheus.HistogramVec

	started  *prometheus.CounterVec
	startup  *prometheus.HistogramVec
	ended    *prometheus.CounterVec
	lifetime *prometheus.HistogramVec

	live *liveCollector // nil without Options.Sessions

	// series caches each (target, kind)'s children of invocations and
	// latency, sparing the hot path two label lookups: callKey → *series.
	series sync.Map

	hist history // the console's last hour

	// namesMu guards names.
	namesMu sync.Mutex
	names   map[string]string // runtime ID → name
}

var _ session.Observer = (*Metrics)(nil)

// Label names, shared by every family that has them.
var (
	targetLabels = []string{"runtime_id", "runtime", "endpoint"}
	callLabels   = append(targetLabels[:len(targetLabels):len(targetLabels)], "kind")
	errorLabels  = append(callLabels[:len(callLabels):len(callLabels)], "error_type")
)

// latencyBuckets suit latencies from 100 µs to 60 s, in seconds.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// New registers berth's metrics, plus the Go runtime's and the process's.
func New(opts Options) *Metrics {
	with := func(extra ...string) []string {
		return append(targetLabels[:len(targetLabels):len(targetLabels)], extra...)
	}
	m := &Metrics{
		opts:  opts,
		reg:   prometheus.NewRegistry(),
		names: map[string]string{},
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_invocations_total",
			Help: "Data-plane calls (InvokeAgentRuntime and WebSocket), whatever their outcome.",
		}, callLabels),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_invocation_throttles_total",
			Help: "Calls refused with ThrottlingException (429): a full or timed-out session queue, or a draining node.",
		}, callLabels),
		userErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_invocation_user_errors_total",
			Help: "Calls that failed with a 4xx other than 429, by AgentCore error type.",
		}, errorLabels),
		sysErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_invocation_system_errors_total",
			Help: "Calls that failed with a 5xx, by AgentCore error type.",
		}, errorLabels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_invocation_latency_seconds",
			Help:    "Time from request to the end of the response (streams and WebSocket lifetimes included).",
			Buckets: latencyBuckets,
		}, callLabels),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_sessions_started_total",
			Help: "New sessions, by sandbox backend and whether a warm pool served them.",
		}, with("backend", "warm")),
		startup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_session_start_seconds",
			Help:    "Time from a new session ID to its sandbox's first healthy ping.",
			Buckets: latencyBuckets,
		}, with("warm")),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_sessions_ended_total",
			Help: "Sessions ended, by end reason.",
		}, with("reason")),
		lifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_session_lifetime_seconds",
			Help:    "How long sessions lived.",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800},
		}, targetLabels),
	}
	m.reg.MustRegister(m.invocations, m.throttles, m.userErrors, m.sysErrors, m.latency,
		m.started, m.startup, m.ended, m.lifetime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Sessions != nil {
		m.live = newLiveCollector(m)
		m.reg.MustRegister(m.live)
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type callKey struct {
	Target
	kind string
}

type series struct {
	invocations prometheus.Counter
	latency     prometheus.Observer
}

// Call records one data-plane call of kind ("invoke", "websocket" or "command").
// errorType is the AgentCore error type the call failed with, if any.
func (m *Metrics) Call(kind string, t Target, o Outcome, errorType string, took time.Duration) {
	k := callKey{t, kind}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &series{
			invocations: m.invocations.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, kind),
			latency:     m.latency.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, kind),
		})
	}
	s := v.(*series)
	s.invocations.Inc()
	s.latency.Observe(took.Seconds())
	switch o {
	case Throttle:
		m.throttles.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, kind).Inc()
	case UserError:
		m.userErrors.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, kind, errorType).Inc()
	case SystemError:
		m.sysErrors.WithLabelValues(t.RuntimeID, t.Runtime, t.Endpoint, kind, errorType).Inc()
	}
}

// target labels a session's key; the runtime's name is looked up once.
func (m *Metrics) target(k session.Key) Target {
	t := Target{RuntimeID: k.RuntimeID, Endpoint: k.Endpoint}
	m.namesMu.Lock()
	name, ok := m.names[k.RuntimeID]
	m.namesMu.Unlock()
	if !ok && m.opts.RuntimeName != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if n, err := m.opts.RuntimeName(ctx, k.RuntimeID); err == nil {
			name = n
			m.namesMu.Lock()
			m.names[k.RuntimeID] = n
			m.namesMu.Unlock()
		}
	}
	t.Runtime = name
	return t
}
