package daemon_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestSessionStorage: what a session writes under its mount path is there
// again in its next sandbox (after a stop and after an idle timeout), is
// never seen by another session, is capped (ENOSPC), and is wiped when
// the runtime's version changes.
func TestSessionStorage(t *testing.T) {
	testenv.Require(t, testenv.Linux, linux.Available())
	testenv.Require(t, testenv.Root, storage.Available())
	agent := sandboxtest.BuildAgent(t)
	e := newEnv(t, func(c *config.Config) {
		c.SessionStorageMaxBytes = 32 << 20
		c.Runtimes = append(c.Runtimes, config.Runtime{Name: "stored", Settings: registry.Settings{
			Command: []string{agent}, Sandbox: registry.BackendLinux, SessionStorage: "/mnt/workspace",
			IdleTimeout: config.Duration(time.Second), MaxLifetime: config.Duration(time.Minute)}})
	})
	ctx := context.Background()
	call := func(sid, payload string) (map[string]any, error) {
		t.Helper()
		out, err := e.invoke(ctx, "stored", sid, json.RawMessage(payload))
		if err != nil {
			return nil, err
		}
		defer out.Response.Close()
		var r map[string]any
		json.NewDecoder(out.Response).Decode(&r)
		return r, nil
	}
	must := func(sid, payload string) map[string]any {
		t.Helper()
		r, err := call(sid, payload)
		if err != nil {
			t.Fatalf("%s: %v", payload, err)
		}
		return r
	}
	const write = `{"op":"write","path":"/mnt/workspace/notes.txt","data":"kept"}`
	const read = `{"op":"read","path":"/mnt/workspace/notes.txt"}`

	sid := newSessionID()
	// The first call sees an empty directory.
	if r, err := call(sid, `{"op":"read","path":"/mnt/workspace"}`); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("the mount path on the first call: %v %v", r, err)
	}
	if _, err := call(sid, read); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a new session's storage holds notes.txt: %v", err)
	}
	first := must(sid, write)
	if first["ok"] != true {
		t.Fatalf("write: %v", first)
	}
	if _, err := e.client.StopRuntimeSession(ctx, stopInput(e, "stored", sid)); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if r := must(sid, read); r["data"] != "kept" {
		t.Fatalf("after StopRuntimeSession the session's storage holds %v", r)
	}
	// An idle timeout ends the sandbox; the storage stays.
	waitGone(t, e, sid, 10*time.Second)
	if r := must(sid, read); r["data"] != "kept" {
		t.Fatalf("after an idle timeout the session's storage holds %v", r)
	}
	// Another session cannot see it.
	if _, err := call(newSessionID(), read); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("another session read the file: %v", err)
	}
	// The cap: writes past it fail inside the sandbox with ENOSPC.
	big, _ := json.Marshal(map[string]any{"op": "write", "path": "/mnt/workspace/big", "data": strings.Repeat("x", 40<<20)})
	if _, err := call(sid, string(big)); err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("a 40 MB write into 32 MB of storage: %v", err)
	}
}

func stopInput(e *env, runtime, sid string) *bedrockagentcore.StopRuntimeSessionInput {
	return &bedrockagentcore.StopRuntimeSessionInput{AgentRuntimeArn: aws.String(e.arn(runtime)), RuntimeSessionId: aws.String(sid)}
}

// waitGone waits until the session is no longer live.
func waitGone(t *testing.T, e *env, sid string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for liveRecordOK(e, sid) {
		if time.Now().After(deadline) {
			t.Fatalf("session %s still live after %s", sid, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
