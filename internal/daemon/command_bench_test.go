package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
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
// (HTTP, the session manager, the event stream), next to the same command
// run directly with the backend's sandbox Exec, per backend.
func BenchmarkCommand(b *testing.B) {
	benchCommands(b, "true", 0)
}

// BenchmarkCommandOutput: 16 MB of stdout through berth's event stream,
// next to the same output read straight from the sandbox's Exec (MB/s).
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
		b.Run("berth-"+backend, func(b *testing.B) {
			d := benchDaemon(b, agent, backend, nil)
			sid := "bench-" + uuid.NewString()
			post(b, invokeURL(d), sid, `{"prompt":"hi"}`)
			u := d.URL() + "/runtimes/" + url.PathEscape(d.Runtimes()[0].ARN) + "/" + api.PathCommands
			b.SetBytes(size)
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				if n, code := benchCommand(b, u, sid, script); code != 0 || n != size {
					b.Fatalf("exit %d after %d bytes", code, n)
				}
				samples = append(samples, time.Since(start))
			}
			reportP50(b, samples, "command")
		})
		b.Run("direct-"+backend, func(b *testing.B) {
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
				Command: []string{agent}, LogPath: filepath.Join(b.TempDir(), "agent.log"),
				Network: be.Capabilities().DefaultNetwork,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { h.Stop(context.Background(), time.Second) })
			b.SetBytes(size)
			var samples []time.Duration
			for b.Loop() {
				var n countingWriter
				start := time.Now()
				st, err := h.Exec(context.Background(), sandbox.ExecSpec{Argv: []string{"bash", "-c", script}, Stdout: &n})
				if err != nil || st.Code != 0 || int64(n) != size {
					b.Fatalf("exec: %+v %v after %d bytes", st, err, n)
				}
				samples = append(samples, time.Since(start))
			}
			reportP50(b, samples, "command")
		})
	}
}

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
