package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// runMCPDemo is `berth demo --protocol mcp`: examples/mcp, an MCP server
// built with the official Go SDK, hosted by an embedded berth as AgentCore
// hosts MCP servers, and driven by the same SDK's client, which knows only
// the runtime's invocation URL.
func runMCPDemo(ctx context.Context, out, errOut io.Writer, opts demoOptions) error {
	dir, err := os.MkdirTemp("", "berth-demo-")
	if err != nil {
		return fmt.Errorf("create demo dir: %w", err)
	}
	if !opts.keep {
		defer os.RemoveAll(dir)
	}
	sp := startSpinner(errOut, "building the example MCP server")
	agent, err := buildAgent(ctx, dir, "examples/mcp", "mcp-server")
	sp.stop()
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Runtimes = []config.Runtime{{Name: "mcp", Settings: registry.Settings{Command: []string{agent}, Protocol: registry.ProtocolMCP}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("BERTH_DEMO_LOG") != "" {
		log = slog.New(slog.NewTextHandler(errOut, nil))
	}
	sp = startSpinner(errOut, "starting berth")
	d, err := daemon.Start(ctx, cfg, log)
	sp.stop()
	if err != nil {
		return fmt.Errorf("start berth: %w", err)
	}
	defer d.Close(context.WithoutCancel(ctx))
	url := api.InvocationURL(d.URL(), d.Runtimes()[0].ARN)
	fmt.Fprintf(out, "berth is serving on %s (sandbox: %s)\nMCP endpoint: %s\n\n", d.URL(), defaultBackendName(d), url)

	dm := &demo{ctx: ctx, out: out}
	// The client hands notifications to this handler on its own
	// goroutines: the last may land just after the call returns.
	progress := make(chan string, 16)
	connect := func() (*mcp.ClientSession, error) {
		client := mcp.NewClient(&mcp.Implementation{Name: "berth-demo", Version: version}, &mcp.ClientOptions{
			ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
				select {
				case progress <- req.Params.Message:
				default:
				}
			},
		})
		return client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, nil)
	}
	fmt.Fprintln(out, "1. Connect with the Go MCP SDK's client and list the server's tools")
	a, err := connect()
	if err != nil {
		dm.check(false, "connect", err)
		return fmt.Errorf("%d demo checks failed", dm.failed)
	}
	defer a.Close()
	dm.check(a.ID() != "", "berth returned an Mcp-Session-Id", a.ID())
	tools, err := a.ListTools(ctx, nil)
	var names []string
	if err == nil {
		for _, t := range tools.Tools {
			names = append(names, t.Name)
		}
	}
	dm.check(err == nil && len(names) == 4, "tools/list", strings.Join(names, ", "))

	fmt.Fprintln(out, "2. Call a tool")
	res, err := a.CallTool(ctx, &mcp.CallToolParams{Name: "add", Arguments: map[string]int{"a": 2, "b": 40}})
	sum := structured(res)
	dm.check(err == nil && sum == `{"sum":42}`, "add(2, 40)", sum)

	fmt.Fprintln(out, "3. A tool that streams progress before its answer")
	p := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]int{"n": 3}}
	p.SetProgressToken("demo")
	res, err = a.CallTool(ctx, p)
	var steps []string
	wait := time.After(5 * time.Second)
collect:
	for len(steps) < 3 {
		select {
		case m := <-progress:
			steps = append(steps, m)
		case <-wait:
			break collect
		}
	}
	slices.Sort(steps) // their handler runs concurrently
	got := strings.Join(steps, "; ")
	dm.check(err == nil && len(res.Content) == 1 && got == "step 1 of 3; step 2 of 3; step 3 of 3", "countdown(3)", got)

	fmt.Fprintln(out, "4. Each MCP session has its own sandbox")
	n1, i1 := countCall(ctx, a)
	n2, _ := countCall(ctx, a)
	dm.check(n1 == 1 && n2 == 2, "the first client's session keeps its state", "count %d, then %d", n1, n2)
	b, err := connect()
	if err != nil {
		dm.check(false, "connect a second client", err)
	} else {
		defer b.Close()
		m1, i2 := countCall(ctx, b)
		dm.check(m1 == 1 && i1 != i2 && b.ID() != a.ID(), "a second client gets a fresh server", "count %d, session %s", m1, b.ID())
	}
	if dm.failed > 0 {
		return fmt.Errorf("%d demo checks failed", dm.failed)
	}
	fmt.Fprintln(out, "\nevery step held.")
	return nil
}

// structured is a tool result's structured content as JSON.
func structured(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	b, _ := json.Marshal(res.StructuredContent)
	return string(b)
}

// countCall calls examples/mcp's count tool: the session's count, and the
// name of the server process that counted.
func countCall(ctx context.Context, cs *mcp.ClientSession) (int, string) {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "count"})
	if err != nil {
		return 0, ""
	}
	var out struct {
		Count    int    `json:"count"`
		Instance string `json:"instance"`
	}
	json.Unmarshal([]byte(structured(res)), &out)
	return out.Count, out.Instance
}
