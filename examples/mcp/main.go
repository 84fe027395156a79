// Command mcp is an MCP server built with the official Go SDK
// (github.com/modelcontextprotocol/go-sdk), served the way AgentCore hosts
// MCP servers: streamable HTTP at POST /mcp on port 8000. Nothing in it
// knows about berth; berth starts one per session and routes each
// InvokeAgentRuntime call to it.
//
// Run it alone (PORT defaults to 8000; BERTH_AGENT_HOST to 0.0.0.0):
//
//	go run ./examples/mcp
//
// Its tools:
//
//   - add: the sum of a and b.
//   - count: how many times count was called in this process, so in this
//     session under berth, and a random name of the process.
//   - countdown: n progress notifications, then "liftoff". With MCP_GATE_DIR
//     set, it waits after notification i for the file MCP_GATE_DIR/<i>,
//     which lets a test prove each notification arrived before the result.
//   - crash: a progress notification, then the process exits mid-call.
//
// MCP_STATELESS=1 serves statelessly (no Mcp-Session-Id of its own), as
// AgentCore recommends; otherwise the server mints a session ID on its
// first call and holds the session in memory.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type addIn struct {
	A int `json:"a" jsonschema:"the first addend"`
	B int `json:"b" jsonschema:"the second addend"`
}

type sumOut struct {
	Sum int `json:"sum"`
}

type countOut struct {
	Count    int64  `json:"count"`
	Instance string `json:"instance"`
}

type countdownIn struct {
	N int `json:"n" jsonschema:"how many progress notifications to send"`
}

// calls is this process's memory: under berth, one session's.
var calls atomic.Int64

// instance names this process (PIDs repeat across PID namespaces).
var instance = rand.Text()

func newServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "berth-example-mcp", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Add two integers."},
		func(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, sumOut, error) {
			return nil, sumOut{Sum: in.A + in.B}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "count", Description: "Count the calls this session made."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, countOut, error) {
			return nil, countOut{Count: calls.Add(1), Instance: instance}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "countdown", Description: "Report progress n times, then lift off."},
		func(ctx context.Context, req *mcp.CallToolRequest, in countdownIn) (*mcp.CallToolResult, any, error) {
			for i := 1; i <= in.N; i++ {
				if err := progress(ctx, req, i, in.N); err != nil {
					return nil, nil, err
				}
				if err := gate(ctx, strconv.Itoa(i)); err != nil {
					return nil, nil, err
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "liftoff"}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "crash", Description: "Start answering, then die."},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			if err := progress(ctx, req, 1, 2); err != nil {
				return nil, nil, err
			}
			os.Exit(3)
			return nil, nil, nil
		})
	return s
}

// progress notifies the caller of step i of n, if it asked for progress.
func progress(ctx context.Context, req *mcp.CallToolRequest, i, n int) error {
	tok := req.Params.GetProgressToken()
	if tok == nil {
		return nil
	}
	return req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
		ProgressToken: tok, Progress: float64(i), Total: float64(n), Message: fmt.Sprintf("step %d of %d", i, n)})
}

// gate waits for MCP_GATE_DIR/name to exist, when MCP_GATE_DIR is set.
func gate(ctx context.Context, name string) error {
	dir := os.Getenv("MCP_GATE_DIR")
	if dir == "" {
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("mcp server stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	server := newServer()
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: os.Getenv("MCP_STATELESS") == "1", Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/mcp", handler)

	host, port := os.Getenv("BERTH_AGENT_HOST"), os.Getenv("PORT")
	if host == "" {
		host = "0.0.0.0"
	}
	if port == "" {
		port = "8000"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return <-served
}
