package telemetry

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// TestHistory: each interval's point has its calls, errors and throttles
// per second and its latency quantiles, from the counters berth serves.
func TestHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			m.RecordHistory(ctx, 10*time.Second)
			close(done)
		}()
		synctest.Wait()
		tg := Target{RuntimeID: "echo-0123456789", Runtime: "echo", Endpoint: "DEFAULT"}
		for range 100 {
			m.Call("invoke", tg, OK, "", 3*time.Millisecond)
		}
		for range 9 {
			m.Call("invoke", tg, SystemError, "InternalServerException", 2*time.Second)
		}
		m.Call("invoke", tg, Throttle, "ThrottlingException", time.Millisecond)
		time.Sleep(10 * time.Second)
		synctest.Wait()

		h := m.History()
		if len(h) != 1 {
			t.Fatalf("%d points after one interval", len(h))
		}
		p := h[0]
		if p.Calls != 11 || p.Errors != 0.9 || p.Throttles != 0.1 {
			t.Errorf("rates: %+v, want 11 calls/s, 0.9 errors/s, 0.1 throttles/s", p)
		}
		// 100 of 110 calls took 3 ms: the median and 90th percentile lie
		// in the bucket (2.5 ms, 5 ms]; the slowest 9 (2 s) in (1 s, 2.5 s].
		if p.P50 <= 0.0025 || p.P50 > 0.005 {
			t.Errorf("p50 %v, want within (0.0025, 0.005]", p.P50)
		}
		if p.P99 <= 1 || p.P99 > 2.5 {
			t.Errorf("p99 %v, want within (1, 2.5]", p.P99)
		}

		time.Sleep(10 * time.Second)
		synctest.Wait()
		if h = m.History(); len(h) != 2 || h[1].Calls != 0 || !math.IsNaN(h[1].P50) {
			t.Errorf("a quiet interval: %+v", h)
		}
		cancel()
		<-done
	})
}
