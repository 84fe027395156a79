package api

import (
	"encoding/json"
	"time"
)

// The bedrock-agentcore-control subset berth serves: runtimes, versions and
// endpoints, in AgentCore's restJson1 member names. The server decodes and
// the Go client encodes these same types. Members berth adds are named
// berth*; the AWS SDKs neither send nor read them.

// Control-plane paths (note AgentCore's trailing slashes).
const (
	PathRuntimes = "/runtimes/"
)

// LocalBucket is the code.s3.bucket that makes code.s3.prefix a directory
// (or .zip file) on the berth host instead of an S3 location.
const LocalBucket = "berth-local"

// Runtime and endpoint statuses (AgentCore's enum).
const (
	StatusCreating     = "CREATING"
	StatusCreateFailed = "CREATE_FAILED"
	StatusUpdating     = "UPDATING"
	StatusUpdateFailed = "UPDATE_FAILED"
	StatusReady        = "READY"
	StatusDeleting     = "DELETING"
)

// S3Location is where an artifact's code is. With Bucket LocalBucket,
// Prefix is an absolute path on the berth host.
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
	Code       *CodeLocation `json:"code,omitempty"`
	Runtime    string        `json:"runtime"`
	EntryPoint []string      `json:"entryPoint"`
}

// ContainerConfiguration names a container image.
type ContainerConfiguration struct {
	ContainerURI string `json:"containerUri"`
}

// Artifact is what a runtime runs: exactly one member is set.
type Artifact struct {
	Container *ContainerConfiguration `json:"containerConfiguration,omitempty"`
	Code      *CodeConfiguration      `json:"codeConfiguration,omitempty"`
}

// LocalCode is the artifact for an agent at path on the berth host.
func LocalCode(path, runtime string, entryPoint ...string) *Artifact {
	return &Artifact{Code: &CodeConfiguration{
		Code:       &CodeLocation{S3: &S3Location{Bucket: LocalBucket, Prefix: path}},
		Runtime:    runtime,
		EntryPoint: entryPoint,
	}}
}

// Lifecycle is in seconds; a nil member is left out (defaults 900 and 28800).
type Lifecycle struct {
	IdleRuntimeSessionTimeout *int `json:"idleRuntimeSessionTimeout,omitempty"`
	MaxLifetime               *int `json:"maxLifetime,omitempty"`
}

// ProtocolConfiguration names the agent's protocol: HTTP, MCP, A2A or AGUI.
type ProtocolConfiguration struct {
	ServerProtocol string  `json:"serverProtocol"`
	Port           *int    `json:"port,omitempty"`
	Path           *string `json:"path,omitempty"`
}

// RequestHeaderConfiguration lists the request headers forwarded to the agent.
type RequestHeaderConfiguration struct {
	RequestHeaderAllowlist []string `json:"requestHeaderAllowlist"`
}

// NetworkConfiguration is PUBLIC on berth.
type NetworkConfiguration struct {
	NetworkMode       string          `json:"networkMode"`
	NetworkModeConfig json.RawMessage `json:"networkModeConfig,omitempty"`
}

// WorkloadIdentity names the runtime's workload identity.
type WorkloadIdentity struct {
	WorkloadIdentityARN string `json:"workloadIdentityArn"`
}

// FilesystemConfiguration is one of a runtime's filesystems: exactly one
// member is set. berth serves sessionStorage; the S3 Files and EFS access
// points need AWS and are refused.
type FilesystemConfiguration struct {
	SessionStorage     *SessionStorage `json:"sessionStorage,omitempty"`
	S3FilesAccessPoint json.RawMessage `json:"s3FilesAccessPoint,omitempty"`
	EfsAccessPoint     json.RawMessage `json:"efsAccessPoint,omitempty"`
}

// SessionStorage mounts each session's own persistent filesystem at
// MountPath (one level under /mnt).
type SessionStorage struct {
	MountPath string `json:"mountPath"`
}

// AuthorizerConfiguration is AgentCore's inbound authorizer union: a
// runtime with a CustomJWTAuthorizer takes bearer tokens instead of SigV4.
type AuthorizerConfiguration struct {
	CustomJWTAuthorizer *CustomJWTAuthorizer `json:"customJWTAuthorizer,omitempty"`
}

// CustomJWTAuthorizer checks a caller's JWT: its issuer and keys come from
// DiscoveryURL, and every check given must pass.
type CustomJWTAuthorizer struct {
	DiscoveryURL    string                  `json:"discoveryUrl"`
	AllowedAudience []string                `json:"allowedAudience,omitempty"`
	AllowedClients  []string                `json:"allowedClients,omitempty"`
	AllowedScopes   []string                `json:"allowedScopes,omitempty"`
	CustomClaims    []CustomClaimValidation `json:"customClaims,omitempty"`

	// AgentCore members berth refuses, never half-serves.
	AdvertisedScopeMapping       json.RawMessage `json:"advertisedScopeMapping,omitempty"`
	AllowedWorkloadConfiguration json.RawMessage `json:"allowedWorkloadConfiguration,omitempty"`
	PrivateEndpoint              json.RawMessage `json:"privateEndpoint,omitempty"`
	PrivateEndpointOverrides     json.RawMessage `json:"privateEndpointOverrides,omitempty"`
}

// CustomClaimValidation checks one claim of the token.
type CustomClaimValidation struct {
	InboundTokenClaimName      string                     `json:"inboundTokenClaimName"`
	InboundTokenClaimValueType string                     `json:"inboundTokenClaimValueType"`
	AuthorizingClaimMatchValue AuthorizingClaimMatchValue `json:"authorizingClaimMatchValue"`
}

// AuthorizingClaimMatchValue is how a claim must match: EQUALS (a STRING
// claim, MatchValueString), CONTAINS (a STRING_ARRAY claim holding
// MatchValueString) or CONTAINS_ANY (a STRING_ARRAY claim holding one of
// MatchValueStringList).
type AuthorizingClaimMatchValue struct {
	ClaimMatchValue    ClaimMatchValue `json:"claimMatchValue"`
	ClaimMatchOperator string          `json:"claimMatchOperator"`
}

// ClaimMatchValue is the value or values a claim is matched against.
type ClaimMatchValue struct {
	MatchValueString     *string  `json:"matchValueString,omitempty"`
	MatchValueStringList []string `json:"matchValueStringList,omitempty"`
}

// BerthSettings are berth's own runtime settings beyond AgentCore's
// members. Sandbox, Network and Mounts are the operator's alone: GetAgentRuntime
// shows them, and a control-plane request that sets them is refused.
type BerthSettings struct {
	Limits   *Limits        `json:"limits,omitempty"`
	Sessions *SessionPolicy `json:"sessions,omitempty"`
	Sandbox  string         `json:"sandbox,omitempty"`
	Network  string         `json:"network,omitempty"`
	Mounts   []Mount        `json:"mounts,omitempty"`
	// Invokers are the principals (credentials-file profiles) that may
	// invoke the runtime; empty means every known principal. A runtime
	// with a JWT authorizer has none: its authorizer decides.
	Invokers []string `json:"invokers,omitempty"`
	// Commands false refuses InvokeAgentRuntimeCommand in the runtime's
	// sessions; left out, commands are allowed.
	Commands *bool `json:"commands,omitempty"`
}

// Limits cap each of a runtime's sandboxes. Zero means the operator's default.
type Limits struct {
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// CPU is in cores (0.5, 2).
	CPU       float64 `json:"cpu,omitempty"`
	Pids      int64   `json:"pids,omitempty"`
	DiskBytes int64   `json:"diskBytes,omitempty"`
}

// SessionPolicy is berth's opt-in session behaviour beyond AgentCore.
type SessionPolicy struct {
	// Concurrency is allow (default), reject or queue.
	Concurrency         string  `json:"concurrency,omitempty"`
	QueueSize           int     `json:"queueSize,omitempty"`
	QueueTimeoutSeconds float64 `json:"queueTimeoutSeconds,omitempty"`
	MaxSessions         int     `json:"maxSessions,omitempty"`
	BindUser            bool    `json:"bindUser,omitempty"`
	MaxSessionsPerUser  int     `json:"maxSessionsPerUser,omitempty"`
	// Durability "state" keeps the agent's saved state across sandboxes.
	Durability          string  `json:"durability,omitempty"`
	StateMaxBytes       int64   `json:"stateMaxBytes,omitempty"`
	SuspendAfterSeconds float64 `json:"suspendAfterSeconds,omitempty"`
	WarmPool            int     `json:"warmPool,omitempty"`
}

// Mount is a host directory bound into each sandbox.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// RuntimeInput is CreateAgentRuntime's and UpdateAgentRuntime's body. An
// update replaces the version's settings (Description stays when left
// out); AgentRuntimeName and Tags are read on create only.
type RuntimeInput struct {
	AgentRuntimeName           string                      `json:"agentRuntimeName,omitempty"`
	AgentRuntimeArtifact       *Artifact                   `json:"agentRuntimeArtifact,omitempty"`
	RoleArn                    string                      `json:"roleArn,omitempty"`
	NetworkConfiguration       *NetworkConfiguration       `json:"networkConfiguration,omitempty"`
	ClientToken                *string                     `json:"clientToken,omitempty"`
	Description                *string                     `json:"description,omitempty"`
	RequestHeaderConfiguration *RequestHeaderConfiguration `json:"requestHeaderConfiguration,omitempty"`
	ProtocolConfiguration      *ProtocolConfiguration      `json:"protocolConfiguration,omitempty"`
	LifecycleConfiguration     *Lifecycle                  `json:"lifecycleConfiguration,omitempty"`
	EnvironmentVariables       map[string]string           `json:"environmentVariables,omitempty"`
	Tags                       map[string]string           `json:"tags,omitempty"`
	BerthSettings              *BerthSettings              `json:"berthSettings,omitempty"`
	FilesystemConfigurations   []FilesystemConfiguration   `json:"filesystemConfigurations,omitempty"`
	AuthorizerConfiguration    *AuthorizerConfiguration    `json:"authorizerConfiguration,omitempty"`

	// platformVersion (V1 or V2) and metadataConfiguration tune AWS's
	// microVMs: berth checks and accepts them, and they change nothing.
	PlatformVersion       string          `json:"platformVersion,omitempty"`
	MetadataConfiguration json.RawMessage `json:"metadataConfiguration,omitempty"`

	// AgentCore features berth refuses: a request that uses one is refused
	// with the member named, never half-served.
	HooksConfiguration            json.RawMessage `json:"hooksConfiguration,omitempty"`
	CapacityProviderConfiguration json.RawMessage `json:"capacityProviderConfiguration,omitempty"`
	AllowedPorts                  json.RawMessage `json:"allowedPorts,omitempty"`
}

// AgentRuntime is one version of a runtime: GetAgentRuntime fills every
// member; listings fill the summary (ARN to Status) and BerthSource.
type AgentRuntime struct {
	// Members some operation's output requires (botocore's model) are
	// always sent, empty if need be.
	AgentRuntimeArn     string    `json:"agentRuntimeArn"`
	AgentRuntimeID      string    `json:"agentRuntimeId"`
	AgentRuntimeName    string    `json:"agentRuntimeName"`
	AgentRuntimeVersion string    `json:"agentRuntimeVersion"`
	Description         string    `json:"description"`
	Status              string    `json:"status"`
	CreatedAt           time.Time `json:"createdAt,omitzero"`
	LastUpdatedAt       time.Time `json:"lastUpdatedAt,omitzero"`

	RoleArn                    string                      `json:"roleArn"`
	AgentRuntimeArtifact       *Artifact                   `json:"agentRuntimeArtifact,omitempty"`
	NetworkConfiguration       *NetworkConfiguration       `json:"networkConfiguration,omitempty"`
	LifecycleConfiguration     *Lifecycle                  `json:"lifecycleConfiguration,omitempty"`
	ProtocolConfiguration      *ProtocolConfiguration      `json:"protocolConfiguration,omitempty"`
	EnvironmentVariables       map[string]string           `json:"environmentVariables,omitempty"`
	RequestHeaderConfiguration *RequestHeaderConfiguration `json:"requestHeaderConfiguration,omitempty"`
	AuthorizerConfiguration    *AuthorizerConfiguration    `json:"authorizerConfiguration,omitempty"`
	WorkloadIdentityDetails    *WorkloadIdentity           `json:"workloadIdentityDetails,omitempty"`
	FilesystemConfigurations   []FilesystemConfiguration   `json:"filesystemConfigurations,omitempty"`

	// berth's own: "config" for runtimes the config file declares (the
	// API cannot change those), "api" for the rest; what berth runs; and
	// berth's settings.
	BerthSource   string         `json:"berthSource,omitempty"`
	BerthCommand  []string       `json:"berthCommand,omitempty"`
	BerthWorkdir  string         `json:"berthWorkdir,omitempty"`
	BerthSettings *BerthSettings `json:"berthSettings,omitempty"`
}

// AgentRuntimeList is ListAgentRuntimes' and ListAgentRuntimeVersions' answer.
type AgentRuntimeList struct {
	AgentRuntimes []AgentRuntime `json:"agentRuntimes"`
	NextToken     string         `json:"nextToken,omitempty"`
}

// EndpointInput is CreateAgentRuntimeEndpoint's and
// UpdateAgentRuntimeEndpoint's body. An AgentRuntimeVersion left out means
// the latest on create and "unchanged" on update; Name is read on create.
type EndpointInput struct {
	Name                string            `json:"name,omitempty"`
	AgentRuntimeVersion *string           `json:"agentRuntimeVersion,omitempty"`
	Description         *string           `json:"description,omitempty"`
	ClientToken         *string           `json:"clientToken,omitempty"`
	Tags                map[string]string `json:"tags,omitempty"`
}

// Endpoint is a named qualifier of a runtime. DEFAULT follows the latest
// version; the others are pinned. CreateAgentRuntimeEndpoint answers with
// EndpointName and TargetVersion set; the other calls with Name.
type Endpoint struct {
	Name                    string    `json:"name,omitempty"`
	EndpointName            string    `json:"endpointName,omitempty"`
	ID                      string    `json:"id,omitempty"`
	AgentRuntimeEndpointArn string    `json:"agentRuntimeEndpointArn"`
	AgentRuntimeArn         string    `json:"agentRuntimeArn"`
	AgentRuntimeID          string    `json:"agentRuntimeId,omitempty"`
	LiveVersion             string    `json:"liveVersion,omitempty"`
	TargetVersion           string    `json:"targetVersion,omitempty"`
	Status                  string    `json:"status"`
	Description             string    `json:"description,omitempty"`
	CreatedAt               time.Time `json:"createdAt,omitzero"`
	LastUpdatedAt           time.Time `json:"lastUpdatedAt,omitzero"`
}

// EndpointList is ListAgentRuntimeEndpoints' answer.
type EndpointList struct {
	RuntimeEndpoints []Endpoint `json:"runtimeEndpoints"`
	NextToken        string     `json:"nextToken,omitempty"`
}

// DeleteResult answers DeleteAgentRuntime and DeleteAgentRuntimeEndpoint.
type DeleteResult struct {
	Status         string `json:"status"`
	AgentRuntimeID string `json:"agentRuntimeId"`
	EndpointName   string `json:"endpointName,omitempty"`
}

// ProtectedResourceMetadata is a JWT runtime's OAuth protected-resource
// metadata (RFC 9728), served at
// /runtimes/{arn}/invocations/.well-known/oauth-protected-resource and
// named by the WWW-Authenticate challenge of a refused token.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
}
