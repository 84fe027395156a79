package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/google/uuid"
)

// BenchmarkCommand: a command (`true`) on a warm session through berth
// (HTTP, the session manager, the event stream), paired with the same
// command run directly with the backend's sandbox Exec: each iteration
// runs both, one after the other, so load on a shared machine falls on
// both alike. It reports each one's median and their ratio.
func BenchmarkCommand(b *testing.B) {
	benchCommands(b, "true", 0)
}

// BenchmarkCommandOutput: 16 MB of stdout through berth's event stream,
// paired with the same output read straight from the sandbox's Exec; it
// also reports each one's median throughput.
func BenchmarkCommandOutput(b *testing.B) {
	const size = 16 << 20
	benchCommands(b, "yes berth-output-line | head -c "+strconv.Itoa(size), size)
}

func benchCommands(b *testing.B, script string, size int64) {
	agent := buildTutorial(b)
	backends := []string{"process"}
	if linux.Available() == nil {
		backends = append(backends, "linux")
	}
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			d := benchDaemon(b, agent, backend, nil)
			sid := "bench-" + uuid.NewString()
			post(b, invokeURL(d), sid, `{"prompt":"hi"}`)
			u := d.URL() + "/runtimes/" + url.PathEscape(d.Runtimes()[0].ARN) + "/" + api.PathCommands
			h := directSandbox(b, agent, backend)

			var viaBerth, direct []time.Duration
			for b.Loop() {
				start := time.Now()
				if n, code := benchCommand(b, u, sid, script); code != 0 || n != size {
					b.Fatalf("berth: exit %d after %d bytes", code, n)
				}
				viaBerth = append(viaBerth, time.Since(start))

				var n countingWriter
				start = time.Now()
				st, err := h.Exec(context.Background(), sandbox.ExecSpec{Argv: []string{"bash", "-c", script}, Stdout: &n})
				if err != nil || st.Code != 0 || int64(n) != size {
					b.Fatalf("direct: %+v %v after %d bytes", st, err, n)
				}
				direct = append(direct, time.Since(start))
			}
			pb, pd := median(viaBerth), median(direct)
			b.ReportMetric(ms(pb), "berth-p50-ms")
			b.ReportMetric(ms(pd), "direct-p50-ms")
			b.ReportMetric(float64(pb)/float64(pd), "berth/direct")
			if size > 0 {
				b.ReportMetric(float64(size)/1e6/pb.Seconds(), "berth-MB/s")
				b.ReportMetric(float64(size)/1e6/pd.Seconds(), "direct-MB/s")
			}
		})
	}
}

// directSandbox starts agent in a sandbox of backend, outside berth's
// session manager, on backends opened as a daemon opens them.
func directSandbox(b *testing.B, agent, backend string) sandbox.Handle {
	bs, err := daemon.OpenBackends(b.TempDir(), config.Default().UserNamespace)
	if err != nil {
		b.Fatal(err)
	}
	be := bs[backend]
	b.Cleanup(func() {
		if c, ok := be.(io.Closer); ok {
			c.Close()
		}
	})
	sid := "bench-" + uuid.NewString()
	h, err := be.Start(context.Background(), sandbox.Spec{
		Name: sandbox.Name("bench-direct", sid), RuntimeID: "bench-direct", SessionID: sid,
		Command: []string{agent},
		Network: be.Capabilities().DefaultNetwork,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Stop(context.Background(), time.Second) })
	return h
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// countingWriter counts what it is given.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// benchCommand runs one command and reads its stream to its exit code,
// counting its stdout.
func benchCommand(b *testing.B, u, sid, text string) (int64, int) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"command":"`+text+`"}`))
	req.Header.Set(api.HeaderSessionID, sid)
	req.Header.Set("Content-Type", "application/json")
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	dec := eventstream.NewDecoder()
	buf := make([]byte, 0, api.MaxCommandEventBytes)
	var n int64
	for {
		m, err := dec.Decode(resp.Body, buf)
		if err != nil {
			b.Fatalf("stream ended without contentStop: %v", err)
		}
		var c api.CommandChunk
		json.Unmarshal(m.Payload, &c)
		if c.ContentDelta != nil {
			n += int64(len(c.ContentDelta.Stdout))
		}
		if c.ContentStop != nil {
			return n, c.ContentStop.ExitCode
		}
	}
}
