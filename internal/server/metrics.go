package server

import (
	"net/http"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/metrics"
)

// callMetrics are the data plane's own metrics.
type callMetrics struct {
	calls    *metrics.Counter
	duration *metrics.Histogram
}

func newCallMetrics(r *metrics.Registry) *callMetrics {
	return &callMetrics{
		calls: r.NewCounter("berth_invocations_total",
			"InvokeAgentRuntime and WebSocket calls by runtime, kind and outcome (ok or the AgentCore error type).",
			"runtime", "kind", "outcome"),
		duration: r.NewHistogram("berth_invocation_duration_seconds",
			"Time from request to the end of the response (streams included), by runtime and kind.",
			metrics.DefaultBuckets, "runtime", "kind"),
	}
}

// outcomeWriter notes the status and error type a handler answered with.
// It unwraps, so http.ResponseController still reaches Flush and Hijack.
type outcomeWriter struct {
	http.ResponseWriter
	outcome string
	wrote   bool
	runtime string // set by admit once the runtime resolved
}

// noteRuntime labels the call's metrics with the runtime it resolved to.
func noteRuntime(w http.ResponseWriter, runtimeID string) {
	if ow, ok := w.(*outcomeWriter); ok {
		ow.runtime = runtimeID
	}
}

func (o *outcomeWriter) WriteHeader(code int) {
	if !o.wrote {
		o.wrote = true
		if t := o.Header().Get(api.HeaderErrorType); t != "" {
			o.outcome = t
		} else if code >= 400 {
			o.outcome = http.StatusText(code)
		}
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *outcomeWriter) Write(b []byte) (int, error) {
	o.wrote = true
	return o.ResponseWriter.Write(b)
}

func (o *outcomeWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// measured wraps a data-plane handler with call metrics. The runtime label
// is set only once the request's runtime resolved, so junk paths cannot
// grow the series without bound.
func (s *Server) measured(kind string, h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.metrics == nil {
			h(w, r)
			return
		}
		start := time.Now()
		ow := &outcomeWriter{ResponseWriter: w, outcome: "ok", runtime: "-"}
		h(ow, r)
		s.metrics.calls.Inc(ow.runtime, kind, ow.outcome)
		s.metrics.duration.ObserveDuration(time.Since(start), ow.runtime, kind)
	}
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metricsRegistry.WriteText(w)
}
