package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestSessionStorageSurvivesKilledBerth writes a file into a session's
// storage, SIGKILLs berth, restarts it, and reads the file back with the
// same session ID from a fresh sandbox.
func TestSessionStorageSurvivesKilledBerth(t *testing.T) {
	testenv.Require(t, testenv.Linux, linux.Available())
	testenv.Require(t, testenv.Root, storage.Available())
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "berth.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nruntimes:\n  - name: stored\n    command: [%q]\n    sandbox: linux\n    session_storage: /mnt/workspace\n",
		filepath.Join(dir, "data"), sandboxtest.BuildAgent(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// After the berths below are killed (cleanups run last first), unmount
	// what the last one left, as a next berth would.
	t.Cleanup(func() {
		if s, err := storage.Open(filepath.Join(dir, "data", "storage"), 0, nil); err == nil {
			s.Recover()
		}
	})
	addr := freeAddr(t)
	b := startServe(t, cfgPath, addr)
	c := &client.Client{Endpoint: b.url}
	call := func(sid, payload string) map[string]any {
		t.Helper()
		out, err := c.Invoke(context.Background(), client.InvokeInput{Runtime: "stored", SessionID: sid, Payload: strings.NewReader(payload)})
		if err != nil {
			t.Fatalf("invoke %s: %v", payload, err)
		}
		defer out.Body.Close()
		var r map[string]any
		json.NewDecoder(out.Body).Decode(&r)
		return r
	}
	sid := client.NewSessionID()
	before := call(sid, `{"op":"write","path":"/mnt/workspace/notes.txt","data":"written before the kill"}`)
	if before["ok"] != true {
		t.Fatalf("write: %v", before)
	}

	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	startServe(t, cfgPath, addr)

	after := call(sid, `{"op":"read","path":"/mnt/workspace/notes.txt"}`)
	if after["data"] != "written before the kill" {
		t.Fatalf("after a SIGKILL of berth and a restart, the session's storage holds %v", after)
	}
}
