package telemetry

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// historyLen is how many samples History keeps: an hour at the daemon's
// 10 s.
const historyLen = 360

// Point is one interval of berth's own metrics, for the console's charts:
// no Prometheus server needed.
type Point struct {
	At time.Time
	// Calls, Errors (user and system) and Throttles are per second over
	// the interval.
	Calls, Errors, Throttles float64
	// P50, P95 and P99 are the latency quantiles, in seconds, of the
	// interval's calls, estimated from the histogram's buckets as
	// Prometheus' histogram_quantile does; NaN without calls.
	P50, P95, P99 float64
	// Active is the live sessions at the end of the interval.
	Active int
}

// history is the ring of the last historyLen points and the totals the
// next point is the difference from. Guarded by mu.
type history struct {
	mu     sync.Mutex
	points []Point
	last   totals
}

// totals are the counters summed over every label.
type totals struct {
	at                       time.Time
	calls, errors, throttles float64
	buckets                  []uint64 // cumulative, per latencyBuckets
}

// RecordHistory samples the totals every interval until ctx ends.
func (m *Metrics) RecordHistory(ctx context.Context, every time.Duration) {
	m.hist.mu.Lock()
	m.hist.last = m.totals()
	m.hist.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sample()
		}
	}
}

// History is the last hour of samples, oldest first.
func (m *Metrics) History() []Point {
	m.hist.mu.Lock()
	defer m.hist.mu.Unlock()
	return append([]Point(nil), m.hist.points...)
}

func (m *Metrics) sample() {
	now := m.totals()
	active := 0
	if m.opts.Sessions != nil {
		active = len(m.opts.Sessions.Live())
	}
	m.hist.mu.Lock()
	defer m.hist.mu.Unlock()
	prev := m.hist.last
	m.hist.last = now
	secs := now.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return
	}
	delta := make([]uint64, len(now.buckets))
	for i := range delta {
		delta[i] = now.buckets[i] - prev.buckets[i]
	}
	p := Point{
		At:        now.at,
		Calls:     (now.calls - prev.calls) / secs,
		Errors:    (now.errors - prev.errors) / secs,
		Throttles: (now.throttles - prev.throttles) / secs,
		P50:       quantile(0.5, delta),
		P95:       quantile(0.95, delta),
		P99:       quantile(0.99, delta),
		Active:    active,
	}
	m.hist.points = append(m.hist.points, p)
	if len(m.hist.points) > historyLen {
		m.hist.points = m.hist.points[len(m.hist.points)-historyLen:]
	}
}

// totals sums the call counters and the latency histogram over all
// their series.
func (m *Metrics) totals() totals {
	t := totals{at: time.Now(), buckets: make([]uint64, len(latencyBuckets)+1)}
	t.calls = sumCounters(m.invocations)
	t.errors = sumCounters(m.userErrors) + sumCounters(m.sysErrors)
	t.throttles = sumCounters(m.throttles)
	for _, h := range collectMetrics(m.latency) {
		hist := h.GetHistogram()
		for i, b := range hist.GetBucket() {
			t.buckets[i] += b.GetCumulativeCount()
		}
		t.buckets[len(latencyBuckets)] += hist.GetSampleCount()
	}
	return t
}

// quantile estimates the q-quantile from cumulative bucket counts (the
// last is the total, +Inf), interpolating linearly within a bucket.
func quantile(q float64, cumulative []uint64) float64 {
	total := cumulative[len(cumulative)-1]
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i, c := range cumulative[:len(latencyBuckets)] {
		if float64(c) >= rank {
			upper := latencyBuckets[i]
			if c == below {
				return upper
			}
			return lower + (upper-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = latencyBuckets[i], c
	}
	return latencyBuckets[len(latencyBuckets)-1] // past the last bound: say the bound
}

// collectMetrics reads every series of c.
func collectMetrics(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric, 64)
	go func() { // done when ch closes, which the loop below waits for
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) == nil {
			out = append(out, &d)
		}
	}
	return out
}

func sumCounters(c prometheus.Collector) float64 {
	var n float64
	for _, d := range collectMetrics(c) {
		n += d.GetCounter().GetValue()
	}
	return n
}
