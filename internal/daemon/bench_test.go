package daemon_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/google/uuid"
)

// Benchmarks compare berth against its own baseline in the same run: the
// same agent started or called directly. Each reports p50 in custom units.

var (
	tutorialOnce sync.Once
	tutorialBin  string
	tutorialErr  error
)

// buildTutorial compiles the Go example agent once per test process.
func buildTutorial(b testing.TB) string {
	tutorialOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bench-")
		if err != nil {
			tutorialErr = err
			return
		}
		tutorialBin = filepath.Join(dir, "tutorial-agent")
		out, err := exec.Command("go", "build", "-o", tutorialBin, "../../examples/tutorial").CombinedOutput()
		if err != nil {
			tutorialErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if tutorialErr != nil {
		b.Fatal(tutorialErr)
	}
	return tutorialBin
}

func benchDaemon(b *testing.B, agent, sandbox string, env map[string]string, mutate ...func(*config.Runtime)) *daemon.Daemon {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = b.TempDir()
	// Benchmarks start sessions as fast as they can and hold a thousand:
	// the caps that protect a shared host would measure themselves.
	cfg.MaxSessions, cfg.NewSessionsPerSecond = 1<<20, 1e9
	cfg.Runtimes = []config.Runtime{{Name: "bench", Settings: registry.Settings{Command: []string{agent}, Sandbox: registry.Backend(sandbox), Env: env}}}
	for _, m := range mutate {
		m(&cfg.Runtimes[0])
	}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close(context.Background()) })
	return d
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func post(b *testing.B, u, session, body string) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if session != "" {
		req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", session)
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func invokeURL(d *daemon.Daemon) string {
	return d.URL() + "/runtimes/" + url.PathEscape(d.Runtimes()[0].ARN) + "/invocations"
}

func reportP50(b *testing.B, samples []time.Duration, unit string) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, unit+"-p50-ms")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, unit+"-p99-ms")
}

// BenchmarkColdStart: new session ID → first response from the Go example
// agent through berth (process and linux backends, with and without a warm
// pool), next to starting the same agent bare.
func BenchmarkColdStart(b *testing.B) {
	agent := buildTutorial(b)
	const payload = `{"prompt":"How much is 2X5?","user_id":"1"}`
	backends := []string{"process"}
	if linux.Available() == nil {
		backends = append(backends, "linux")
	}
	for _, backend := range backends {
		b.Run("berth-"+backend, func(b *testing.B) {
			d := benchDaemon(b, agent, backend, nil)
			u := invokeURL(d)
			var samples []time.Duration
			for b.Loop() {
				sid := "bench-" + uuid.NewString()
				start := time.Now()
				post(b, u, sid, payload)
				samples = append(samples, time.Since(start))
				b.StopTimer()
				stopSession(b, d, sid)
				b.StartTimer()
			}
			reportP50(b, samples, "cold")
		})
		// Paced at 50 new sessions per second, the rate the warm-pool
		// target names; the pool refills between arrivals.
		b.Run("berth-"+backend+"-warm-pool", func(b *testing.B) {
			d := benchDaemon(b, agent, backend, nil, func(rt *config.Runtime) { rt.Sessions.WarmPool = 4 })
			rt := d.Runtimes()[0].ID
			for d.Sessions().PoolSizes()[rt] < 4 {
				time.Sleep(10 * time.Millisecond)
			}
			u := invokeURL(d)
			var samples []time.Duration
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for b.Loop() {
				<-tick.C
				start := time.Now()
				post(b, u, "bench-"+uuid.NewString(), payload)
				samples = append(samples, time.Since(start))
			}
			reportP50(b, samples, "cold")
		})
	}
	b.Run("bare-agent", func(b *testing.B) {
		var samples []time.Duration
		for b.Loop() {
			start := time.Now()
			cmd, base := startBare(b, agent)
			post(b, base+"/invocations", "", payload)
			samples = append(samples, time.Since(start))
			b.StopTimer()
			cmd.Process.Kill()
			cmd.Wait()
			b.StartTimer()
		}
		reportP50(b, samples, "cold")
	})
}

func stopSession(b *testing.B, d *daemon.Daemon, sid string) {
	u := d.URL() + "/runtimes/" + url.PathEscape(d.Runtimes()[0].ARN) + "/stopruntimesession"
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{}`))
	req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", sid)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

// startBare runs agent on a free loopback port and waits for /ping.
func startBare(b *testing.B, agent string) (*exec.Cmd, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(agent)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "BERTH_AGENT_HOST=127.0.0.1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	delay := time.Millisecond
	for {
		resp, err := benchClient.Get(base + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, base
			}
		}
		time.Sleep(delay)
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// BenchmarkWarmInvoke: a small payload into a live session through berth,
// next to calling the same agent directly.
func BenchmarkWarmInvoke(b *testing.B) {
	agent := sandboxtest.BuildAgent(b)
	const payload = `{"op":"status","code":200}`
	run := func(b *testing.B, u, sid string) {
		post(b, u, sid, payload) // warm up: start the session, open connections
		var samples []time.Duration
		for b.Loop() {
			start := time.Now()
			post(b, u, sid, payload)
			samples = append(samples, time.Since(start))
		}
		reportP50(b, samples, "call")
	}
	b.Run("berth-process", func(b *testing.B) {
		d := benchDaemon(b, agent, "process", nil)
		run(b, invokeURL(d), "bench-"+uuid.NewString())
	})
	b.Run("direct", func(b *testing.B) {
		cmd, base := startBare(b, agent)
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		run(b, base+"/invocations", "bench-"+uuid.NewString())
	})
}

// BenchmarkWarmThroughput: parallel callers into one session.
func BenchmarkWarmThroughput(b *testing.B) {
	agent := sandboxtest.BuildAgent(b)
	const payload = `{"op":"status","code":200}`
	run := func(b *testing.B, u string) {
		sid := "bench-" + uuid.NewString()
		post(b, u, sid, payload)
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				post(b, u, sid, payload)
			}
		})
	}
	b.Run("berth-process", func(b *testing.B) {
		d := benchDaemon(b, agent, "process", nil)
		run(b, invokeURL(d))
	})
	b.Run("direct", func(b *testing.B) {
		cmd, base := startBare(b, agent)
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		run(b, base+"/invocations")
	})
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkLiveSessions holds BERTH_BENCH_SESSIONS (default 1000) live
// sessions at once and reports berth's own memory growth per idle session.
func BenchmarkLiveSessions(b *testing.B) {
	agent := sandboxtest.BuildAgent(b)
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("BERTH_BENCH_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	for b.Loop() {
		d := benchDaemon(b, agent, "process", nil)
		u := invokeURL(d)
		before := heapInUse()
		g0 := runtime.NumGoroutine()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				post(b, u, fmt.Sprintf("bench-live-%06d-%s", i, uuid.NewString()), `{"op":"status","code":200}`)
			})
		}
		wg.Wait()
		if live := len(d.Sessions().Live()); live != n {
			b.Fatalf("%d live sessions, want %d", live, n)
		}
		after := heapInUse()
		b.ReportMetric(float64(n), "sessions")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(n), "goroutines/session")
		b.ReportMetric(float64(int64(after)-int64(before))/float64(n)/1024, "KB/session")
		// Idle keep-alive connections are a cache that expires; without them
		// is what an idle session costs once its connections time out. An
		// idle session keeps one: its ping reopens it every ping interval
		// (a reader and a writer goroutine), beside its process waiter.
		d.Sessions().CloseIdleConnections()
		settle(b, g0+3*n+3*cap(sem))
		b.ReportMetric(float64(int64(heapInUse())-int64(before))/float64(n)/1024, "KB/idle-session")
		b.StopTimer()
		d.Close(context.Background())
		b.StartTimer()
	}
}

// settle waits until at most want goroutines run: closed connections'
// goroutines take a while to exit on a loaded machine, and their stacks and
// buffers are not what an idle session costs.
func settle(b *testing.B, want int) {
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			b.Fatalf("%d goroutines 30s after closing idle connections, want at most %d", runtime.NumGoroutine(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkLargePayload streams a 100 MB payload through berth and reports
// berth's peak heap growth against the payload size.
func BenchmarkLargePayload(b *testing.B) {
	agent := sandboxtest.BuildAgent(b)
	const size = 100_000_000
	d := benchDaemon(b, agent, "process", nil)
	u := invokeURL(d)
	sid := "bench-" + uuid.NewString()
	post(b, u, sid, `{"op":"status","code":200}`)
	prefix, suffix := `{"op":"status","code":200,"pad":"`, `"}`
	pad := size - len(prefix) - len(suffix)
	for b.Loop() {
		base := heapInUse()
		var peak uint64
		done := make(chan struct{})
		go func() {
			var ms runtime.MemStats
			for {
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse+ms.StackInuse)
			}
		}()
		body := io.MultiReader(strings.NewReader(prefix), io.LimitReader(repeatReader('x'), int64(pad)), strings.NewReader(suffix))
		req, _ := http.NewRequest(http.MethodPost, u, body)
		req.ContentLength = size
		req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", sid)
		resp, err := benchClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		close(done)
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		b.SetBytes(size)
		b.ReportMetric(float64(int64(peak)-int64(base))/(1<<20), "peak-heap-growth-MB")
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// BenchmarkColdStartSessionStorage: a new session's first call on the
// linux backend with session storage, next to the same runtime without it,
// in the same run. Each session ID is new, so every call attaches a fresh
// storage (a sparse copy of the template, a loop device, an ext4 mount).
func BenchmarkColdStartSessionStorage(b *testing.B) {
	if linux.Available() != nil || storage.Available() != nil {
		b.Skip("needs the linux backend and session storage (root)")
	}
	agent := buildTutorial(b)
	const payload = `{"prompt":"How much is 2X5?","user_id":"1"}`
	for _, tc := range []struct {
		name string
		path string
	}{{"without", ""}, {"with", "/mnt/workspace"}} {
		b.Run(tc.name, func(b *testing.B) {
			d := benchDaemon(b, agent, "linux", nil, func(rt *config.Runtime) { rt.SessionStorage = tc.path })
			u := invokeURL(d)
			var samples []time.Duration
			for b.Loop() {
				sid := "bench-" + uuid.NewString()
				start := time.Now()
				post(b, u, sid, payload)
				samples = append(samples, time.Since(start))
				b.StopTimer()
				stopSession(b, d, sid)
				b.StartTimer()
			}
			reportP50(b, samples, "cold")
		})
	}
}
