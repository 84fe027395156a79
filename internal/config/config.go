// Package config reads berth's YAML configuration: the server settings and
// the runtimes declared in the file. Every error names the offending field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/registry"
	"go.yaml.in/yaml/v3"
)

// Defaults, matching AgentCore where AgentCore has a number.
const (
	DefaultListen       = "127.0.0.1:8787"
	DefaultDataDir      = "./.berth"
	DefaultRegion       = "us-east-1"
	DefaultAccount      = "123456789012"
	DefaultIdleTimeout  = 900 * time.Second
	DefaultMaxLifetime  = 28800 * time.Second
	DefaultStartTimeout = 30 * time.Second
	DefaultPingInterval = 2 * time.Second
	DefaultPingFailures = 3
	DefaultStopGrace    = 5 * time.Second
	DefaultLogRetention = 24 * time.Hour
	// DefaultStateRetention is how long a durable session's state outlives
	// its last save.
	DefaultStateRetention = 30 * 24 * time.Hour
	// MaxAllowlist is AgentCore's cap on allow-listed headers per runtime.
	MaxAllowlist = registry.MaxAllowlist
)

// Config is the whole file.
type Config struct {
	Listen          string   `yaml:"listen"`
	DataDir         string   `yaml:"data_dir"`
	Region          string   `yaml:"region"`
	Account         string   `yaml:"account"`
	MaxPayloadBytes Bytes    `yaml:"max_payload_bytes"`
	StartTimeout    Duration `yaml:"start_timeout"`
	PingInterval    Duration `yaml:"ping_interval"`
	PingFailures    int      `yaml:"ping_failures"`
	StopGrace       Duration `yaml:"stop_grace"`
	LogRetention    Duration `yaml:"log_retention"`
	StateRetention  Duration `yaml:"state_retention"`
	// UserNamespace maps root inside linux sandboxes to unprivileged host
	// IDs. Agents' code and binaries must then be readable by "other".
	UserNamespace bool      `yaml:"user_namespace"`
	Runtimes      []Runtime `yaml:"runtimes"`
}

// Runtime is one runtime declared in the file.
type Runtime struct {
	Name            string            `yaml:"name"`
	Description     string            `yaml:"description"`
	Command         []string          `yaml:"command"`
	Workdir         string            `yaml:"workdir"`
	Env             map[string]string `yaml:"env"`
	Sandbox         string            `yaml:"sandbox"`
	IdleTimeout     Duration          `yaml:"idle_timeout"`
	MaxLifetime     Duration          `yaml:"max_lifetime"`
	HeaderAllowlist []string          `yaml:"header_allowlist"`
	Protocol        string            `yaml:"protocol"`
	Network         string            `yaml:"network"`
	Memory          Bytes             `yaml:"memory"`
	CPU             float64           `yaml:"cpu"`
	Pids            int64             `yaml:"pids"`
	Disk            Bytes             `yaml:"disk"`
	Mounts          []Mount           `yaml:"mounts"`

	// berth's session features beyond AgentCore; all opt-in.
	Concurrency        string   `yaml:"concurrency"`
	QueueSize          int      `yaml:"queue_size"`
	QueueTimeout       Duration `yaml:"queue_timeout"`
	BindUser           bool     `yaml:"bind_user"`
	MaxSessionsPerUser int      `yaml:"max_sessions_per_user"`
	Durability         string   `yaml:"durability"`
	StateMaxBytes      Bytes    `yaml:"state_max_bytes"`
	SuspendAfter       Duration `yaml:"suspend_after"`
	WarmPool           int      `yaml:"warm_pool"`
}

// Mount is a bind mount a runtime adds to its sandboxes.
type Mount struct {
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
}

// Duration accepts "15m", "90s" or a number of seconds.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" || n.Tag == "!!float" {
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return err
		}
		*d = Duration(time.Duration(f * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use 15m, 90s or seconds)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// Bytes accepts 512Mi, 1G, 100MB or a plain number of bytes.
type Bytes int64

func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBytes(n.Value)
	if err != nil {
		return err
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

// Default returns a config with every default filled in and no runtimes.
func Default() Config {
	return Config{
		Listen:          DefaultListen,
		DataDir:         DefaultDataDir,
		Region:          DefaultRegion,
		Account:         DefaultAccount,
		MaxPayloadBytes: 100_000_000,
		StartTimeout:    Duration(DefaultStartTimeout),
		PingInterval:    Duration(DefaultPingInterval),
		PingFailures:    DefaultPingFailures,
		StopGrace:       Duration(DefaultStopGrace),
		LogRetention:    Duration(DefaultLogRetention),
		StateRetention:  Duration(DefaultStateRetention),
	}
}

// Load reads path over the defaults and validates it. Relative workdirs and
// the data dir resolve against the file's directory.
func Load(path string) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return c, fmt.Errorf("resolve config dir: %w", err)
	}
	c.resolve(base)
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) resolve(base string) {
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Join(base, c.DataDir)
	}
	for i := range c.Runtimes {
		rt := &c.Runtimes[i]
		if rt.Workdir != "" && !filepath.IsAbs(rt.Workdir) {
			rt.Workdir = filepath.Join(base, rt.Workdir)
		}
	}
}

var (
	nameRE    = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
)

// Validate checks every field and names the first bad one.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return errors.New("listen: must not be empty")
	}
	if !accountRE.MatchString(c.Account) {
		return fmt.Errorf("account: %q must be 12 digits", c.Account)
	}
	if c.Region == "" {
		return errors.New("region: must not be empty")
	}
	if c.MaxPayloadBytes <= 0 {
		return errors.New("max_payload_bytes: must be positive")
	}
	if c.StartTimeout <= 0 || c.PingInterval <= 0 || c.StopGrace < 0 {
		return errors.New("start_timeout, ping_interval and stop_grace: must be positive")
	}
	if c.PingFailures < 1 {
		return errors.New("ping_failures: must be at least 1")
	}
	seen := map[string]bool{}
	for i := range c.Runtimes {
		rt := &c.Runtimes[i]
		field := fmt.Sprintf("runtimes[%d]", i)
		if rt.Name != "" {
			field = fmt.Sprintf("runtimes[%d] (%s)", i, rt.Name)
		}
		if err := rt.Validate(); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if seen[rt.Name] {
			return fmt.Errorf("%s.name: duplicate runtime name %q", field, rt.Name)
		}
		seen[rt.Name] = true
	}
	return nil
}

// Validate checks one runtime; errors start with the field name.
func (rt *Runtime) Validate() error {
	if !nameRE.MatchString(rt.Name) {
		return fmt.Errorf("name: %q must match [a-zA-Z][a-zA-Z0-9_]{0,47}", rt.Name)
	}
	if len(rt.Command) == 0 || rt.Command[0] == "" {
		return errors.New("command: must name a program")
	}
	switch rt.Sandbox {
	case "", "auto", "process", "linux":
	default:
		return fmt.Errorf("sandbox: %q is not one of auto, process, linux", rt.Sandbox)
	}
	switch rt.Network {
	case "", "none", "host", "egress":
	default:
		return fmt.Errorf("network: %q is not one of none, host, egress", rt.Network)
	}
	switch strings.ToUpper(rt.Protocol) {
	case "", "HTTP", "MCP", "A2A", "AGUI":
	default:
		return fmt.Errorf("protocol: %q is not one of HTTP, MCP, A2A, AGUI", rt.Protocol)
	}
	if rt.IdleTimeout < 0 || rt.MaxLifetime < 0 {
		return errors.New("idle_timeout: must not be negative")
	}
	idle, maxLife := rt.Lifetimes()
	if idle > maxLife {
		return fmt.Errorf("idle_timeout: %s exceeds max_lifetime %s", idle, maxLife)
	}
	if err := ValidateAllowlist(rt.HeaderAllowlist); err != nil {
		return fmt.Errorf("header_allowlist: %w", err)
	}
	if rt.CPU < 0 || rt.Pids < 0 || rt.Memory < 0 || rt.Disk < 0 {
		return errors.New("memory, cpu, pids, disk: must not be negative")
	}
	switch rt.Concurrency {
	case "", "allow", "reject", "queue":
	default:
		return fmt.Errorf("concurrency: %q is not one of allow, reject, queue", rt.Concurrency)
	}
	switch rt.Durability {
	case "", "none", "state":
	default:
		return fmt.Errorf("durability: %q is not one of none, state", rt.Durability)
	}
	if rt.QueueSize < 0 || rt.QueueTimeout < 0 {
		return errors.New("queue_size, queue_timeout: must not be negative")
	}
	if rt.MaxSessionsPerUser < 0 {
		return errors.New("max_sessions_per_user: must not be negative")
	}
	if rt.MaxSessionsPerUser > 0 && !rt.BindUser {
		return errors.New("max_sessions_per_user: needs bind_user: true")
	}
	if rt.StateMaxBytes < 0 || (rt.StateMaxBytes > 0 && rt.Durability != "state") {
		return errors.New("state_max_bytes: needs durability: state, and must not be negative")
	}
	if rt.SuspendAfter < 0 || (rt.SuspendAfter > 0 && rt.Durability != "state") {
		return errors.New("suspend_after: needs durability: state (a suspended session resumes from its saved state)")
	}
	if rt.WarmPool < 0 || rt.WarmPool > 1000 {
		return errors.New("warm_pool: must be 0 to 1000")
	}
	for j, m := range rt.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return fmt.Errorf("mounts[%d]: source and target must be absolute paths", j)
		}
	}
	for k := range rt.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: %q is not a valid variable name", k)
		}
	}
	return nil
}

// Lifetimes returns the idle timeout and max lifetime with AgentCore's
// defaulting rule: only a max lifetime at or under 900 s sets idle to it.
func (rt *Runtime) Lifetimes() (idle, maxLife time.Duration) {
	idle, maxLife = time.Duration(rt.IdleTimeout), time.Duration(rt.MaxLifetime)
	if maxLife == 0 {
		maxLife = DefaultMaxLifetime
	}
	if idle == 0 {
		idle = min(DefaultIdleTimeout, maxLife)
	}
	return idle, maxLife
}

// ValidateAllowlist applies AgentCore's header allowlist rules; the rules
// live in the registry, which the control plane shares.
func ValidateAllowlist(names []string) error { return registry.ValidateAllowlist(names) }

// Policy returns the runtime's session policy with defaults filled in.
func (rt *Runtime) Policy() registry.SessionPolicy {
	p := registry.SessionPolicy{
		Concurrency:        rt.Concurrency,
		QueueSize:          rt.QueueSize,
		QueueTimeout:       time.Duration(rt.QueueTimeout),
		BindUser:           rt.BindUser,
		MaxSessionsPerUser: rt.MaxSessionsPerUser,
		StateMaxBytes:      int64(rt.StateMaxBytes),
		SuspendAfter:       time.Duration(rt.SuspendAfter),
		WarmPool:           rt.WarmPool,
	}
	if p.Concurrency == "" {
		p.Concurrency = registry.ConcurrencyAllow
	}
	if p.Concurrency == registry.ConcurrencyQueue {
		if p.QueueSize == 0 {
			p.QueueSize = registry.DefaultQueueSize
		}
		if p.QueueTimeout == 0 {
			p.QueueTimeout = registry.DefaultQueueTimeout
		}
	}
	if rt.Durability == registry.DurabilityState {
		p.Durability = registry.DurabilityState
		if p.StateMaxBytes == 0 {
			p.StateMaxBytes = registry.DefaultStateMaxBytes
		}
	}
	return p
}
