package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
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
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				if code := benchCommand(b, u, sid, "true"); code != 0 {
					b.Fatalf("exit %d", code)
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
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				st, err := h.Exec(context.Background(), sandbox.ExecSpec{Argv: []string{"bash", "-c", "true"}})
				if err != nil || st.Code != 0 {
					b.Fatalf("exec: %+v %v", st, err)
				}
				samples = append(samples, time.Since(start))
			}
			reportP50(b, samples, "command")
		})
	}
}

// benchCommand runs one command and reads its stream to its exit code.
func benchCommand(b *testing.B, u, sid, text string) int {
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
	for {
		m, err := dec.Decode(resp.Body, nil)
		if err != nil {
			b.Fatalf("stream ended without contentStop: %v", err)
		}
		var c api.CommandChunk
		json.Unmarshal(m.Payload, &c)
		if c.ContentStop != nil {
			return c.ContentStop.ExitCode
		}
	}
}
