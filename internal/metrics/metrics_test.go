package metrics

import (
	"strings"
	"sync"
	"testing"
)

func TestTextFormat(t *testing.T) {
	r := &Registry{}
	c := r.NewCounter("calls_total", "Calls.\nBy outcome.", "outcome")
	h := r.NewHistogram("latency_seconds", "Latency.", []float64{0.1, 1}, "kind")
	r.NewGaugeFunc("live", "Live things.", func(emit func(float64, ...string)) { emit(3, "a\"b") }, "name")
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { c.Inc("ok") })
	}
	wg.Wait()
	c.Inc("error")
	h.Observe(0.05, "x")
	h.Observe(0.5, "x")
	h.Observe(5, "x")
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP calls_total Calls.\nBy outcome.
# TYPE calls_total counter
calls_total{outcome="error"} 1
calls_total{outcome="ok"} 100
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{kind="x",le="0.1"} 1
latency_seconds_bucket{kind="x",le="1"} 2
latency_seconds_bucket{kind="x",le="+Inf"} 3
latency_seconds_sum{kind="x"} 5.55
latency_seconds_count{kind="x"} 3
# HELP live Live things.
# TYPE live gauge
live{name="a\"b"} 3
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWrongLabelCountPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	(&Registry{}).NewCounter("x", "x", "a").Inc()
}
