package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/protocol"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session/agentlog"
)

// agent is a started sandbox as berth talks to it: the handle, its
// protocol, and an HTTP transport that dials only this sandbox, so a pooled
// connection can never carry one session's call into another's agent.
type agent struct {
	h     sandbox.Handle
	proto *protocol.Adapter
	tr    *http.Transport
	out   *agentlog.Capture // the sandbox's output on its way to the log; nil: discarded
}

func newAgent(h sandbox.Handle, proto *protocol.Adapter, out *agentlog.Capture) *agent {
	return &agent{h: h, proto: proto, out: out, tr: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h.DialContext(ctx, "tcp", h.Addr())
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// roundTrip sends req, whose URL needs only its path and query, to the agent.
func (a *agent) roundTrip(req *http.Request) (*http.Response, error) {
	req.URL.Scheme, req.URL.Host = "http", a.h.Addr()
	return a.tr.RoundTrip(req)
}

// ping asks the agent for its health, within timeout, as its protocol
// tells: GET /ping, or (MCP, which has no /ping) a connection to its port,
// which counts as Healthy.
func (a *agent) ping(ctx context.Context, timeout time.Duration) (api.PingResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if a.proto.Health == protocol.HealthPort {
		c, err := a.h.DialContext(ctx, "tcp", a.h.Addr())
		if err != nil {
			return api.PingResponse{}, err
		}
		c.Close()
		return api.PingResponse{Status: api.PingHealthy}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.PathPing, nil)
	if err != nil {
		return api.PingResponse{}, err
	}
	resp, err := a.roundTrip(req)
	if err != nil {
		return api.PingResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return api.PingResponse{}, fmt.Errorf("read ping: %w", err)
	}
	return api.ParsePing(resp.StatusCode, body)
}

// stop stops the sandbox, drops its connections and waits for its last
// output to reach the log.
func (a *agent) stop(ctx context.Context, grace time.Duration) error {
	err := a.h.Stop(ctx, grace)
	a.closeIdle()
	endOutput(a.out)
	return err
}

// outputDrain bounds how long a stopped sandbox's output may take to reach
// its log; a stopped sandbox has no process left to hold the pipe open.
const outputDrain = 5 * time.Second

// endOutput waits for a sandbox's output, whose last writer is gone or
// going, to be in its log, and cuts it off after outputDrain.
func endOutput(out *agentlog.Capture) {
	if out == nil {
		return
	}
	out.Started()
	t := time.NewTimer(outputDrain)
	defer t.Stop()
	select {
	case <-out.Done():
	case <-t.C:
		out.Close()
	}
}

// moveLog moves the agent's log to path: a warm sandbox's log becomes its
// session's.
func (a *agent) moveLog(path string) error {
	if a.out == nil {
		return nil
	}
	return a.out.Rename(path)
}

// closeIdle drops the agent's idle keep-alive connections.
func (a *agent) closeIdle() { a.tr.CloseIdleConnections() }
