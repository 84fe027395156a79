// Package config reads berth's YAML configuration: the server settings and
// the runtimes declared in the file. Every error names the offending field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session/agentlog"
	"go.yaml.in/yaml/v3"
)

// Defaults, matching AgentCore where AgentCore has a number.
const (
	DefaultListen       = "127.0.0.1:8787"
	DefaultDataDir      = "./.berth"
	DefaultRegion       = "us-east-1"
	DefaultAccount      = "123456789012"
	DefaultStartTimeout = 30 * time.Second
	DefaultPingInterval = 2 * time.Second
	DefaultPingFailures = 3
	DefaultStopGrace    = 5 * time.Second
	DefaultLogRetention = 24 * time.Hour
	// DefaultStateRetention is how long a durable session's state outlives
	// its last save.
	DefaultStateRetention = 30 * 24 * time.Hour
)

// DefaultLimits apply to every sandbox whose runtime sets none. AgentCore
// gives each session 2 vCPU and 8 GB; these fit a dozen busy sessions on a
// 24 GB host, and the operator raises them in the config's limits section.
var DefaultLimits = registry.Limits{Memory: 2 << 30, CPU: 2000, Pids: 512, Disk: 1 << 30}

// defaultMaxSessions is host memory / 64 MiB, at most 5,000: a busy
// session costs a few MB of berth's and the kernel's memory beside its
// agent's.
func defaultMaxSessions() int {
	mem := hostMemory()
	if mem == 0 {
		return 1000
	}
	return int(min(mem/(64<<20), 5000))
}

// Config is the whole file: the operator's settings. Runtimes decode
// straight into the registry's domain types.
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
	// LogMaxBytes and LogFiles cap each session's log: the agent's output
	// goes into files of at most LogMaxBytes, LogFiles of them (the
	// current one and LogFiles-1 rotated ones), oldest dropped first.
	LogMaxBytes Bytes `yaml:"log_max_bytes"`
	LogFiles    int   `yaml:"log_files"`
	// MaxRuntimes caps the runtimes berth holds: past it, creating one
	// through the control plane fails. MaxVersions is how many versions
	// of each runtime are kept, besides those an endpoint points at.
	MaxRuntimes    int      `yaml:"max_runtimes"`
	MaxVersions    int      `yaml:"max_versions"`
	StateRetention Duration `yaml:"state_retention"`
	// SessionStorageMaxBytes caps each session's storage (AgentCore: 1 GB);
	// SessionStorageRetention wipes one not used for that long (14 days).
	SessionStorageMaxBytes  Bytes    `yaml:"session_storage_max_bytes"`
	SessionStorageRetention Duration `yaml:"session_storage_retention"`
	// UserNamespace maps root inside linux sandboxes to unprivileged host
	// IDs. Agents' code and binaries must then be readable by "other".
	UserNamespace bool `yaml:"user_namespace"`
	// AllowedHosts are host names (no port) clients may address berth by,
	// beyond localhost and IP addresses; AllowedOrigins the browser
	// origins that may call it. Both guard against web pages reaching a
	// local berth (DNS rebinding, cross-site requests).
	AllowedHosts   []string `yaml:"allowed_hosts"`
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxSessions caps live sessions; a new session past it is refused
	// with ServiceQuotaExceededException while live ones go on. Default:
	// host memory / 64 MiB, at most 5,000 (AgentCore's account quota).
	MaxSessions int `yaml:"max_sessions"`
	// NewSessionsPerSecond paces new sessions (bursts of twice that);
	// past it, ThrottlingException. Default 25, AgentCore's quota.
	NewSessionsPerSecond float64 `yaml:"new_sessions_per_second"`
	// MaxConnections caps open client connections. Default 4096.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes idle keep-alive connections. Default 2m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// BodyIdleTimeout cuts a request whose body stops arriving for this
	// long. Default 30s.
	BodyIdleTimeout Duration `yaml:"body_idle_timeout"`
	// InsecureRegistries may be pulled from over plain HTTP (host or
	// host:port); loopback registries always may. MaxImageBytes caps an
	// image's size (AgentCore: 2 GB). DockerConfig is the directory of the
	// config.json whose credentials and helpers pulls use (default
	// $DOCKER_CONFIG, else ~/.docker).
	InsecureRegistries []string `yaml:"insecure_registries"`
	MaxImageBytes      Bytes    `yaml:"max_image_bytes"`
	DockerConfig       string   `yaml:"docker_config"`
	// CodeRoots are the only directories under which code registered
	// through the control plane may lie. Default <data_dir>/code.
	CodeRoots []string `yaml:"code_roots"`
	// Limits are the default limits of every runtime's sandboxes, for
	// each limit the runtime leaves out.
	Limits registry.Limits `yaml:"limits"`
	// APIRuntimes is the operator's policy for runtimes created through
	// the control plane.
	APIRuntimes APIRuntimes `yaml:"api_runtimes"`
	Runtimes    []Runtime   `yaml:"runtimes"`

	// Auth says who may call berth. Without it a loopback listen serves
	// every caller (mode none) and any other listen is refused.
	Auth *Auth `yaml:"auth"`
	// TLS, when set, serves HTTPS and WSS.
	TLS TLS `yaml:"tls"`
	// MetricsListen, when set, serves /metrics there without
	// authentication, for Prometheus; on the main listener it needs an
	// admin.
	MetricsListen string `yaml:"metrics_listen"`
	// InsecureNoAuth (--insecure-no-auth) serves a non-loopback listen
	// without an auth section.
	InsecureNoAuth bool `yaml:"-"`
}

// Auth is the auth section: how callers prove who they are, and what the
// operator lets each principal do.
type Auth struct {
	// Mode is sigv4 (the default once the section exists) or none.
	Mode auth.Mode `yaml:"mode"`
	// CredentialsFile holds the principals' keys in AWS shared-credentials
	// format, one profile per principal; berth re-reads it when it
	// changes and on SIGHUP.
	CredentialsFile string `yaml:"credentials_file"`
	// Admins may use the control plane, berth's own API and /metrics.
	Admins []string `yaml:"admins"`
	// ActAsUser may set X-Amzn-Bedrock-AgentCore-Runtime-User-Id (AgentCore's
	// InvokeAgentRuntimeForUser); admins may too.
	ActAsUser []string `yaml:"act_as_user"`
}

// TLS names the certificate and key berth serves HTTPS with.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether the section asks for TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// AuthMode is the mode berth runs in: none without an auth section.
func (c *Config) AuthMode() auth.Mode {
	if c.Auth == nil {
		return auth.ModeNone
	}
	return c.Auth.Mode
}

// DefaultCredentialsFile is the credentials file the docs and the refusal
// below suggest, next to the config.
const DefaultCredentialsFile = "./berth-credentials"

// LoopbackListen reports whether addr listens on loopback only: an
// explicit loopback IP or localhost; an empty host is every interface.
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// APIRuntimes is what runtimes created through the control plane get and
// may ask for. Only the operator sets it.
type APIRuntimes struct {
	// Sandbox is the backend they run on: linux (default) or process.
	Sandbox registry.Backend `yaml:"sandbox"`
	// Network is their sandboxes' network: none (default) or egress.
	Network sandbox.NetworkMode `yaml:"network"`
	// Ceilings cap the limits a caller may ask for; where a ceiling is
	// unset, the default limit is the ceiling.
	Ceilings registry.Limits `yaml:"ceilings"`
	// WarmPool caps a caller's warm pool. Default 4.
	WarmPool int `yaml:"warm_pool"`
	// Registries are the image registries (host[:port], or "*" for any)
	// callers' containerConfiguration may pull from. Default: none.
	Registries []string `yaml:"registries"`
}

// Runtime is one runtime the file declares.
type Runtime = registry.Declared

// Duration and Bytes are the units the file writes ("15m", "512Mi").
type (
	Duration = registry.Duration
	Bytes    = registry.Bytes
)

// Default returns a config with every default filled in and no runtimes.
func Default() Config {
	return Config{
		Listen:                  DefaultListen,
		DataDir:                 DefaultDataDir,
		Region:                  DefaultRegion,
		Account:                 DefaultAccount,
		MaxPayloadBytes:         100_000_000,
		MaxConnections:          4096,
		MaxSessions:             defaultMaxSessions(),
		NewSessionsPerSecond:    25,
		IdleTimeout:             Duration(2 * time.Minute),
		BodyIdleTimeout:         Duration(30 * time.Second),
		Limits:                  DefaultLimits,
		APIRuntimes:             APIRuntimes{Sandbox: registry.BackendLinux, Network: sandbox.NetworkNone, WarmPool: 4},
		StartTimeout:            Duration(DefaultStartTimeout),
		PingInterval:            Duration(DefaultPingInterval),
		PingFailures:            DefaultPingFailures,
		StopGrace:               Duration(DefaultStopGrace),
		LogRetention:            Duration(DefaultLogRetention),
		StateRetention:          Duration(DefaultStateRetention),
		LogMaxBytes:             agentlog.DefaultMaxBytes,
		LogFiles:                agentlog.DefaultFiles,
		MaxRuntimes:             registry.DefaultMaxRuntimes,
		MaxVersions:             registry.DefaultMaxVersions,
		SessionStorageMaxBytes:  1 << 30,
		SessionStorageRetention: Duration(14 * 24 * time.Hour),
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
	if err := decode(data, &c); err != nil {
		return c, fmt.Errorf("parse config %s: %w", path, locate(data, err))
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

// decode reads YAML over c; a field c does not have is an error.
func decode(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return unknownKeys(err)
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`\bline [0-9]+\b`)

// locate adds the line to a YAML error that has none: the decoder leaves
// it out of many (bytes that are not text, an unknown alias, anything on
// the first line). It is the first line by which the same error appears.
func locate(data []byte, err error) error {
	if yamlLineRE.MatchString(err.Error()) {
		return err
	}
	end := 0
	for line := 1; ; line++ {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			return fmt.Errorf("line %d: %w", line, err)
		}
		end += i + 1
		c := Default()
		if perr := decode(data[:end], &c); perr != nil && perr.Error() == err.Error() {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

func (c *Config) resolve(base string) {
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Join(base, c.DataDir)
	}
	for i, r := range c.CodeRoots {
		if !filepath.IsAbs(r) {
			c.CodeRoots[i] = filepath.Join(base, r)
		}
	}
	for i := range c.Runtimes {
		rt := &c.Runtimes[i]
		if rt.Workdir != "" && !filepath.IsAbs(rt.Workdir) {
			rt.Workdir = filepath.Join(base, rt.Workdir)
		}
	}
	if c.Auth != nil && c.Auth.CredentialsFile != "" && !filepath.IsAbs(c.Auth.CredentialsFile) {
		c.Auth.CredentialsFile = filepath.Join(base, c.Auth.CredentialsFile)
	}
	for _, p := range []*string{&c.TLS.CertFile, &c.TLS.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Validate checks every field, names the first bad one, and fills in
// every runtime's defaults.
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
	if c.SessionStorageMaxBytes < 16<<20 || c.SessionStorageRetention < 0 {
		return errors.New("session_storage_max_bytes: at least 16Mi; session_storage_retention: not negative")
	}
	if c.MaxSessions < 1 || c.NewSessionsPerSecond <= 0 {
		return errors.New("max_sessions and new_sessions_per_second: must be positive")
	}
	if c.MaxConnections < 1 || c.IdleTimeout <= 0 || c.BodyIdleTimeout <= 0 {
		return errors.New("max_connections, idle_timeout and body_idle_timeout: must be positive")
	}
	if c.LogMaxBytes < 4<<10 {
		return errors.New("log_max_bytes: must be at least 4Ki")
	}
	if c.LogFiles < 1 || c.LogFiles > 100 {
		return errors.New("log_files: must be 1 to 100")
	}
	if c.MaxRuntimes < 1 || c.MaxVersions < 1 {
		return errors.New("max_runtimes and max_versions: must be at least 1")
	}
	if !filepath.IsAbs(c.DataDir) {
		abs, err := filepath.Abs(c.DataDir)
		if err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
		c.DataDir = abs
	}
	if len(c.CodeRoots) == 0 {
		c.CodeRoots = []string{filepath.Join(c.DataDir, "code")}
	}
	for i, r := range c.CodeRoots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("code_roots[%d]: %q must be an absolute path", i, r)
		}
	}
	switch c.APIRuntimes.Sandbox {
	case registry.BackendLinux, registry.BackendProcess:
	default:
		return fmt.Errorf("api_runtimes.sandbox: %q is not linux or process", c.APIRuntimes.Sandbox)
	}
	switch c.APIRuntimes.Network {
	case sandbox.NetworkNone, sandbox.NetworkEgress:
	default:
		return fmt.Errorf("api_runtimes.network: %q is not none or egress: API callers never get the host network", c.APIRuntimes.Network)
	}
	if w := c.APIRuntimes.WarmPool; w < 0 || w > registry.MaxWarmPool {
		return fmt.Errorf("api_runtimes.warm_pool: must be 0 to %d", registry.MaxWarmPool)
	}
	if err := c.validateAuth(); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: set both cert_file and key_file")
	}
	rules := c.Rules()
	seen := map[string]bool{}
	for i := range c.Runtimes {
		rt := &c.Runtimes[i]
		field := fmt.Sprintf("runtimes[%d]", i)
		if rt.Name != "" {
			field = fmt.Sprintf("runtimes[%d] (%s)", i, rt.Name)
		}
		if err := registry.ValidateName("name", rt.Name); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if err := rules.Validate(registry.SourceConfig, &rt.Settings); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if seen[rt.Name] {
			return fmt.Errorf("%s.name: duplicate runtime name %q", field, rt.Name)
		}
		seen[rt.Name] = true
	}
	return nil
}

// validateAuth checks the auth section, and refuses to serve a port other
// machines can reach without one.
func (c *Config) validateAuth() error {
	if c.Auth == nil {
		if LoopbackListen(c.Listen) || c.InsecureNoAuth {
			return nil
		}
		return fmt.Errorf(`listen: %s is reachable from other machines and the config has no auth section, so anyone who reaches the port could run code. Add to the config:

  auth:
    mode: sigv4
    credentials_file: %s

then create a key with "berth credentials create NAME" (and list yourself under auth.admins),
or start with "berth serve --init-credentials"; --insecure-no-auth serves without authentication anyway`, c.Listen, DefaultCredentialsFile)
	}
	a := c.Auth
	switch a.Mode {
	case "":
		a.Mode = auth.ModeSigV4
	case auth.ModeSigV4, auth.ModeNone:
	default:
		return fmt.Errorf("auth.mode: %q is not sigv4 or none", a.Mode)
	}
	if a.Mode == auth.ModeSigV4 && a.CredentialsFile == "" {
		return fmt.Errorf("auth.credentials_file: mode sigv4 needs one (e.g. %s; create keys with berth credentials create NAME)", DefaultCredentialsFile)
	}
	for field, names := range map[string][]string{"auth.admins": a.Admins, "auth.act_as_user": a.ActAsUser} {
		for _, n := range names {
			if err := auth.ValidPrincipalName(n); err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
		}
	}
	return nil
}

// Rules is the rulebook the operator's settings make: what runtimes
// default to and what API callers may ask for.
func (c *Config) Rules() registry.Rulebook {
	a := c.APIRuntimes
	return registry.Rulebook{
		CodeRoots:     c.CodeRoots,
		DataDir:       c.DataDir,
		DefaultLimits: c.Limits,
		Ceilings:      a.Ceilings,
		APISandbox:    a.Sandbox,
		APINetwork:    a.Network,
		APIWarmPool:   a.WarmPool,
		APIRegistries: a.Registries,
		MaxRuntimes:   c.MaxRuntimes,
		MaxVersions:   c.MaxVersions,
	}
}
