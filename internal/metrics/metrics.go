// Package metrics keeps berth's counters and histograms and writes them in
// the Prometheus text exposition format, with the standard library only.
package metrics

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Registry holds every metric family. It is safe for concurrent use.
type Registry struct {
	// mu guards families.
	mu       sync.Mutex
	families []*family
}

type kind string

const (
	kindCounter   kind = "counter"
	kindGauge     kind = "gauge"
	kindHistogram kind = "histogram"
)

type family struct {
	name, help string
	kind       kind
	labels     []string
	buckets    []float64
	// mu guards series.
	mu     sync.Mutex
	series map[string]*series
	// collect, for gauges computed at scrape time.
	collect func(emit func(value float64, labelValues ...string))
}

type series struct {
	labelValues []string
	value       float64
	counts      []uint64 // histogram buckets
	sum         float64
	count       uint64
}

func (r *Registry) add(f *family) *family {
	f.series = map[string]*series{}
	r.mu.Lock()
	r.families = append(r.families, f)
	r.mu.Unlock()
	return f
}

// Counter is a monotonically increasing count, by labels.
type Counter struct{ f *family }

// NewCounter registers a counter.
func (r *Registry) NewCounter(name, help string, labels ...string) *Counter {
	return &Counter{r.add(&family{name: name, help: help, kind: kindCounter, labels: labels})}
}

// Inc adds one to the series with labelValues.
func (c *Counter) Inc(labelValues ...string) {
	c.f.update(labelValues, func(s *series) { s.value++ })
}

// Histogram counts observations into buckets, by labels.
type Histogram struct{ f *family }

// DefaultBuckets suit latencies from 100 µs to 60 s, in seconds.
var DefaultBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// NewHistogram registers a histogram with upper bounds buckets.
func (r *Registry) NewHistogram(name, help string, buckets []float64, labels ...string) *Histogram {
	return &Histogram{r.add(&family{name: name, help: help, kind: kindHistogram, labels: labels, buckets: buckets})}
}

// Observe records v (in seconds for durations).
func (h *Histogram) Observe(v float64, labelValues ...string) {
	h.f.update(labelValues, func(s *series) {
		if s.counts == nil {
			s.counts = make([]uint64, len(h.f.buckets))
		}
		if i, _ := slices.BinarySearch(h.f.buckets, v); i < len(s.counts) {
			s.counts[i]++
		}
		s.sum += v
		s.count++
	})
}

// ObserveDuration records d in seconds.
func (h *Histogram) ObserveDuration(d time.Duration, labelValues ...string) {
	h.Observe(d.Seconds(), labelValues...)
}

// NewGaugeFunc registers a gauge whose series collect computes at scrape.
func (r *Registry) NewGaugeFunc(name, help string, collect func(emit func(value float64, labelValues ...string)), labels ...string) {
	r.add(&family{name: name, help: help, kind: kindGauge, labels: labels, collect: collect})
}

func (f *family) update(labelValues []string, fn func(*series)) {
	if len(labelValues) != len(f.labels) {
		panic(fmt.Sprintf("metric %s: %d label values for %d labels", f.name, len(labelValues), len(f.labels)))
	}
	key := strings.Join(labelValues, "\xff")
	f.mu.Lock()
	s := f.series[key]
	if s == nil {
		s = &series{labelValues: slices.Clone(labelValues)}
		f.series[key] = s
	}
	fn(s)
	f.mu.Unlock()
}

// WriteText writes every metric in the Prometheus text format (0.0.4).
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := slices.Clone(r.families)
	r.mu.Unlock()
	var b strings.Builder
	for _, f := range fams {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.kind)
		if f.collect != nil {
			f.collect(func(v float64, lv ...string) {
				fmt.Fprintf(&b, "%s%s %s\n", f.name, labelText(f.labels, lv, "", ""), num(v))
			})
			continue
		}
		f.mu.Lock()
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s := f.series[k]
			if f.kind != kindHistogram {
				fmt.Fprintf(&b, "%s%s %s\n", f.name, labelText(f.labels, s.labelValues, "", ""), num(s.value))
				continue
			}
			var cum uint64
			for i, ub := range f.buckets {
				cum += s.counts[i]
				fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, labelText(f.labels, s.labelValues, "le", num(ub)), cum)
			}
			fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, labelText(f.labels, s.labelValues, "le", "+Inf"), s.count)
			fmt.Fprintf(&b, "%s_sum%s %s\n", f.name, labelText(f.labels, s.labelValues, "", ""), num(s.sum))
			fmt.Fprintf(&b, "%s_count%s %d\n", f.name, labelText(f.labels, s.labelValues, "", ""), s.count)
		}
		f.mu.Unlock()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func labelText(names, values []string, extraName, extraValue string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n + "=" + strconv.Quote(values[i]))
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName + "=" + strconv.Quote(extraValue))
	}
	b.WriteByte('}')
	return b.String()
}

func num(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
