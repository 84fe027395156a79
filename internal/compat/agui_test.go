package compat_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
)

const aguiNodeDir = "examples/agui-node"

// An AG-UI agent (events typed with @ag-ui/core), run unmodified by berth,
// read with @ag-ui/client's HttpAgent: a run streams its events, the next
// run in the session reaches the same process, and berth's own errors are
// SSE RUN_ERROR events: AGENT_ERROR (200) when the agent dies mid-run,
// VALIDATION_ERROR (400) and SESSION_BUSY (409) before a run starts.
func TestAGUIJavaScriptAgent(t *testing.T) {
	node := requireNode(t)
	dir := npmProject(t, aguiNodeDir, "agent.js", "client.mjs")
	gate := t.TempDir()
	b := startBerth(t, []config.Runtime{{Name: "aguiecho", Settings: registry.Settings{Command: []string{"node", "agent.js"},
		Workdir: dir, Protocol: registry.ProtocolAGUI, Sandbox: registry.BackendProcess, Env: map[string]string{"AGUI_GATE_DIR": gate},
		Sessions: registry.SessionPolicy{Concurrency: registry.ConcurrencyReject}}}})
	cmd := exec.Command(node, "client.mjs", api.InvocationURL(b.d.URL(), b.arn(t, "aguiecho")), newSessionID(), gate)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v: %s", err, out)
	}
	type event struct{ Type, Code, Delta, Message string }
	type run struct {
		Events  []event `json:"events"`
		Error   string  `json:"error"`
		Status  int     `json:"status"`
		Payload string  `json:"payload"`
	}
	var r struct{ First, Second, Crash, Invalid, Busy, Held run }
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("report %s: %v", out, err)
	}
	types := func(rn run) string {
		var s []string
		for _, e := range rn.Events {
			s = append(s, e.Type)
		}
		return strings.Join(s, ",")
	}
	const full = "RUN_STARTED,TEXT_MESSAGE_START,TEXT_MESSAGE_CONTENT,TEXT_MESSAGE_END,RUN_FINISHED"
	if types(r.First) != full || r.First.Error != "" || !strings.HasPrefix(r.First.Events[2].Delta, "echo: hello (#1 in ") {
		t.Fatalf("first run: %+v", r.First)
	}
	instance := strings.TrimPrefix(r.First.Events[2].Delta, "echo: hello (#1 in ")
	if types(r.Second) != full || r.Second.Events[2].Delta != "echo: again (#2 in "+instance {
		t.Fatalf("second run (same session): %+v", r.Second)
	}
	// The agent died after the stream began: the stream ends with berth's
	// RUN_ERROR, as an event the client's subscribers see.
	last := r.Crash.Events[len(r.Crash.Events)-1]
	if !strings.HasPrefix(types(r.Crash), "RUN_STARTED,TEXT_MESSAGE_START") || last.Type != "RUN_ERROR" || last.Code != "AGENT_ERROR" {
		t.Fatalf("crash: %+v", r.Crash)
	}
	// Before a run starts the status is the error's; HttpAgent reports
	// the body, one RUN_ERROR event.
	for name, tc := range map[string]struct {
		rn     run
		status int
		code   string
	}{"invalid session": {r.Invalid, 400, "VALIDATION_ERROR"}, "busy session": {r.Busy, 409, "SESSION_BUSY"}} {
		var ev event
		if tc.rn.Status != tc.status || json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(tc.rn.Payload, "data: "))), &ev) != nil ||
			ev.Type != "RUN_ERROR" || ev.Code != tc.code || ev.Message == "" {
			t.Errorf("%s: %+v, want %d with RUN_ERROR %s", name, tc.rn, tc.status, tc.code)
		}
	}
	if types(r.Held) != full {
		t.Fatalf("the held run: %+v", r.Held)
	}
}
