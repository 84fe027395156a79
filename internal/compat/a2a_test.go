package compat_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
)

const a2aNodeDir = "examples/a2a-node"

// An A2A agent written with @a2a-js/sdk, run unmodified by berth as
// `node agent.js`, read by the SDK's own client given only the runtime's
// base URL: the card (its url pointing back through berth, from
// AGENTCORE_RUNTIME_URL), a message, and a streamed task, in one session.
// boto3's get_agent_card reads the same card; berth's own errors are
// JSON-RPC bodies with real statuses.
func TestA2AJavaScriptAgent(t *testing.T) {
	node := requireNode(t)
	dir := npmProject(t, a2aNodeDir, "agent.js", "client.mjs")
	b := startBerth(t, []config.Runtime{{Name: "a2aecho", Settings: registry.Settings{Command: []string{"node", "agent.js"},
		Workdir: dir, Protocol: registry.ProtocolA2A, Sandbox: registry.BackendProcess}}})
	arn := b.arn(t, "a2aecho")
	base := api.InvocationURL(b.d.URL(), arn) + "/"
	sid := newSessionID()

	cmd := exec.Command(node, "client.mjs", base, sid)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v: %s", err, out)
	}
	var r struct {
		Card struct {
			Name                string `json:"name"`
			SupportedInterfaces []struct {
				URL string `json:"url"`
			} `json:"supportedInterfaces"`
		} `json:"card"`
		Send struct {
			Kind, Reply, Error string
		} `json:"send"`
		Stream []struct {
			Kind  string `json:"kind"`
			State int    `json:"state"`
			Reply string `json:"reply"`
		} `json:"stream"`
		StreamError string `json:"streamError"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("report %s: %v", out, err)
	}
	if r.Card.Name != "berth echo agent" || len(r.Card.SupportedInterfaces) != 1 || r.Card.SupportedInterfaces[0].URL != base {
		t.Fatalf("card: %+v, want its url to be %s", r.Card, base)
	}
	if r.Send.Kind != "task" || !strings.HasPrefix(r.Send.Reply, "echo: hello (#1 in ") {
		t.Fatalf("message: %+v", r.Send)
	}
	instance := strings.TrimPrefix(r.Send.Reply, "echo: hello (#1 in ")
	var kinds []string
	var streamed string
	for _, ev := range r.Stream {
		kinds = append(kinds, ev.Kind)
		streamed += ev.Reply
	}
	if r.StreamError != "" || strings.Join(kinds, ",") != "task,statusUpdate,artifactUpdate,statusUpdate" ||
		streamed != "echo: stream me (#2 in "+instance {
		t.Fatalf("stream: %+v %s (want the same session's second message, in %s", r.Stream, r.StreamError, instance)
	}

	t.Run("boto3 get_agent_card", func(t *testing.T) {
		python := requireBoto3(t)
		script := `import boto3, json, sys
c = boto3.client("bedrock-agentcore", region_name="us-east-1", endpoint_url=sys.argv[1])
out = c.get_agent_card(agentRuntimeArn=sys.argv[2], runtimeSessionId=sys.argv[3])
print(json.dumps({"status": out["statusCode"], "card": out["agentCard"], "session": out.get("runtimeSessionId")}, default=str))`
		cmd := exec.Command(python, "-c", script, b.d.URL(), arn, sid)
		cmd.Env = clientEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("boto3: %v: %s", err, out)
		}
		var got struct {
			Status  int            `json:"status"`
			Card    map[string]any `json:"card"`
			Session string         `json:"session"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("boto3 said %s", out)
		}
		if got.Status != 200 || got.Card["name"] != "berth echo agent" || got.Session != sid {
			t.Fatalf("get_agent_card: %s", out)
		}
	})

	t.Run("berth's errors", func(t *testing.T) {
		req, _ := http.NewRequest("POST", api.InvocationURL(b.d.URL(), arn)+"/?qualifier=nosuch",
			strings.NewReader(`{"jsonrpc":"2.0","id":"a1","method":"SendMessage","params":{}}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var a struct {
			ID    string `json:"id"`
			Error struct{ Code int }
		}
		if json.Unmarshal(body, &a) != nil || resp.StatusCode != 404 || a.ID != "a1" || a.Error.Code != -32051 {
			t.Fatalf("unknown endpoint: %d %s, want 404 with JSON-RPC -32051", resp.StatusCode, body)
		}
	})
}
