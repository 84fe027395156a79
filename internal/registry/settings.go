package registry

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/sandbox"
	"go.yaml.in/yaml/v3"
)

// Settings is everything one immutable version says about how to run its
// agent. It has one shape everywhere: the config file's runtimes decode
// straight into it (YAML names), the store keeps it as JSON (the JSON keys
// and their order are a stored format: changing one needs a migration),
// and the control plane fills it from AgentCore's request members. Rulebook.Validate checks
// it and fills its defaults, knowing who is asking.
type Settings struct {
	Command []string `json:"command" yaml:"command"`
	Workdir string   `json:"workdir,omitempty" yaml:"workdir"`
	// CodeDigest names the code snapshot Workdir is, when the version's
	// code is pinned; PinCode asks for that in the config file (API
	// runtimes are always pinned).
	CodeDigest string            `json:"code_digest,omitempty" yaml:"-"`
	PinCode    bool              `json:"pin_code,omitempty" yaml:"pin_code"`
	Env        map[string]string `json:"env,omitempty" yaml:"env"`
	// Sandbox picks the backend, Network what the sandbox can reach and
	// Mounts adds host directories: the operator alone sets them.
	Sandbox Backend `json:"sandbox,omitempty" yaml:"sandbox"`

	IdleTimeout     Duration `json:"idle_timeout" yaml:"idle_timeout"`
	MaxLifetime     Duration `json:"max_lifetime" yaml:"max_lifetime"`
	HeaderAllowlist []string `json:"header_allowlist,omitempty" yaml:"header_allowlist"`
	Protocol        Protocol `json:"protocol,omitempty" yaml:"protocol"`
	// SessionStorage is where each session's own persistent filesystem
	// is mounted ("/mnt/workspace"); empty for none.
	SessionStorage string `json:"session_storage,omitempty" yaml:"session_storage"`
	// Commands lets callers run commands in sessions
	// (InvokeAgentRuntimeCommand); nil means yes, as on AgentCore. Read it
	// through CommandsEnabled.
	Commands *bool `json:"commands,omitempty" yaml:"commands"`

	Network sandbox.NetworkMode `json:"network,omitempty" yaml:"network"`
	// Limits cap each sandbox; API callers may ask up to the operator's
	// ceilings.
	Limits `yaml:",inline"`
	Mounts []sandbox.Mount `json:"mounts,omitempty" yaml:"mounts"`
	// Artifact is the control-plane artifact a version came from, so
	// GetAgentRuntime can echo it.
	Artifact Artifact `json:"artifact,omitempty" yaml:"-"` // stored as {} when empty (a stored format)

	Sessions SessionPolicy `json:"sessions,omitzero" yaml:",inline"`

	// Invokers are the principals (credentials-file profiles) that may
	// invoke the runtime, stop its sessions and run commands in them;
	// empty means every principal. A JWT runtime has none: its authorizer
	// decides.
	Invokers []string `json:"invokers,omitempty" yaml:"invokers"`
	// Authorizer is AgentCore's authorizerConfiguration: with a JWT
	// authorizer the runtime takes bearer tokens instead of SigV4.
	Authorizer Authorizer `json:"authorizer,omitzero" yaml:"authorizer"`

	// Image is the container image the version runs (as written:
	// "registry:5000/team/agent:v3"), instead of Workdir; Command then
	// overrides its entrypoint and command. ImageDigest pins what the
	// reference resolved to when the version was made, so a pinned
	// endpoint runs that image whatever the tag points at later.
	Image       string `json:"image,omitempty" yaml:"image"`
	ImageDigest string `json:"image_digest,omitempty" yaml:"-"`
}

// Authorizer is how a runtime authenticates its callers: SigV4 (berth's
// auth mode) unless JWT is set.
type Authorizer struct {
	JWT *auth.JWTAuthorizer `json:"jwt,omitempty" yaml:"jwt"`
}

// CommandsEnabled reports whether the runtime accepts commands in its
// sessions: unless it says commands: false.
func (s Settings) CommandsEnabled() bool { return s.Commands == nil || *s.Commands }

// Limits are what a runtime asks of each of its sandboxes. Zero means
// "the operator's default".
type Limits struct {
	Memory Bytes      `json:"memory_bytes,omitempty" yaml:"memory"`
	CPU    Millicores `json:"cpu_millis,omitempty" yaml:"cpu"`
	Pids   int64      `json:"pids,omitempty" yaml:"pids"`
	// Disk caps the sandbox's writable scratch space (/tmp and home).
	Disk Bytes `json:"disk_bytes,omitempty" yaml:"disk"`
}

// Sandbox returns the limits as a backend enforces them.
func (l Limits) Sandbox() sandbox.Limits {
	return sandbox.Limits{MemoryBytes: int64(l.Memory), CPUMillis: int64(l.CPU), Pids: l.Pids, DiskBytes: int64(l.Disk)}
}

// Backend names a sandbox backend.
type Backend string

// The sandbox backends; "" and auto pick the host's default.
const (
	BackendAuto    Backend = "auto"
	BackendProcess Backend = "process"
	BackendLinux   Backend = "linux"
)

// Protocol is the agent's server protocol (AgentCore's serverProtocol).
type Protocol string

// The protocols AgentCore defines.
const (
	ProtocolHTTP Protocol = "HTTP"
	ProtocolMCP  Protocol = "MCP"
	ProtocolA2A  Protocol = "A2A"
	ProtocolAGUI Protocol = "AGUI"
)

// Concurrency is a session's policy for calls that overlap.
type Concurrency string

// Concurrency policies for calls into one session.
const (
	ConcurrencyAllow  Concurrency = "allow"
	ConcurrencyReject Concurrency = "reject"
	ConcurrencyQueue  Concurrency = "queue"
)

// Durability says what of a session outlives its sandbox.
type Durability string

// DurabilityState keeps an agent's saved session state across sandboxes.
const DurabilityState Durability = "state"

// SessionPolicy holds berth's opt-in session features beyond AgentCore.
// The zero value is plain AgentCore behaviour.
type SessionPolicy struct {
	// Concurrency is allow (default), reject or queue.
	Concurrency  Concurrency `json:"concurrency,omitempty" yaml:"concurrency"`
	QueueSize    int         `json:"queue_size,omitempty" yaml:"queue_size"`
	QueueTimeout Duration    `json:"queue_timeout,omitempty" yaml:"queue_timeout"`
	// BindUser binds a session to the first runtime user that touches it.
	BindUser bool `json:"bind_user,omitempty" yaml:"bind_user"`
	// MaxSessions caps the runtime's live sessions (0: only berth's cap).
	MaxSessions int `json:"max_sessions,omitempty" yaml:"max_sessions"`
	// MaxSessionsPerUser caps a user's live sessions of the runtime (0: no cap).
	MaxSessionsPerUser int `json:"max_sessions_per_user,omitempty" yaml:"max_sessions_per_user"`
	// Durability "state" keeps the agent's saved state across sandboxes.
	Durability    Durability `json:"durability,omitempty" yaml:"durability"`
	StateMaxBytes Bytes      `json:"state_max_bytes,omitempty" yaml:"state_max_bytes"`
	// SuspendAfter ends an idle durable sandbox early; the session resumes
	// on its next call.
	SuspendAfter Duration `json:"suspend_after,omitempty" yaml:"suspend_after"`
	// WarmPool keeps that many started, healthy sandboxes unclaimed.
	WarmPool int `json:"warm_pool,omitempty" yaml:"warm_pool"`
}

// Durable reports whether sessions keep saved state across sandboxes.
func (p SessionPolicy) Durable() bool { return p.Durability == DurabilityState }

// Artifact records the control-plane artifact a version came from.
type Artifact struct {
	ContainerURI string   `json:"container_uri,omitempty"`
	CodeLocation string   `json:"code_location,omitempty"`
	EntryPoint   []string `json:"entry_point,omitempty"`
	Runtime      string   `json:"runtime,omitempty"`
	// RoleARN is the execution role the request named; berth only echoes it.
	RoleARN string `json:"role_arn,omitempty"`
}

// Declared is a runtime as the operator's config file declares it.
type Declared struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Settings    `yaml:",inline"`
}

// Duration is a time.Duration that YAML may write as "15m", "90s" or a
// number of seconds. In JSON it stays nanoseconds.
type Duration time.Duration

// UnmarshalYAML reads "15m", "90s" or seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" || n.Tag == "!!float" {
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return yamlError(n, "%q is not a number of seconds", n.Value)
		}
		*d = Duration(time.Duration(f * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return yamlError(n, "%q is not a duration (use 15m, 90s or seconds)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// yamlError reports a bad value at its line, as the YAML decoder reports
// its own type errors (the decoder knows no field name for it).
func yamlError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Bytes is a size that YAML may write as 512Mi, 1G, 100MB or bytes.
type Bytes int64

// UnmarshalYAML reads 512Mi, 1G, 100MB or a plain number of bytes.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBytes(n.Value)
	if err != nil {
		return yamlError(n, "%s", err)
	}
	*b = Bytes(v)
	return nil
}

var bytesRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?$`)

// ParseBytes parses a size such as 512Mi, 1G, 100MB or 1000.
func ParseBytes(s string) (int64, error) {
	m := bytesRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (use 512Mi, 1G or bytes)", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %w", s, err)
	}
	unit := strings.TrimSuffix(m[2], "B")
	mult := map[string]float64{
		"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
	}[unit]
	return int64(f * mult), nil
}

// Millicores is CPU in thousandths of a core. YAML writes it in cores
// (0.5, 2) or millicores (500m).
type Millicores int64

// UnmarshalYAML reads 0.5, 2 or 500m.
func (m *Millicores) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if v, ok := strings.CutSuffix(s, "m"); ok {
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return yamlError(n, "%q is not a CPU amount (use 0.5, 2 or 500m)", n.Value)
		}
		*m = Millicores(i)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return yamlError(n, "%q is not a CPU amount (use 0.5, 2 or 500m)", n.Value)
	}
	*m = Millicores(f * 1000)
	return nil
}
