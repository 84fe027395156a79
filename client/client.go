// Package client is the Go client for a berth server: the AgentCore data
// plane calls and berth's own API. It imports only the standard library
// and api, so tools can embed it without the daemon; it sends requests
// unsigned, and a caller whose berth authenticates gives it an HTTPClient
// whose transport signs them (cmd/berth signs with SigV4 from the AWS
// credential chain) or adds a bearer token.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/berth-dev/berth/api"
)

// DefaultEndpoint is where berth serve listens by default.
const DefaultEndpoint = "http://127.0.0.1:8787"

// Client talks to one berth server. The zero value uses BERTH_ENDPOINT or
// DefaultEndpoint and http.DefaultClient.
type Client struct {
	// Endpoint is the server's base URL.
	Endpoint string
	// HTTPClient sends the requests. Its Transport is where requests get
	// their credentials: a RoundTripper that signs each one with SigV4, or
	// sets Authorization: Bearer for a runtime with a JWT authorizer.
	HTTPClient *http.Client
}

func (c *Client) endpoint() string {
	switch {
	case c.Endpoint != "":
		return strings.TrimRight(c.Endpoint, "/")
	case os.Getenv("BERTH_ENDPOINT") != "":
		return strings.TrimRight(os.Getenv("BERTH_ENDPOINT"), "/")
	}
	return DefaultEndpoint
}

func (c *Client) http() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// InvokeInput is one InvokeAgentRuntime call.
type InvokeInput struct {
	// Runtime is a runtime name, ID or ARN.
	Runtime   string
	Qualifier string
	// SessionID continues a session; empty starts a new one.
	SessionID   string
	UserID      string
	ContentType string
	Accept      string
	Headers     http.Header
	Payload     io.Reader
}

// InvokeOutput is the agent's answer. The caller must close Body.
type InvokeOutput struct {
	SessionID   string
	ContentType string
	StatusCode  int
	Body        io.ReadCloser
}

// NewSessionID returns a random session ID AgentCore accepts (33+ chars).
func NewSessionID() string {
	var b [18]byte
	rand.Read(b[:])
	return "berth-" + hex.EncodeToString(b[:])
}

func (c *Client) runtimeURL(runtime, op, qualifier string) string {
	u := c.endpoint() + "/runtimes/" + url.PathEscape(runtime) + "/" + op
	if qualifier != "" {
		u += "?qualifier=" + url.QueryEscape(qualifier)
	}
	return u
}

// Invoke calls InvokeAgentRuntime. The response body streams.
func (c *Client) Invoke(ctx context.Context, in InvokeInput) (*InvokeOutput, error) {
	if in.SessionID == "" {
		in.SessionID = NewSessionID()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.runtimeURL(in.Runtime, "invocations", in.Qualifier), in.Payload)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, v := range in.Headers {
		req.Header[k] = v
	}
	req.Header.Set(api.HeaderSessionID, in.SessionID)
	if in.UserID != "" {
		req.Header.Set(api.HeaderUserID, in.UserID)
	}
	req.Header.Set("Content-Type", or(in.ContentType, "application/json"))
	req.Header.Set("Accept", or(in.Accept, "text/event-stream, application/json"))
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return &InvokeOutput{
		SessionID:   or(resp.Header.Get(api.HeaderSessionID), in.SessionID),
		ContentType: resp.Header.Get("Content-Type"),
		StatusCode:  resp.StatusCode,
		Body:        resp.Body,
	}, nil
}

// CommandInput is one InvokeAgentRuntimeCommand.
type CommandInput struct {
	Runtime, Qualifier string
	// SessionID names the session; empty starts a new one.
	SessionID string
	// Command runs as bash -c Command in the session's sandbox.
	Command string
	// Timeout in seconds; 0 leaves berth's default (api.DefaultCommandTimeout).
	Timeout int
}

// CommandOutput is a command's answer. Body is an AWS event stream
// (api.ContentTypeEventStream) of api.CommandChunk events; read it with an
// event-stream decoder (the AWS SDK's aws/protocol/eventstream) and close it.
type CommandOutput struct {
	SessionID string
	Body      io.ReadCloser
}

// Command calls InvokeAgentRuntimeCommand.
func (c *Client) Command(ctx context.Context, in CommandInput) (*CommandOutput, error) {
	if in.SessionID == "" {
		in.SessionID = NewSessionID()
	}
	body := api.CommandRequest{Command: in.Command}
	if in.Timeout != 0 {
		body.Timeout = &in.Timeout
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.runtimeURL(in.Runtime, api.PathCommands, in.Qualifier), bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set(api.HeaderSessionID, in.SessionID)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", api.ContentTypeEventStream)
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return &CommandOutput{SessionID: or(resp.Header.Get(api.HeaderSessionID), in.SessionID), Body: resp.Body}, nil
}

// StopSession calls StopRuntimeSession.
func (c *Client) StopSession(ctx context.Context, runtime, qualifier, sessionID string) error {
	body, _ := json.Marshal(map[string]string{"clientToken": NewSessionID()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.runtimeURL(runtime, "stopruntimesession", qualifier), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set(api.HeaderSessionID, sessionID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("stop session: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	return nil
}

// do sends a JSON request to berth's own API and decodes a JSON answer.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint()+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// decodeError turns an AgentCore error response into *api.Error.
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var b struct {
		Message string `json:"message"`
		Type    string `json:"__type"`
	}
	json.Unmarshal(data, &b)
	t := resp.Header.Get(api.HeaderErrorType)
	if t == "" {
		t = b.Type
	}
	if b.Message == "" {
		b.Message = strings.TrimSpace(string(data))
	}
	return &api.Error{Type: api.SanitizeErrorType(t), Message: b.Message,
		StatusCode: resp.StatusCode, RequestID: resp.Header.Get(api.HeaderAWSRequestID)}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
