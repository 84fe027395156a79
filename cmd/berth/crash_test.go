package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
	"github.com/google/uuid"
)

// serveProcess runs this test binary as `berth serve`.
type serveProcess struct {
	cmd *exec.Cmd
	url string
}

func startServe(t *testing.T, cfgPath, listen string) *serveProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--config", cfgPath, "--listen", listen, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "BERTH_TEST_RUN_MAIN=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, url: "http://" + listen}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.url + "/ping")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth serve did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestKilledBerthLeavesNothing SIGKILLs a serving berth with live sessions
// (one with a grandchild process), restarts it on the same data dir, and
// checks that the old sessions are recorded as ended by shutdown, nothing
// of theirs runs any more, and their IDs get fresh sandboxes.
func TestKilledBerthLeavesNothing(t *testing.T) {
	backends := []string{"process"}
	if err := linux.Available(); err == nil {
		backends = append(backends, "linux")
	} else {
		t.Logf("linux backend not tested here: %v", err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testKilledBerth(t, backend) })
	}
}

func testKilledBerth(t *testing.T, backend string) {
	dir := t.TempDir()
	token := uuid.NewString()
	cfgPath := filepath.Join(dir, "berth.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nstop_grace: 1s\nruntimes:\n  - name: echo\n    command: [%q]\n    sandbox: %s\n    env: {BERTH_KILL_TOKEN: %q}\n",
		filepath.Join(dir, "data"), sandboxtest.BuildAgent(t), backend, token)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	procs := func() int {
		pids, err := sandboxtest.ProcsWithEnv("BERTH_KILL_TOKEN=" + token)
		if err != nil {
			t.Fatal(err)
		}
		return len(pids)
	}
	addr := freeAddr(t)
	b := startServe(t, cfgPath, addr)
	c := &client.Client{Endpoint: b.url}
	call := func(sid, payload string) map[string]any {
		t.Helper()
		out, err := c.Invoke(context.Background(), client.InvokeInput{Runtime: "echo", SessionID: sid, Payload: strings.NewReader(payload)})
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
		defer out.Body.Close()
		var m map[string]any
		json.NewDecoder(out.Body).Decode(&m)
		return m
	}
	s1, s2 := client.NewSessionID(), client.NewSessionID()
	call(s1, `{"op":"echo"}`)
	call(s1, `{"op":"spawn"}`)
	call(s2, `{"op":"echo"}`)
	if n := procs(); n != 3 {
		t.Fatalf("%d agent processes before the kill, want 3", n)
	}

	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()

	b = startServe(t, cfgPath, addr)
	deadline := time.Now().Add(10 * time.Second)
	for procs() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := procs(); n != 0 {
		t.Fatalf("%d processes of the killed berth's sessions survive its restart", n)
	}
	if m := call(s1, `{"op":"echo"}`); m["count"] != 1.0 {
		t.Fatalf("old session ID did not get a fresh sandbox: %v", m)
	}

	db, err := store.Open(context.Background(), filepath.Join(dir, "data", "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := db.ListSessions(context.Background(), session.Filter{})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ended := 0
	for _, r := range recs {
		if r.State == session.StateTerminated {
			if r.EndReason != session.EndShutdown || r.EndedAt.IsZero() {
				t.Errorf("record %s ended %q at %v, want shutdown", r.SessionID, r.EndReason, r.EndedAt)
			}
			ended++
		}
	}
	if ended != 2 || len(recs) != 3 {
		t.Fatalf("%d records, %d ended; want 3 and 2", len(recs), ended)
	}

	// A clean stop drains: SIGTERM, and nothing is left.
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.cmd.Wait(); err != nil {
		t.Fatalf("berth exited uncleanly on SIGTERM: %v", err)
	}
	if n := procs(); n != 0 {
		t.Fatalf("%d agent processes survive a clean stop", n)
	}
}
