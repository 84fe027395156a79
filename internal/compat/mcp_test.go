package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const mcpNodeDir = "examples/mcp-node"

// The official Go MCP client drives an MCP server written with the
// official TypeScript SDK (@modelcontextprotocol/sdk), run unmodified by
// berth as `node server.js`, stateful and stateless, on both of the Go
// client's protocol versions (2026-07-28 falls back to initialize here).
// The client knows only berth's invocation URL.
func TestMCPTypeScriptServer(t *testing.T) {
	requireNode(t)
	dir := npmProject(t, mcpNodeDir, "server.js")
	gate := t.TempDir()
	rt := func(name string, env map[string]string) config.Runtime {
		env["MCP_GATE_DIR"] = gate
		return config.Runtime{Name: name, Settings: registry.Settings{Command: []string{"node", "server.js"}, Workdir: dir,
			Protocol: registry.ProtocolMCP, Sandbox: registry.BackendProcess, Env: env}}
	}
	b := startBerth(t, []config.Runtime{
		rt("tsstateful", map[string]string{}),
		rt("tsstateless", map[string]string{"MCP_STATELESS": "1"}),
	})
	connect := func(t *testing.T, runtime, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
		t.Helper()
		client := mcp.NewClient(&mcp.Implementation{Name: "berth-compat", Version: "1"}, opts)
		cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: api.InvocationURL(b.d.URL(), b.arn(t, runtime)),
			MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	count := func(t *testing.T, cs *mcp.ClientSession) (int, string) {
		t.Helper()
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "count"})
		if err != nil || res.IsError {
			t.Fatalf("count: %v %+v", err, res)
		}
		var out struct {
			Count    int    `json:"count"`
			Instance string `json:"instance"`
		}
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("count answered %s", raw)
		}
		return out.Count, out.Instance
	}
	for _, runtime := range []string{"tsstateful", "tsstateless"} {
		for _, version := range []string{"2025-11-25", ""} {
			t.Run(fmt.Sprintf("%s/%q", runtime, version), func(t *testing.T) {
				var mu sync.Mutex
				var seen []string
				a := connect(t, runtime, version, &mcp.ClientOptions{
					ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
						mu.Lock()
						seen = append(seen, req.Params.Message)
						mu.Unlock()
						os.WriteFile(filepath.Join(gate, fmt.Sprint(req.Params.Progress)), nil, 0o644)
					},
				})
				tools, err := a.ListTools(t.Context(), nil)
				if err != nil || len(tools.Tools) != 4 {
					t.Fatalf("tools/list: %v %+v", err, tools)
				}
				res, err := a.CallTool(t.Context(), &mcp.CallToolParams{Name: "add", Arguments: map[string]int{"a": 40, "b": 2}})
				if raw, _ := json.Marshal(res.StructuredContent); err != nil || string(raw) != `{"sum":42}` {
					t.Fatalf("add: %v %s", err, raw)
				}
				// Streaming: each step waits until the client saw the last.
				p := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]int{"n": 2}}
				p.SetProgressToken("ts")
				res, err = a.CallTool(t.Context(), p)
				if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "liftoff" {
					t.Fatalf("countdown: %v %+v", err, res)
				}
				mu.Lock()
				if strings.Join(seen, "|") != "step 1 of 2|step 2 of 2" {
					t.Fatalf("progress seen: %q", seen)
				}
				mu.Unlock()
				for i := 1; i <= 2; i++ {
					os.Remove(filepath.Join(gate, fmt.Sprint(i)))
				}
				// Isolation and stickiness.
				c := connect(t, runtime, version, nil)
				n1, ia := count(t, a)
				n2, ia2 := count(t, a)
				m1, ic := count(t, c)
				if n1 != 1 || n2 != 2 || m1 != 1 || ia != ia2 || ia == ic {
					t.Fatalf("a counted %d,%d in %s,%s; c %d in %s", n1, n2, ia, ia2, m1, ic)
				}
			})
		}
	}
	t.Run("crash mid-call", func(t *testing.T) {
		cs := connect(t, "tsstateless", "2025-11-25", &mcp.ClientOptions{
			ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {},
		})
		p := &mcp.CallToolParams{Name: "crash"}
		p.SetProgressToken("crash")
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := cs.CallTool(ctx, p)
		var werr *jsonrpc.Error
		if !errors.As(err, &werr) || werr.Code != -32010 {
			t.Fatalf("crash mid-call: %v, want JSON-RPC -32010", err)
		}
	})
}
