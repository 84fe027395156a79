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
)

// TestDurableSessionSurvivesKilledBerth has a conversation with the
// durable tutorial agent, SIGKILLs berth, restarts it, and continues the
// conversation with the same session ID: the agent remembers. A stop then
// ends the session for good.
func TestDurableSessionSurvivesKilledBerth(t *testing.T) {
	backends := []string{"process"}
	if err := linux.Available(); err == nil {
		backends = append(backends, "linux")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testDurable(t, backend) })
	}
}

func testDurable(t *testing.T, backend string) {
	dir := t.TempDir()
	agent, err := buildTutorialAgent(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "berth.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nruntimes:\n  - name: tutorial\n    command: [%q]\n    sandbox: %s\n    durability: state\n",
		filepath.Join(dir, "data"), agent, backend)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	b := startServe(t, cfgPath, addr)
	c := &client.Client{Endpoint: b.url}
	say := func(sid, prompt string) tutorialReply {
		t.Helper()
		out, err := c.Invoke(context.Background(), client.InvokeInput{Runtime: "tutorial", SessionID: sid, UserID: "1",
			Payload: strings.NewReader(fmt.Sprintf(`{"prompt": %q, "user_id": "1"}`, prompt))})
		if err != nil {
			t.Fatalf("invoke %q: %v", prompt, err)
		}
		defer out.Body.Close()
		var r tutorialReply
		if err := json.NewDecoder(out.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	sid := client.NewSessionID()
	say(sid, "How much is 2X5?")
	first := say(sid, "and that plus 34?")
	if !strings.Contains(first.Answer, "44") {
		t.Fatalf("before the kill: %q", first.Answer)
	}

	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	b = startServe(t, cfgPath, addr)

	after := say(sid, "and plus 10?")
	if after.Instance == first.Instance {
		t.Fatal("same process after a berth restart")
	}
	if !strings.Contains(after.Answer, "54") || after.Turn != 3 {
		t.Fatalf("after the restart the agent forgot: turn %d, %q", after.Turn, after.Answer)
	}

	if err := c.StopSession(context.Background(), "tutorial", "", sid); err != nil {
		t.Fatal(err)
	}
	fresh := say(sid, "and plus 10?")
	if strings.Contains(fresh.Answer, "64") || fresh.Turn != 1 {
		t.Fatalf("a stopped durable session kept its state: turn %d, %q", fresh.Turn, fresh.Answer)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
}
