package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDev: berth dev builds a Go agent, serves it, and rebuilds it when
// its source changes: a new session runs the new code, the live one keeps
// its own and is listed, not killed.
func TestDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "devagent")
	if _, _, err := berth(t, "init", "--lang", "go", dir); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	// invoke's remembered sessions go to a cache of the test's own; the
	// builds keep Go's, or they compile the standard library again.
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	t.Setenv("XDG_CACHE_HOME", t.TempDir())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetOut(pw)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"dev", "--listen", "127.0.0.1:0"})
		err := root.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	waitLine := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if strings.Contains(lines.Text(), prefix) {
				return lines.Text()
			}
		}
		t.Fatalf("berth dev ended before %q: %v", prefix, <-done)
		return ""
	}
	url, _, _ := strings.Cut(strings.TrimPrefix(waitLine("berth listening on "), "berth listening on "), " ")
	t.Setenv("BERTH_ENDPOINT", url)

	out, errOut, err := berth(t, "invoke", "-r", "devagent", `{"prompt": "hi"}`)
	if err != nil || !strings.Contains(out, "You said: hi") {
		t.Fatalf("first invoke: %v %s", err, out)
	}
	old := strings.TrimPrefix(strings.TrimSpace(errOut), "session: ")

	src := filepath.Join(dir, "main.go")
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte(strings.Replace(string(code), `"You said: "`, `"You wrote: "`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLine("devagent: code changed; new sessions run it")
	waitLine("berth sessions stop " + old)

	if out, _, err := berth(t, "invoke", "-r", "devagent", `{"prompt": "hi"}`); err != nil || !strings.Contains(out, "You wrote: hi") {
		t.Fatalf("a new session after the change: %v %s", err, out)
	}
	if out, _, err := berth(t, "invoke", "-r", "devagent", "--session", old, `{"prompt": "hi"}`); err != nil || !strings.Contains(out, "You said: hi") {
		t.Fatalf("the live session after the change: %v %s", err, out)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatalf("berth dev, interrupted: %v", err)
	}
}
