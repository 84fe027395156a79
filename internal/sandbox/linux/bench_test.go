//go:build linux

package linux_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/process"
)

// coldStart runs start → first /ping 200 → Stop once and returns how long
// start → first 200 took.
func coldStart(tb testing.TB, b sandbox.Backend, s sandbox.Spec) time.Duration {
	t0 := time.Now()
	h, err := b.Start(context.Background(), s)
	if err != nil {
		tb.Fatalf("start: %v", err)
	}
	waitPing(tb, h)
	d := time.Since(t0)
	if err := h.Stop(context.Background(), time.Second); err != nil {
		tb.Fatalf("stop: %v", err)
	}
	return d
}

func benchStart(b *testing.B, be sandbox.Backend, network sandbox.NetworkMode) {
	var lat []time.Duration
	for b.Loop() {
		lat = append(lat, coldStart(b, be, spec(b, func(s *sandbox.Spec) { s.Network = network })))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

func BenchmarkStartLinux(b *testing.B) {
	benchStart(b, newBackend(b), sandbox.NetworkNone)
}

func BenchmarkStartLinuxHostNet(b *testing.B) {
	benchStart(b, newBackend(b), sandbox.NetworkHost)
}

func BenchmarkStartLinuxEgress(b *testing.B) {
	requireEgressTools(b)
	benchStart(b, newBackend(b), sandbox.NetworkEgress)
}

// BenchmarkStartLinuxCold starts every sandbox from a fresh init: the cost
// the warm pool hides (a Start that finds the pool empty pays it).
func BenchmarkStartLinuxCold(b *testing.B) {
	benchStart(b, newBackend(b, func(c *linux.Config) { c.WarmInits = -1 }), sandbox.NetworkNone)
}

func BenchmarkStartProcess(b *testing.B) {
	benchStart(b, process.New(b.TempDir(), nil), sandbox.NetworkHost)
}

// BenchmarkStartRatio interleaves linux and process cold starts on the same
// agent, so both see the same machine load, and reports medians and ratio.
func BenchmarkStartRatio(b *testing.B) {
	lb, pb := newBackend(b), process.New(b.TempDir(), nil)
	var ld, pd []time.Duration
	for b.Loop() {
		ld = append(ld, coldStart(b, lb, spec(b)))
		pd = append(pd, coldStart(b, pb, spec(b, func(s *sandbox.Spec) { s.Network = sandbox.NetworkHost })))
	}
	slices.Sort(ld)
	slices.Sort(pd)
	l, p := ld[len(ld)/2], pd[len(pd)/2]
	b.ReportMetric(float64(l.Microseconds())/1000, "linux-p50-ms")
	b.ReportMetric(float64(p.Microseconds())/1000, "process-p50-ms")
	b.ReportMetric(float64(l)/float64(p), "ratio")
}

// TestManyLive holds many linux sandboxes alive at once (500 by default,
// BERTH_MANY_LIVE overrides), checks each answers, and reports the cost.
func TestManyLive(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 500 live sandboxes; skipped with -short")
	}
	n := 500
	if v, err := strconv.Atoi(os.Getenv("BERTH_MANY_LIVE")); err == nil && v > 0 {
		n = v
	}
	be := newBackend(t)
	memBefore := memAvailable()
	handles := make([]sandbox.Handle, n)
	var failed atomic.Int32
	t0 := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2*runtime.NumCPU())
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s := spec(t, func(s *sandbox.Spec) {
				s.Limits = sandbox.Limits{MemoryBytes: 64 << 20, Pids: 64, DiskBytes: 8 << 20}
				s.Output = nil // discarded
			})
			h, err := be.Start(context.Background(), s)
			if err != nil {
				failed.Add(1)
				t.Errorf("start %d: %v", i, err)
				return
			}
			handles[i] = h
			waitPing(t, h)
		})
	}
	wg.Wait()
	started := time.Since(t0)
	memDuring := memAvailable()

	// All alive at once: ping every one again.
	t1 := time.Now()
	for _, h := range handles {
		if h != nil {
			waitPing(t, h)
		}
	}
	pingAll := time.Since(t1)

	t2 := time.Now()
	for _, h := range handles {
		if h == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := h.Stop(context.Background(), time.Second); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d live linux sandboxes (%d failed): started+healthy in %v (%.1f ms each), re-pinged all in %v, stopped in %v, ~%.1f MiB host memory each",
		n, failed.Load(), started.Round(time.Millisecond), float64(started.Microseconds())/1000/float64(n),
		pingAll.Round(time.Millisecond), time.Since(t2).Round(time.Millisecond),
		float64(memBefore-memDuring)/float64(n)/(1<<20))
}

// memAvailable reads MemAvailable from /proc/meminfo in bytes.
func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10
		}
	}
	return 0
}
