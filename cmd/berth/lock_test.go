package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/google/uuid"
)

// TestSecondServeLeavesFirstAlone starts a second `berth serve` on the data
// dir of a serving one with a live session: the second must fail at once
// with the first's pid, and the first's session must go on in the same
// sandbox and the same agent process.
func TestSecondServeLeavesFirstAlone(t *testing.T) {
	backends := []string{"process"}
	if err := linux.Available(); err == nil {
		backends = append(backends, "linux")
	} else {
		t.Logf("linux backend not tested here: %v", err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testSecondServe(t, backend) })
	}
}

func testSecondServe(t *testing.T, backend string) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	token := uuid.NewString()
	cfgPath := filepath.Join(dir, "berth.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nstop_grace: 1s\nruntimes:\n  - name: echo\n    command: [%q]\n    sandbox: %s\n    env: {BERTH_LOCK_TOKEN: %q}\n",
		dataDir, sandboxtest.BuildAgent(t), backend, token)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	procs := func() []int {
		pids, err := sandboxtest.ProcsWithEnv("BERTH_LOCK_TOKEN=" + token)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(pids)
		return pids
	}
	addr := freeAddr(t)
	first := startServe(t, cfgPath, addr)
	c := &client.Client{Endpoint: first.url}
	ctx := context.Background()
	sid := client.NewSessionID()
	count := func() float64 {
		t.Helper()
		out, err := c.Invoke(ctx, client.InvokeInput{Runtime: "echo", SessionID: sid, Payload: strings.NewReader(`{"op":"echo"}`)})
		if err != nil {
			t.Fatalf("invoke the first berth: %v", err)
		}
		defer out.Body.Close()
		var m struct{ Count float64 }
		if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m.Count
	}
	sandboxID := func() (string, string) {
		t.Helper()
		list, err := c.ListSessions(ctx, client.SessionFilter{State: "live"})
		if err != nil || len(list.Sessions) != 1 {
			t.Fatalf("live sessions: %v %+v", err, list)
		}
		return list.Sessions[0].ID, list.Sessions[0].SandboxID
	}
	if n := count(); n != 1 {
		t.Fatalf("first call counted %v", n)
	}
	recBefore, sbBefore := sandboxID()
	pidsBefore := procs()
	if len(pidsBefore) == 0 {
		t.Fatal("no agent process found")
	}

	// The same address too, as an operator starting berth twice would.
	second := exec.Command(os.Args[0], "serve", "--config", cfgPath, "--listen", addr, "--log-level", "warn")
	second.Env = append(os.Environ(), "BERTH_TEST_RUN_MAIN=1")
	var stdout, stderr bytes.Buffer
	second.Stdout, second.Stderr = &stdout, &stderr
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- second.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(30 * time.Second):
		second.Process.Kill()
		<-waited
		t.Fatal("the second berth did not exit")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("second berth: %v, want a non-zero exit; stdout %q", err, stdout.String())
	}
	want := fmt.Sprintf("berth: another berth (pid %d) is using %s\n", first.cmd.Process.Pid, dataDir)
	if stderr.String() != want || stdout.Len() != 0 {
		t.Fatalf("second berth said\nstderr %q\nstdout %q\nwant stderr %q", stderr.String(), stdout.String(), want)
	}

	// The first berth serves on, untouched.
	if n := count(); n != 2 {
		t.Fatalf("after the second berth, the session counted %v, want 2: its agent was restarted", n)
	}
	if rec, sb := sandboxID(); rec != recBefore || sb != sbBefore {
		t.Fatalf("session moved from record %s sandbox %s to %s %s", recBefore, sbBefore, rec, sb)
	}
	if pids := procs(); !slices.Equal(pids, pidsBefore) {
		t.Fatalf("agent processes %v, before the second berth %v", pids, pidsBefore)
	}
}
