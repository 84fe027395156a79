//go:build record

package client_test

// The recorder behind testdata/golden: it runs the client's scenario
// against a real berth (internal/daemon, with the tutorial agent on the
// process backend) and writes every exchange. It is built only with
// -tags record, so the client's tests never depend on the daemon:
//
//	go test -tags record -run TestRecordGolden ./client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// TestMain lets the test binary serve as the linux sandbox's init step.
func TestMain(m *testing.M) {
	linux.MaybeRunInit()
	os.Exit(m.Run())
}

// recorder is an http.RoundTripper that keeps every exchange.
type recorder struct {
	xs []exchange
}

func (rc *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var x exchange
	x.Request.Method = req.Method
	x.Request.Path = req.URL.EscapedPath()
	x.Request.Query = req.URL.RawQuery
	x.Request.Header = cleanHeader(req.Header)
	if req.Body != nil {
		data, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		x.Request.Body = data
		req.Body = io.NopCloser(bytes.NewReader(data))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	x.Response.Status = resp.StatusCode
	x.Response.Header = cleanHeader(resp.Header)
	x.Response.Body = data
	rc.xs = append(rc.xs, x)
	return resp, nil
}

func TestRecordGolden(t *testing.T) {
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "tutorial-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/tutorial").CombinedOutput(); err != nil {
		t.Fatalf("build the tutorial agent: %v\n%s", err, out)
	}
	codeDir := filepath.Join(t.TempDir(), "agent")
	if err := os.Mkdir(codeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(codeDir, "agent"), []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.APIRuntimes.Sandbox = registry.BackendProcess
	cfg.CodeRoots = []string{filepath.Dir(codeDir)}
	cfg.Runtimes = []config.Runtime{{Name: goldenConfigRuntime, Settings: registry.Settings{
		Command: []string{bin}, Sandbox: registry.BackendProcess}}}
	d, err := daemon.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)

	rec := &recorder{}
	c := &client.Client{Endpoint: d.URL(), HTTPClient: &http.Client{Transport: rec}}
	if err := os.RemoveAll(goldenDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(goldenDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	st := &state{configRuntime: goldenConfigRuntime}
	for i, s := range scenario(codeDir) {
		rec.xs = nil
		if err := s.run(ctx, c, st); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(rec.xs) != 1 {
			t.Fatalf("%s made %d requests, want 1", s.name, len(rec.xs))
		}
		x := rec.xs[0]
		x.Name, x.Volatile = s.name, s.volatile
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(x); err != nil {
			t.Fatal(err)
		}
		// The agent's directory and berth's data directory were temporary.
		data := bytes.ReplaceAll(out.Bytes(), []byte(codeDir), []byte(goldenCodeDir))
		data = bytes.ReplaceAll(data, []byte(cfg.DataDir), []byte("/var/lib/berth"))
		if err := os.WriteFile(goldenFile(i, s.name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
