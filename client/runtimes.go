package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The control plane: berth serves a subset of bedrock-agentcore-control
// (runtimes, versions, endpoints) on the same paths and JSON shapes as AWS,
// so these types mirror that wire format and print as it with
// encoding/json. Runtimes are named by ID, ARN or name.

// LocalBucket is the code.s3.bucket that makes code.s3.prefix a directory
// on the berth host.
const LocalBucket = "berth-local"

// Runtime statuses and endpoint statuses share these values.
const (
	StatusReady    = "READY"
	StatusDeleting = "DELETING"
)

// S3Location is where an artifact's code is. With Bucket LocalBucket,
// Prefix is an absolute directory on the berth host.
type S3Location struct {
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix"`
	VersionID string `json:"versionId,omitempty"`
}

// CodeLocation is AgentCore's code union; S3 is its only member.
type CodeLocation struct {
	S3 *S3Location `json:"s3,omitempty"`
}

// CodeConfiguration runs code: Runtime is PYTHON_3_10 to PYTHON_3_14 or
// NODE_22, EntryPoint one or two entries (a script, an executable, or a
// wrapper followed by a script).
type CodeConfiguration struct {
	Code       CodeLocation `json:"code"`
	Runtime    string       `json:"runtime"`
	EntryPoint []string     `json:"entryPoint"`
}

// ContainerConfiguration names a container image. berth refuses it for now.
type ContainerConfiguration struct {
	ContainerURI string `json:"containerUri"`
}

// Artifact is what a runtime runs: exactly one member is set.
type Artifact struct {
	Code      *CodeConfiguration      `json:"codeConfiguration,omitempty"`
	Container *ContainerConfiguration `json:"containerConfiguration,omitempty"`
}

// LocalCode is the artifact for an agent in dir on the berth host.
func LocalCode(dir, runtime string, entryPoint ...string) Artifact {
	return Artifact{Code: &CodeConfiguration{
		Code:       CodeLocation{S3: &S3Location{Bucket: LocalBucket, Prefix: dir}},
		Runtime:    runtime,
		EntryPoint: entryPoint,
	}}
}

// Lifecycle is in seconds; zero means "left out" (defaults 900 and 28800).
type Lifecycle struct {
	IdleRuntimeSessionTimeout int `json:"idleRuntimeSessionTimeout,omitempty"`
	MaxLifetime               int `json:"maxLifetime,omitempty"`
}

// ProtocolConfiguration names the agent's protocol: HTTP, MCP, A2A or AGUI.
type ProtocolConfiguration struct {
	ServerProtocol string `json:"serverProtocol"`
}

// RequestHeaderConfiguration lists headers forwarded to the agent.
type RequestHeaderConfiguration struct {
	RequestHeaderAllowlist []string `json:"requestHeaderAllowlist"`
}

// NetworkConfiguration is PUBLIC on berth.
type NetworkConfiguration struct {
	NetworkMode string `json:"networkMode"`
}

// WorkloadIdentity names the runtime's workload identity.
type WorkloadIdentity struct {
	WorkloadIdentityARN string `json:"workloadIdentityArn"`
}

// Runtime describes one version of an agent runtime. GetRuntime fills
// every field; listings fill the summary (ARN to LastUpdatedAt) and Source.
type Runtime struct {
	ARN           string    `json:"agentRuntimeArn"`
	ID            string    `json:"agentRuntimeId"`
	Name          string    `json:"agentRuntimeName,omitempty"`
	Version       string    `json:"agentRuntimeVersion"`
	Description   string    `json:"description,omitempty"`
	Status        string    `json:"status"`
	CreatedAt     time.Time `json:"createdAt,omitzero"`
	LastUpdatedAt time.Time `json:"lastUpdatedAt,omitzero"`

	RoleARN          string                      `json:"roleArn,omitempty"`
	Artifact         *Artifact                   `json:"agentRuntimeArtifact,omitempty"`
	Lifecycle        *Lifecycle                  `json:"lifecycleConfiguration,omitempty"`
	Protocol         *ProtocolConfiguration      `json:"protocolConfiguration,omitempty"`
	Env              map[string]string           `json:"environmentVariables,omitempty"`
	RequestHeaders   *RequestHeaderConfiguration `json:"requestHeaderConfiguration,omitempty"`
	Network          *NetworkConfiguration       `json:"networkConfiguration,omitempty"`
	WorkloadIdentity *WorkloadIdentity           `json:"workloadIdentityDetails,omitempty"`

	// berth's own: "config" for runtimes the config file declares (the
	// API cannot change those), "api" for the rest; and what berth runs.
	Source  string   `json:"berthSource,omitempty"`
	Command []string `json:"berthCommand,omitempty"`
	Workdir string   `json:"berthWorkdir,omitempty"`
}

// RuntimeInput creates or updates a runtime. An update replaces the
// version's configuration with this one (Description stays when empty);
// Name and Tags are read on create only.
type RuntimeInput struct {
	Name           string                      `json:"agentRuntimeName,omitempty"`
	Artifact       Artifact                    `json:"agentRuntimeArtifact"`
	RoleARN        string                      `json:"roleArn,omitempty"`
	Network        *NetworkConfiguration       `json:"networkConfiguration,omitempty"`
	Description    string                      `json:"description,omitempty"`
	Protocol       *ProtocolConfiguration      `json:"protocolConfiguration,omitempty"`
	Lifecycle      *Lifecycle                  `json:"lifecycleConfiguration,omitempty"`
	RequestHeaders *RequestHeaderConfiguration `json:"requestHeaderConfiguration,omitempty"`
	Env            map[string]string           `json:"environmentVariables,omitempty"`
	// Tags may carry berth's own settings: "berth:sandbox" (auto, process,
	// linux) and "berth:network" (none, host, egress).
	Tags        map[string]string `json:"tags,omitempty"`
	ClientToken string            `json:"clientToken,omitempty"`
}

// Endpoint is a named qualifier of a runtime. DEFAULT follows the latest
// version; the others are pinned.
type Endpoint struct {
	Name          string    `json:"name"`
	ID            string    `json:"id,omitempty"`
	ARN           string    `json:"agentRuntimeEndpointArn"`
	RuntimeARN    string    `json:"agentRuntimeArn"`
	RuntimeID     string    `json:"agentRuntimeId,omitempty"`
	LiveVersion   string    `json:"liveVersion,omitempty"`
	TargetVersion string    `json:"targetVersion,omitempty"`
	Status        string    `json:"status"`
	Description   string    `json:"description,omitempty"`
	CreatedAt     time.Time `json:"createdAt,omitzero"`
	LastUpdatedAt time.Time `json:"lastUpdatedAt,omitzero"`
}

// EndpointInput creates or updates an endpoint. An empty Version means the
// latest on create and "unchanged" on update. Name is read on create only.
type EndpointInput struct {
	Name        string `json:"name,omitempty"`
	Version     string `json:"agentRuntimeVersion,omitempty"`
	Description string `json:"description,omitempty"`
}

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

func runtimePath(ref string) string { return "/runtimes/" + url.PathEscape(ref) + "/" }

func endpointPath(ref, name string) string {
	return runtimePath(ref) + "runtime-endpoints/" + url.PathEscape(name) + "/"
}

// CreateRuntime calls CreateAgentRuntime. The answer carries the ID, ARN,
// version, status and creation time.
func (c *Client) CreateRuntime(ctx context.Context, in RuntimeInput) (*Runtime, error) {
	var out Runtime
	if err := c.do(ctx, http.MethodPut, "/runtimes/", in, &out); err != nil {
		return nil, err
	}
	out.Name = in.Name
	return &out, nil
}

// UpdateRuntime calls UpdateAgentRuntime: it makes the next version.
func (c *Client) UpdateRuntime(ctx context.Context, ref string, in RuntimeInput) (*Runtime, error) {
	in.Name, in.Tags = "", nil
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
	var out struct {
		AgentRuntimes []Runtime `json:"agentRuntimes"`
		NextToken     string    `json:"nextToken"`
	}
	if err := c.do(ctx, http.MethodPost, "/runtimes/"+o.query(), nil, &out); err != nil {
		return nil, "", err
	}
	return out.AgentRuntimes, out.NextToken, nil
}

// ListRuntimeVersions calls ListAgentRuntimeVersions for one page, oldest
// version first.
func (c *Client) ListRuntimeVersions(ctx context.Context, ref string, o ListOptions) ([]Runtime, string, error) {
	var out struct {
		AgentRuntimes []Runtime `json:"agentRuntimes"`
		NextToken     string    `json:"nextToken"`
	}
	if err := c.do(ctx, http.MethodPost, runtimePath(ref)+"versions/"+o.query(), nil, &out); err != nil {
		return nil, "", err
	}
	return out.AgentRuntimes, out.NextToken, nil
}

// CreateEndpoint calls CreateAgentRuntimeEndpoint.
func (c *Client) CreateEndpoint(ctx context.Context, ref string, in EndpointInput) (*Endpoint, error) {
	var out struct {
		Endpoint
		EndpointName string `json:"endpointName"`
	}
	if err := c.do(ctx, http.MethodPut, runtimePath(ref)+"runtime-endpoints/", in, &out); err != nil {
		return nil, err
	}
	e := out.Endpoint
	e.Name = out.EndpointName
	e.LiveVersion = e.TargetVersion
	e.LastUpdatedAt = e.CreatedAt
	e.Description = in.Description
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
	var out struct {
		RuntimeEndpoints []Endpoint `json:"runtimeEndpoints"`
		NextToken        string     `json:"nextToken"`
	}
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
