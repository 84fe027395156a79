package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-dev/berth/api"
)

// The control plane: berth serves a subset of bedrock-agentcore-control
// (runtimes, versions, endpoints) on the same paths and JSON shapes as AWS,
// so these types mirror that wire format and print as it with
// encoding/json. Runtimes are named by ID, ARN or name.

// The control plane's types are api's: the server decodes what this
// client encodes. Runtime and Endpoint name them as this client uses them.
type (
	Runtime       = api.AgentRuntime
	RuntimeInput  = api.RuntimeInput
	Endpoint      = api.Endpoint
	EndpointInput = api.EndpointInput
)

// ListOptions pages a listing. MaxResults is 1-100 (0: the server's
// default); NextToken comes from the previous page.
type ListOptions struct {
	MaxResults int
	NextToken  string
}

func (o ListOptions) query() string {
	q := url.Values{}
	if o.MaxResults > 0 {
		q.Set("maxResults", strconv.Itoa(o.MaxResults))
	}
	if o.NextToken != "" {
		q.Set("nextToken", o.NextToken)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func runtimePath(ref string) string { return api.PathRuntimes + url.PathEscape(ref) + "/" }

func endpointPath(ref, name string) string {
	return runtimePath(ref) + "runtime-endpoints/" + url.PathEscape(name) + "/"
}

// CreateRuntime calls CreateAgentRuntime. The answer carries the ID, ARN,
// version, status and creation time.
func (c *Client) CreateRuntime(ctx context.Context, in RuntimeInput) (*Runtime, error) {
	var out Runtime
	if err := c.do(ctx, http.MethodPut, api.PathRuntimes, in, &out); err != nil {
		return nil, err
	}
	out.AgentRuntimeName = in.AgentRuntimeName
	return &out, nil
}

// UpdateRuntime calls UpdateAgentRuntime: it makes the next version.
func (c *Client) UpdateRuntime(ctx context.Context, ref string, in RuntimeInput) (*Runtime, error) {
	in.AgentRuntimeName, in.Tags = "", nil
	var out Runtime
	if err := c.do(ctx, http.MethodPut, runtimePath(ref), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRuntime calls GetAgentRuntime; an empty version means the latest.
func (c *Client) GetRuntime(ctx context.Context, ref, version string) (*Runtime, error) {
	p := runtimePath(ref)
	if version != "" {
		p += "?version=" + url.QueryEscape(version)
	}
	var out Runtime
	if err := c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteRuntime calls DeleteAgentRuntime. berth ends the runtime's live
// sessions before it answers.
func (c *Client) DeleteRuntime(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, runtimePath(ref), nil, nil)
}

// ListRuntimes calls ListAgentRuntimes for one page.
func (c *Client) ListRuntimes(ctx context.Context, o ListOptions) ([]Runtime, string, error) {
	var out api.AgentRuntimeList
	if err := c.do(ctx, http.MethodPost, api.PathRuntimes+o.query(), nil, &out); err != nil {
		return nil, "", err
	}
	return out.AgentRuntimes, out.NextToken, nil
}

// ListRuntimeVersions calls ListAgentRuntimeVersions for one page, oldest
// version first.
func (c *Client) ListRuntimeVersions(ctx context.Context, ref string, o ListOptions) ([]Runtime, string, error) {
	var out api.AgentRuntimeList
	if err := c.do(ctx, http.MethodPost, runtimePath(ref)+"versions/"+o.query(), nil, &out); err != nil {
		return nil, "", err
	}
	return out.AgentRuntimes, out.NextToken, nil
}

// CreateEndpoint calls CreateAgentRuntimeEndpoint.
func (c *Client) CreateEndpoint(ctx context.Context, ref string, in EndpointInput) (*Endpoint, error) {
	var e Endpoint
	if err := c.do(ctx, http.MethodPut, runtimePath(ref)+"runtime-endpoints/", in, &e); err != nil {
		return nil, err
	}
	e.Name, e.EndpointName = e.EndpointName, ""
	e.LiveVersion = e.TargetVersion
	e.LastUpdatedAt = e.CreatedAt
	if in.Description != nil {
		e.Description = *in.Description
	}
	return &e, nil
}

// GetEndpoint calls GetAgentRuntimeEndpoint.
func (c *Client) GetEndpoint(ctx context.Context, ref, name string) (*Endpoint, error) {
	var out Endpoint
	if err := c.do(ctx, http.MethodGet, endpointPath(ref, name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateEndpoint calls UpdateAgentRuntimeEndpoint. Live sessions keep the
// version they started on.
func (c *Client) UpdateEndpoint(ctx context.Context, ref, name string, in EndpointInput) (*Endpoint, error) {
	in.Name = ""
	var out Endpoint
	if err := c.do(ctx, http.MethodPut, endpointPath(ref, name), in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteEndpoint calls DeleteAgentRuntimeEndpoint.
func (c *Client) DeleteEndpoint(ctx context.Context, ref, name string) error {
	return c.do(ctx, http.MethodDelete, endpointPath(ref, name), nil, nil)
}

// ListEndpoints calls ListAgentRuntimeEndpoints for one page.
func (c *Client) ListEndpoints(ctx context.Context, ref string, o ListOptions) ([]Endpoint, string, error) {
	var out api.EndpointList
	if err := c.do(ctx, http.MethodPost, runtimePath(ref)+"runtime-endpoints/"+o.query(), nil, &out); err != nil {
		return nil, "", err
	}
	return out.RuntimeEndpoints, out.NextToken, nil
}

// AllRuntimes pages through ListAgentRuntimes.
func (c *Client) AllRuntimes(ctx context.Context) ([]Runtime, error) {
	return all(func(tok string) ([]Runtime, string, error) {
		return c.ListRuntimes(ctx, ListOptions{NextToken: tok})
	})
}

// AllRuntimeVersions pages through ListAgentRuntimeVersions.
func (c *Client) AllRuntimeVersions(ctx context.Context, ref string) ([]Runtime, error) {
	return all(func(tok string) ([]Runtime, string, error) {
		return c.ListRuntimeVersions(ctx, ref, ListOptions{NextToken: tok})
	})
}

// AllEndpoints pages through ListAgentRuntimeEndpoints.
func (c *Client) AllEndpoints(ctx context.Context, ref string) ([]Endpoint, error) {
	return all(func(tok string) ([]Endpoint, string, error) {
		return c.ListEndpoints(ctx, ref, ListOptions{NextToken: tok})
	})
}

func all[T any](page func(token string) ([]T, string, error)) ([]T, error) {
	var out []T
	tok := ""
	for {
		items, next, err := page(tok)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		tok = next
	}
}
