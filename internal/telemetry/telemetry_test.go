package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/telemetry"
	"github.com/berth-dev/berth/internal/telemetry/telemetrytest"
)

// sessions stands in for the session manager: the tests set what is live.
type sessions struct {
	mu    sync.Mutex
	live  []session.Info
	pools map[string]int
}

func (s *sessions) Live() []session.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]session.Info(nil), s.live...)
}

func (s *sessions) PoolSizes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools
}

func (s *sessions) set(live ...session.Info) {
	s.mu.Lock()
	s.live = live
	s.mu.Unlock()
}

func scrape(t *testing.T, m *telemetry.Metrics) telemetrytest.Families {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	m.Handler().ServeHTTP(rec, req)
	return telemetrytest.Parse(t, rec.Body)
}

const gib = 1 << 30

func info(id string, created time.Time, cpu time.Duration, mem int64) session.Info {
	return session.Info{
		Record: session.Record{ID: id, Key: session.Key{RuntimeID: "echo-0123456789", Endpoint: "DEFAULT", SessionID: "s-" + id},
			State: session.StateIdle, CreatedAt: created},
		Stats: &sandbox.Stats{CPUUsage: cpu, MemoryBytes: mem},
	}
}

// TestMetricsUsageAccumulates: CPU counts the growth of each sandbox's CPU time;
// memory integrates bytes held over the time between samples.
func TestMetricsUsageAccumulates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &sessions{}
		var lookups atomic.Int32
		m := telemetry.New(telemetry.Options{Sessions: src,
			RuntimeName: func(ctx context.Context, id string) (string, error) {
				lookups.Add(1)
				return "echo", nil
			}})
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { m.SampleUsage(ctx, 5*time.Second) })
		defer wg.Wait()
		defer cancel()

		usage := func() (cpu, mem float64) {
			f := scrape(t, m)
			l := []string{"runtime_id", "echo-0123456789", "runtime", "echo", "endpoint", "DEFAULT"}
			return f.Sum("berth_session_cpu_seconds_total", l...), f.Sum("berth_session_memory_gb_seconds_total", l...)
		}
		step := func(live ...session.Info) {
			src.set(live...)
			time.Sleep(5 * time.Second) // the next tick, in the bubble's clock
			synctest.Wait()
		}
		start := time.Now()
		step(info("a", start, 0, gib))               // first sample: 1 GiB since creation, 5 s ago
		step(info("a", start, 2*time.Second, 2*gib)) // +2 s CPU, 2 GiB × 5 s
		step(info("a", start, 1*time.Second, 2*gib)) // a child exited, CPU fell: +0
		cpu, mem := usage()
		if cpu != 2 || mem != 5+10+10 {
			t.Fatalf("after 3 ticks: cpu %v s, memory %v GiB·s; want 2, 25", cpu, mem)
		}
		// a: +2 s CPU (1 → 3), 2 GiB × 5 s; b, new: 0.5 GiB × 5 s.
		step(info("a", start, 3*time.Second, 2*gib), info("b", time.Now(), 0, gib/2))
		cpu, mem = usage()
		if cpu != 4 || mem != 25+10+2.5 {
			t.Fatalf("after 4 ticks: cpu %v s, memory %v GiB·s; want 4, 37.5", cpu, mem)
		}
		step() // both gone: nothing more
		if c, m := usage(); c != cpu || m != mem {
			t.Fatalf("usage moved with no live session: cpu %v, memory %v", c, m)
		}
		if n := lookups.Load(); n != 1 {
			t.Fatalf("looked the runtime name up %d times, want once", n)
		}
	})
}

// TestMetricsLiveGauges: scrape-time gauges count live sessions by state, calls
// waiting in queues and ready warm sandboxes; session events count.
func TestMetricsLiveGauges(t *testing.T) {
	src := &sessions{pools: map[string]int{"echo-0123456789": 3}}
	m := telemetry.New(telemetry.Options{Sessions: src,
		RuntimeName: func(ctx context.Context, id string) (string, error) { return "echo", nil }})
	now := time.Now()
	busy := info("a", now, 0, 0)
	busy.State, busy.Queued = session.StateActive, 2
	ended := info("c", now, 0, 0)
	ended.State = session.StateTerminated
	src.set(busy, info("b", now, 0, 0), ended)
	k := session.Key{RuntimeID: "echo-0123456789", Endpoint: "DEFAULT"}
	m.SessionStarted(k, "process", true, 20*time.Millisecond)
	m.SessionStarted(k, "process", false, time.Second)
	m.SessionEnded(k, session.EndIdleTimeout, time.Minute)

	f := scrape(t, m)
	rt := []string{"runtime_id", "echo-0123456789", "runtime", "echo"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"berth_active_sessions", []string{"state", "active"}, 1},
		{"berth_active_sessions", []string{"state", "idle"}, 1},
		{"berth_active_sessions", []string{"state", "terminated"}, 0},
		{"berth_session_queue_depth", []string{"endpoint", "DEFAULT"}, 2},
		{"berth_warm_pool_ready", nil, 3},
		{"berth_sessions_started_total", []string{"endpoint", "DEFAULT", "warm", "true"}, 1},
		{"berth_sessions_started_total", []string{"backend", "process"}, 2},
		{"berth_session_start_seconds", []string{"warm", "false"}, 1},
		{"berth_sessions_ended_total", []string{"reason", "idle_timeout"}, 1},
		{"berth_session_lifetime_seconds", []string{"endpoint", "DEFAULT"}, 1},
	} {
		if got := f.Sum(c.name, append(rt, c.labels...)...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
