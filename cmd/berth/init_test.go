package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestInit: for each language, berth init writes an agent and a
// berth.yaml that berth serves as it is (after go build, for Go), and
// which answers an invocation; a second init overwrites nothing.
func TestInit(t *testing.T) {
	for _, lang := range []string{"python", "node", "go"} {
		t.Run(lang, func(t *testing.T) {
			switch lang {
			case "python":
				_, err := exec.LookPath("python3")
				testenv.Require(t, testenv.Python3, err)
			case "node":
				_, err := exec.LookPath("node")
				testenv.Require(t, testenv.Node, err)
			}
			dir := filepath.Join(t.TempDir(), "my-agent")
			out, _, err := berth(t, "init", "--lang", lang, dir)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "berth serve -c berth.yaml") {
				t.Errorf("init's next steps:\n%s", out)
			}
			if lang == "go" {
				build := exec.Command("go", "build", "-o", "my_agent", ".")
				build.Dir = dir
				if b, err := build.CombinedOutput(); err != nil {
					t.Fatalf("go build: %v\n%s", err, b)
				}
			}

			cfg, err := config.Load(filepath.Join(dir, "berth.yaml"))
			if err != nil {
				t.Fatalf("the scaffold's berth.yaml: %v", err)
			}
			cfg.Listen = "127.0.0.1:0"
			cfg.DataDir = t.TempDir()
			d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close(context.Background()) })
			t.Setenv("BERTH_ENDPOINT", d.URL())
			t.Setenv("XDG_CACHE_HOME", t.TempDir())

			out, errOut, err := berth(t, "invoke", "-r", "my_agent", `{"prompt": "hello"}`)
			sid := strings.TrimPrefix(strings.TrimSpace(errOut), "session: ")
			if err != nil || !strings.Contains(out, `"response": "You said: hello"`) && !strings.Contains(out, `"response":"You said: hello"`) || !strings.Contains(out, sid) {
				t.Fatalf("invoke the scaffold: %v\nstdout %s\nstderr %s", err, out, errOut)
			}

			before, _ := os.ReadFile(filepath.Join(dir, "berth.yaml"))
			if _, _, err := berth(t, "init", "--lang", lang, dir); err == nil || !strings.Contains(err.Error(), "never overwrites") {
				t.Errorf("a second init: %v", err)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, "berth.yaml")); string(after) != string(before) {
				t.Error("a second init changed berth.yaml")
			}
		})
	}
	if _, _, err := berth(t, "init", "--lang", "cobol", t.TempDir()); err == nil || !strings.Contains(err.Error(), "want go, python or node") {
		t.Errorf("--lang cobol: %v", err)
	}
	if _, _, err := berth(t, "init", filepath.Join(t.TempDir(), "9lives")); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Errorf("a directory that is no runtime name: %v", err)
	}
}
