package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/image/imagetest"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// BenchmarkColdStartImage: new session → first response from the Go
// example agent (a static binary) on the linux backend, as an image
// runtime (its image already pulled and unpacked) and as a code runtime,
// interleaved in one run. Reports each median and their ratio.
func BenchmarkColdStartImage(b *testing.B) {
	if err := linux.Available(); err != nil {
		b.Skipf("needs the linux backend: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "tutorial-agent")
	build := exec.Command("go", "build", "-o", bin, "../../examples/tutorial")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the example agent: %v\n%s", err, out)
	}
	reg := imagetest.NewRegistry(b, nil)
	reg.Push(b, "bench/tutorial:v1", imagetest.Image(b, "linux/amd64", v1.Config{
		Entrypoint: []string{"/agent"}, Env: []string{"PATH=/bin"}},
		imagetest.Layer(b, imagetest.Entry{Path: "agent", Source: bin, Mode: 0o755})))

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = b.TempDir()
	cfg.MaxSessions, cfg.NewSessionsPerSecond = 1<<20, 1e9
	cfg.Runtimes = []config.Runtime{
		{Name: "code", Settings: registry.Settings{Command: []string{bin}, Sandbox: registry.BackendLinux}},
		{Name: "image", Settings: registry.Settings{Image: reg.Ref("bench/tutorial:v1"), Sandbox: registry.BackendLinux}},
	}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close(context.Background()) })

	const payload = `{"prompt":"How much is 2X5?","user_id":"1"}`
	cold := func(arn string) time.Duration {
		u := d.URL() + "/runtimes/" + url.PathEscape(arn)
		sid := "bench-" + uuid.NewString()
		start := time.Now()
		post(b, u+"/invocations", sid, payload)
		took := time.Since(start)
		b.StopTimer()
		req, _ := http.NewRequest(http.MethodPost, u+"/stopruntimesession", strings.NewReader(`{}`))
		req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", sid)
		if resp, err := benchClient.Do(req); err == nil {
			resp.Body.Close()
		}
		b.StartTimer()
		return took
	}
	var code, img []time.Duration
	for b.Loop() {
		code = append(code, cold(d.Runtimes()[0].ARN))
		img = append(img, cold(d.Runtimes()[1].ARN))
	}
	median := func(s []time.Duration) float64 {
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	c, i := median(code), median(img)
	b.ReportMetric(c, "code-cold-p50-ms")
	b.ReportMetric(i, "image-cold-p50-ms")
	b.ReportMetric(i/c, "image/code")
}
