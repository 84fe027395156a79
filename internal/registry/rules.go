package registry

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/sandbox"
)

// The rulebook: every rule a runtime's settings must pass, written once.
// The same rules check the operator's config file and the control plane;
// Source says who is asking, which decides the field names errors use and
// what may be set at all.

// Source says who declared a runtime: the operator (the config file, which
// is trusted) or an API caller (the control plane, which is not).
type Source string

// The two sources.
const (
	SourceConfig Source = "config"
	SourceAPI    Source = "api"
)

// AgentCore's limits, as the control plane enforces them.
const (
	// MinLifetime and MaxLifetime bound an API runtime's idle timeout and
	// max lifetime. The operator's config may go lower (tests, demos).
	MinLifetime = 60 * time.Second
	MaxLifetime = 28800 * time.Second
	// DefaultIdleTimeout and DefaultMaxLifetime apply when left out.
	DefaultIdleTimeout = 900 * time.Second
	DefaultMaxLifetime = 28800 * time.Second
	// MaxAllowlist caps allow-listed request headers per runtime.
	MaxAllowlist = 20
	// MaxEnv caps an API runtime's environment variables; keys are 1-100
	// characters and values at most 5000.
	MaxEnv         = 50
	MaxEnvKeyLen   = 100
	MaxEnvValueLen = 5000
	// MaxTags caps tags per resource.
	MaxTags = 50
	// MaxEndpoints caps a runtime's endpoints, DEFAULT included.
	MaxEndpoints = 10
	// MaxDescription and MaxEndpointDescription cap descriptions.
	MaxDescription         = 4096
	MaxEndpointDescription = 256
	// MaxWarmPool caps any runtime's warm pool.
	MaxWarmPool = 1000
	// DefaultMaxRuntimes caps the runtimes one berth holds; API callers
	// get ServiceQuotaExceededException past it.
	DefaultMaxRuntimes = 1000
	// DefaultMaxVersions is how many versions of a runtime are kept,
	// besides those an endpoint points at.
	DefaultMaxVersions = 100
)

// Defaults for the session policy's bounds.
const (
	DefaultQueueSize     = 16
	DefaultQueueTimeout  = 30 * time.Second
	DefaultStateMaxBytes = api.DefaultStateMaxBytes
)

// Rulebook checks runtime settings and fills their defaults. Its fields are
// the operator's policy for what API callers may ask for.
type Rulebook struct {
	// DefaultLimits fill in the limits a runtime leaves out.
	DefaultLimits Limits
	// Ceilings cap the limits an API caller may ask for; a zero field
	// means the default is also the ceiling.
	Ceilings Limits
	// APISandbox is the backend every API runtime runs on (linux unless
	// the operator says otherwise); APINetwork its sandboxes' network.
	APISandbox Backend
	APINetwork sandbox.NetworkMode
	// APIWarmPool caps an API runtime's warm pool.
	APIWarmPool int
	// APIRegistries are the registries (host[:port]) an API runtime's
	// image may come from; "*" allows any. Empty refuses images to API
	// callers: a pull is a request from berth's host, and a caller must
	// not aim it at loopback or the operator's private network.
	APIRegistries []string
	// CodeRoots are the only directories under which an API runtime's
	// code may lie.
	CodeRoots []string
	// DataDir is berth's own: no runtime's code or mount may reach into it.
	DataDir string
	// MaxRuntimes caps the runtimes API callers may create; runtimes the
	// config file declares always load. 0 means DefaultMaxRuntimes.
	MaxRuntimes int
	// MaxVersions is how many versions of each runtime are kept besides
	// those an endpoint points at: writing a new one deletes the oldest.
	// 0 means DefaultMaxVersions.
	MaxVersions int
}

func (rb Rulebook) maxRuntimes() int { return cmp.Or(rb.MaxRuntimes, DefaultMaxRuntimes) }
func (rb Rulebook) maxVersions() int { return cmp.Or(rb.MaxVersions, DefaultMaxVersions) }

// setting names one setting in each place it can come from.
type setting struct{ config, api string }

func (s setting) in(src Source) string {
	if src == SourceAPI {
		return s.api
	}
	return s.config
}

func (s setting) err(src Source, format string, args ...any) error {
	return errdefs.Field(s.in(src), format, args...)
}

var (
	fCommand      = setting{"command", "agentRuntimeArtifact"}
	fImage        = setting{"image", "agentRuntimeArtifact.containerConfiguration.containerUri"}
	fStorage      = setting{"session_storage", "filesystemConfigurations"}
	fWorkdir      = setting{"workdir", "agentRuntimeArtifact.codeConfiguration.code.s3.prefix"}
	fEnv          = setting{"env", "environmentVariables"}
	fSandbox      = setting{"sandbox", "berthSettings.sandbox"}
	fNetwork      = setting{"network", "berthSettings.network"}
	fMounts       = setting{"mounts", "berthSettings.mounts"}
	fMemory       = setting{"memory", "berthSettings.limits.memoryBytes"}
	fCPU          = setting{"cpu", "berthSettings.limits.cpu"}
	fPids         = setting{"pids", "berthSettings.limits.pids"}
	fDisk         = setting{"disk", "berthSettings.limits.diskBytes"}
	fProtocol     = setting{"protocol", "protocolConfiguration.serverProtocol"}
	fIdle         = setting{"idle_timeout", "lifecycleConfiguration.idleRuntimeSessionTimeout"}
	fMaxLifetime  = setting{"max_lifetime", "lifecycleConfiguration.maxLifetime"}
	fAllowlist    = setting{"header_allowlist", "requestHeaderConfiguration.requestHeaderAllowlist"}
	fConcurrency  = setting{"concurrency", "berthSettings.sessions.concurrency"}
	fQueueSize    = setting{"queue_size", "berthSettings.sessions.queueSize"}
	fQueueTimeout = setting{"queue_timeout", "berthSettings.sessions.queueTimeoutSeconds"}
	fMaxPerUser   = setting{"max_sessions_per_user", "berthSettings.sessions.maxSessionsPerUser"}
	fMaxSessions  = setting{"max_sessions", "berthSettings.sessions.maxSessions"}
	fDurability   = setting{"durability", "berthSettings.sessions.durability"}
	fStateMax     = setting{"state_max_bytes", "berthSettings.sessions.stateMaxBytes"}
	fSuspend      = setting{"suspend_after", "berthSettings.sessions.suspendAfterSeconds"}
	fWarmPool     = setting{"warm_pool", "berthSettings.sessions.warmPool"}
	fInvokers     = setting{"invokers", "berthSettings.invokers"}
	fJWT          = setting{"authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"}
)

// Validate checks s as src declared it and fills in every default. The
// error names the first bad field the way src wrote it.
func (rb Rulebook) Validate(src Source, s *Settings) error {
	if s.Image != "" {
		if err := rb.validateImage(src, s); err != nil {
			return err
		}
	} else if len(s.Command) == 0 || s.Command[0] == "" {
		return fCommand.err(src, "must name a program")
	}
	if s.Workdir != "" && !filepath.IsAbs(s.Workdir) {
		return fWorkdir.err(src, "%q must be an absolute path", s.Workdir)
	}
	if err := rb.validatePaths(src, s); err != nil {
		return err
	}
	if err := rb.validateEnv(src, s.Env); err != nil {
		return err
	}
	if err := rb.validatePlacement(src, s); err != nil {
		return err
	}
	if err := rb.validateLimits(src, &s.Limits); err != nil {
		return err
	}
	switch p := Protocol(strings.ToUpper(string(s.Protocol))); p {
	case "":
		s.Protocol = ProtocolHTTP
	case ProtocolHTTP, ProtocolMCP, ProtocolA2A, ProtocolAGUI:
		s.Protocol = p
	default:
		return fProtocol.err(src, "%q is not one of HTTP, MCP, A2A, AGUI", s.Protocol)
	}
	if err := validateLifecycle(src, &s.IdleTimeout, &s.MaxLifetime); err != nil {
		return err
	}
	if err := validateCallers(src, s); err != nil {
		return err
	}
	if err := ValidateAllowlist(s.HeaderAllowlist, s.Authorizer.JWT != nil); err != nil {
		return fAllowlist.err(src, "%s", err)
	}
	if err := rb.validatePolicy(src, &s.Sessions); err != nil {
		return err
	}
	return validateStorage(src, s)
}

// validateImage checks an image runtime: the image holds the code, so
// there is no code directory; only the linux backend runs an image's root.
func (rb Rulebook) validateImage(src Source, s *Settings) error {
	ref, err := image.ParseRef(s.Image)
	if err != nil {
		return fImage.err(src, "%q is not an image reference (registry/repository:tag or @sha256:digest)", s.Image)
	}
	switch {
	case s.Workdir != "" || s.PinCode:
		return fImage.err(src, "an image runtime takes no workdir or pin_code: the image holds the code")
	case len(s.Command) > 0 && s.Command[0] == "":
		return fCommand.err(src, "must name a program, or be left out to run the image's entrypoint")
	case s.ImageDigest != "":
		if _, err := image.Pinned(ref, s.ImageDigest); err != nil {
			return fImage.err(src, "digest %q: %v", s.ImageDigest, err)
		}
	}
	backend := s.Sandbox
	if src == SourceAPI {
		backend = cmpOr(rb.APISandbox, BackendLinux)
	}
	switch {
	case backend == BackendProcess && src == SourceAPI:
		return fImage.err(src, "container images run only on the linux sandbox backend, and this berth runs API runtimes on process, "+
			"which shares the host's filesystem; use codeConfiguration with code.s3.bucket %q instead", api.LocalBucket)
	case backend == BackendProcess:
		return fImage.err(src, "container images run only on the linux sandbox backend; the process backend shares the host's filesystem")
	}
	if src == SourceAPI {
		host, err := image.Registry(s.Image)
		if err != nil {
			return fImage.err(src, "%q is not an image reference (registry/repository:tag or @sha256:digest)", s.Image)
		}
		if !slices.Contains(rb.APIRegistries, "*") && !slices.Contains(rb.APIRegistries, host) {
			return fImage.err(src, "registry %q is not one this berth pulls from for API callers; the operator lists them in api_runtimes.registries", host)
		}
	}
	return nil
}

// storageRE is AgentCore's session storage mount path: exactly one level
// under /mnt.
var storageRE = regexp.MustCompile(`^/mnt/[a-zA-Z0-9._-]+/?$`)

func validateStorage(src Source, s *Settings) error {
	p := s.SessionStorage
	if p == "" {
		return nil
	}
	switch {
	case len(p) < 6 || len(p) > 200 || !storageRE.MatchString(p) || strings.Trim(p, "/.") == "mnt" || strings.HasSuffix(strings.TrimSuffix(p, "/"), "/.."):
		return fStorage.err(src, "mount path %q must be one level under /mnt (/mnt/[a-zA-Z0-9._-]+), 6-200 characters", p)
	case s.Sandbox == BackendProcess:
		return fStorage.err(src, "session storage needs the linux sandbox backend; the process backend shares the host's filesystem")
	case s.Sessions.WarmPool > 0:
		return fStorage.err(src, "session storage and a warm pool do not mix: a warm sandbox starts before its session, and the storage is mounted when the session's first call arrives")
	}
	s.SessionStorage = strings.TrimSuffix(p, "/")
	return nil
}

// MaxInvokers caps a runtime's invokers, and MaxAuthorizerList each list
// of its JWT authorizer.
const (
	MaxInvokers       = 100
	MaxAuthorizerList = 50
)

var (
	scopeRE      = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,255}$`)
	claimNameRE  = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,255}$`)
	claimValueRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,255}$`)
)

// validateCallers checks who may call the runtime: its invokers, or its
// JWT authorizer (AgentCore's customJWTAuthorizer rules), not both.
func validateCallers(src Source, s *Settings) error {
	if len(s.Invokers) > MaxInvokers {
		return fInvokers.err(src, "%d invokers exceed the limit of %d", len(s.Invokers), MaxInvokers)
	}
	seen := map[string]bool{}
	for _, p := range s.Invokers {
		if err := auth.ValidPrincipalName(p); err != nil {
			return fInvokers.err(src, "%s", err)
		}
		if seen[p] {
			return fInvokers.err(src, "%q is listed twice", p)
		}
		seen[p] = true
	}
	j := s.Authorizer.JWT
	if j == nil {
		return nil
	}
	if len(s.Invokers) > 0 {
		return fInvokers.err(src, "a runtime with a JWT authorizer has no invokers: its authorizer decides who may call it")
	}
	if err := validateDiscoveryURL(j.DiscoveryURL); err != nil {
		return fJWT.err(src, "discovery URL: %s", err)
	}
	if len(j.AllowedAudience)+len(j.AllowedClients)+len(j.AllowedScopes)+len(j.CustomClaims) == 0 {
		return fJWT.err(src, "configure at least one check: allowed audience, clients or scopes, or a custom claim")
	}
	for _, l := range []struct {
		name string
		vals []string
		re   *regexp.Regexp
	}{{"allowed audience", j.AllowedAudience, nil}, {"allowed clients", j.AllowedClients, nil}, {"allowed scopes", j.AllowedScopes, scopeRE}} {
		if len(l.vals) > MaxAuthorizerList {
			return fJWT.err(src, "%s: %d entries exceed the limit of %d", l.name, len(l.vals), MaxAuthorizerList)
		}
		for _, v := range l.vals {
			if v == "" || len(v) > 255 || l.re != nil && !l.re.MatchString(v) {
				return fJWT.err(src, "%s: %q is not a valid entry", l.name, v)
			}
		}
	}
	if len(j.CustomClaims) > MaxAuthorizerList {
		return fJWT.err(src, "custom claims: %d exceed the limit of %d", len(j.CustomClaims), MaxAuthorizerList)
	}
	for i, c := range j.CustomClaims {
		if err := validateClaim(c); err != nil {
			return fJWT.err(src, "custom claim %d: %s", i, err)
		}
	}
	return nil
}

// validateDiscoveryURL wants an OIDC discovery URL over HTTPS; plain HTTP
// only on loopback, where no one can tamper with the keys in transit.
func validateDiscoveryURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || u.User != nil || u.Fragment != "":
		return fmt.Errorf("%q is not an absolute URL", s)
	case !strings.HasSuffix(u.Path, auth.DiscoverySuffix) || u.RawQuery != "":
		return fmt.Errorf("%q must end in %s", s, auth.DiscoverySuffix)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q must use https (http only on loopback)", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateClaim(c auth.CustomClaim) error {
	if !claimNameRE.MatchString(c.Name) {
		return fmt.Errorf("name %q must be 1-255 of A-Za-z0-9_.:-", c.Name)
	}
	check := func(v string) error {
		if !claimValueRE.MatchString(v) {
			return fmt.Errorf("value %q must be 1-255 of A-Za-z0-9_.-", v)
		}
		return nil
	}
	switch {
	case c.ValueType != auth.ClaimString && c.ValueType != auth.ClaimStringArray:
		return fmt.Errorf("value type %q is not STRING or STRING_ARRAY", c.ValueType)
	case c.Operator == auth.MatchEquals && c.ValueType == auth.ClaimString,
		c.Operator == auth.MatchContains && c.ValueType == auth.ClaimStringArray:
		if len(c.Values) > 0 {
			return fmt.Errorf("%s takes one value, not a list", c.Operator)
		}
		return check(c.Value)
	case c.Operator == auth.MatchContainsAny && c.ValueType == auth.ClaimStringArray:
		if c.Value != "" || len(c.Values) == 0 || len(c.Values) > MaxAuthorizerList {
			return fmt.Errorf("CONTAINS_ANY takes a list of 1-%d values", MaxAuthorizerList)
		}
		for _, v := range c.Values {
			if err := check(v); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("operator %q does not apply to a %s claim: EQUALS takes STRING, CONTAINS and CONTAINS_ANY take STRING_ARRAY", c.Operator, c.ValueType)
}

// validatePaths keeps code and mounts away from what sandboxes must never
// see: berth's data dir and the host's secrets. An API runtime's code must
// also lie under a code root. Paths are compared after resolving symlinks
// and "..", so neither reaches around the rule.
func (rb Rulebook) validatePaths(src Source, s *Settings) error {
	// A snapshot is berth's own copy, in its data dir; the path it was
	// taken from was checked before it was taken.
	if s.Workdir != "" && s.CodeDigest == "" {
		if err := rb.checkCode(src, s.Workdir); err != nil {
			return err
		}
	}
	for i, m := range s.Mounts {
		f := setting{fmt.Sprintf("mounts[%d].source", i), fmt.Sprintf("berthSettings.mounts[%d].source", i)}
		if err := rb.checkPath(src, f, m.Source); err != nil {
			return err
		}
	}
	return nil
}

// checkCode applies the path rules to a code directory.
func (rb Rulebook) checkCode(src Source, dir string) error {
	if err := rb.checkPath(src, fWorkdir, dir); err != nil {
		return err
	}
	if src == SourceAPI && !rb.inCodeRoot(realPath(dir)) {
		return fWorkdir.err(src, "code must lie under one of the operator's code roots (code_roots in berth's config)")
	}
	return nil
}

// inCodeRootWithin reports whether real lies in a code root that itself
// lies in dir.
func (rb Rulebook) inCodeRootWithin(real, dir string) bool {
	return slices.ContainsFunc(rb.CodeRoots, func(root string) bool {
		r := realPath(root)
		return within(r, realPath(dir)) && within(real, r)
	})
}

func (rb Rulebook) inCodeRoot(real string) bool {
	return slices.ContainsFunc(rb.CodeRoots, func(root string) bool { return within(real, realPath(root)) })
}

// checkPath refuses a path that reaches into what sandboxes never see.
func (rb Rulebook) checkPath(src Source, f setting, p string) error {
	real, literal := realPath(p), filepath.Clean(p)
	for _, h := range rb.forbidden(src) {
		rh := realPath(h.path)
		switch {
		case h.path == rb.DataDir && rb.inCodeRootWithin(real, rb.DataDir):
			// A code root in the data dir (the default one is).
		case within(real, rh), within(literal, h.path):
			return f.err(src, "lies inside %s, which sandboxes never see", h.name)
		case src == SourceAPI && within(rh, real):
			return f.err(src, "contains %s, which sandboxes never see", h.name)
		}
	}
	return nil
}

// place is a forbidden path and how an error names it: berth's own paths
// are never shown to a caller.
type place struct{ path, name string }

// forbidden are the paths src's code and mounts may not reach into. The
// operator may keep code under /root or /run (the sandbox then sees that
// directory alone); callers may not.
func (rb Rulebook) forbidden(src Source) []place {
	var out []place
	for _, p := range []string{"/etc/shadow", "/etc/gshadow", "/etc/ssh", "/proc", "/sys", "/dev"} {
		out = append(out, place{p, p})
	}
	if rb.DataDir != "" {
		out = append(out, place{rb.DataDir, "berth's data directory"})
	}
	if src == SourceAPI {
		for _, p := range sandbox.HiddenPaths {
			out = append(out, place{p, p})
		}
	}
	return out
}

// realPath resolves p's symlinks and "..", as far as p exists.
func realPath(p string) string {
	p = filepath.Clean(p)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	// Resolve the longest existing parent, so a path through a symlinked
	// directory is still caught before it exists.
	dir, rest := filepath.Dir(p), filepath.Base(p)
	if dir == p {
		return p
	}
	return filepath.Join(realPath(dir), rest)
}

// within reports whether p is dir or lies under it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func (rb Rulebook) validateEnv(src Source, env map[string]string) error {
	if src == SourceAPI && len(env) > MaxEnv {
		return fEnv.err(src, "%d variables exceed the limit of %d", len(env), MaxEnv)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		switch v := env[k]; {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			return fEnv.err(src, "%q is not a valid variable name", k)
		case src == SourceAPI && len(k) > MaxEnvKeyLen:
			return fEnv.err(src, "key %q must be 1-%d characters", k, MaxEnvKeyLen)
		case src == SourceAPI && len(v) > MaxEnvValueLen:
			return fEnv.err(src, "value of %s is %d characters; the limit is %d", k, len(v), MaxEnvValueLen)
		case strings.ContainsRune(v, 0):
			return fEnv.err(src, "value of %s must not contain NUL", k)
		}
	}
	return nil
}

// validatePlacement checks where the sandbox runs and what it can reach:
// the operator's choice alone.
func (rb Rulebook) validatePlacement(src Source, s *Settings) error {
	switch s.Sandbox {
	case "", BackendAuto, BackendProcess, BackendLinux:
	default:
		return fSandbox.err(src, "%q is not one of auto, process, linux", s.Sandbox)
	}
	switch s.Network {
	case "", sandbox.NetworkNone, sandbox.NetworkHost, sandbox.NetworkEgress:
	default:
		return fNetwork.err(src, "%q is not one of none, host, egress", s.Network)
	}
	for i, m := range s.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return errdefs.Field(fmt.Sprintf("%s[%d]", fMounts.in(src), i), "source and target must be absolute paths")
		}
	}
	if src != SourceAPI {
		return nil
	}
	switch {
	case s.Sandbox != "":
		return fSandbox.err(src, "only the operator's config file chooses a sandbox backend")
	case s.Network != "":
		return fNetwork.err(src, "only the operator's config file chooses a network")
	case len(s.Mounts) > 0:
		return fMounts.err(src, "only the operator's config file adds mounts")
	}
	s.Sandbox = cmpOr(rb.APISandbox, BackendLinux)
	if s.Sandbox == BackendLinux {
		// The process backend has the host's network only.
		s.Network = cmpOr(rb.APINetwork, sandbox.NetworkNone)
	}
	return nil
}

func (rb Rulebook) validateLimits(src Source, l *Limits) error {
	for _, c := range []struct {
		f          setting
		v, def, up int64
	}{
		{fMemory, int64(l.Memory), int64(rb.DefaultLimits.Memory), int64(rb.Ceilings.Memory)},
		{fCPU, int64(l.CPU), int64(rb.DefaultLimits.CPU), int64(rb.Ceilings.CPU)},
		{fPids, l.Pids, rb.DefaultLimits.Pids, rb.Ceilings.Pids},
		{fDisk, int64(l.Disk), int64(rb.DefaultLimits.Disk), int64(rb.Ceilings.Disk)},
	} {
		if c.v < 0 {
			return c.f.err(src, "must not be negative")
		}
		if up := max(c.up, c.def); src == SourceAPI && up > 0 && c.v > up {
			return c.f.err(src, "%d is above the operator's ceiling of %d", c.v, up)
		}
	}
	l.Memory = cmpOr(l.Memory, rb.DefaultLimits.Memory)
	l.CPU = cmpOr(l.CPU, rb.DefaultLimits.CPU)
	l.Pids = cmpOr(l.Pids, rb.DefaultLimits.Pids)
	l.Disk = cmpOr(l.Disk, rb.DefaultLimits.Disk)
	return nil
}

// validateLifecycle applies AgentCore's lifecycle rules: each in 60-28800
// s for API callers (any positive duration for the operator), idle at most
// the max lifetime, idle 900 s by default but never above a given max
// lifetime.
func validateLifecycle(src Source, idle, maxLife *Duration) error {
	for _, f := range []struct {
		s setting
		v Duration
	}{{fIdle, *idle}, {fMaxLifetime, *maxLife}} {
		switch {
		case f.v < 0:
			return f.s.err(src, "must not be negative")
		case src == SourceAPI && f.v != 0 && (f.v.D() < MinLifetime || f.v.D() > MaxLifetime):
			return f.s.err(src, "%d seconds is outside %d-%d", int(f.v.D()/time.Second), int(MinLifetime/time.Second), int(MaxLifetime/time.Second))
		}
	}
	if *maxLife == 0 {
		*maxLife = Duration(DefaultMaxLifetime)
	}
	if *idle == 0 {
		*idle = min(Duration(DefaultIdleTimeout), *maxLife)
	}
	if *idle > *maxLife {
		if src == SourceAPI {
			return fIdle.err(src, "%d seconds exceeds maxLifetime %d", int(idle.D()/time.Second), int(maxLife.D()/time.Second))
		}
		return fIdle.err(src, "%s exceeds max_lifetime %s", idle.D(), maxLife.D())
	}
	return nil
}

func (rb Rulebook) validatePolicy(src Source, p *SessionPolicy) error {
	switch p.Concurrency {
	case "":
		p.Concurrency = ConcurrencyAllow
	case ConcurrencyAllow, ConcurrencyReject, ConcurrencyQueue:
	default:
		return fConcurrency.err(src, "%q is not one of allow, reject, queue", p.Concurrency)
	}
	switch {
	case p.QueueSize < 0:
		return fQueueSize.err(src, "must not be negative")
	case p.QueueTimeout < 0:
		return fQueueTimeout.err(src, "must not be negative")
	case p.MaxSessionsPerUser < 0:
		return fMaxPerUser.err(src, "must not be negative")
	case p.MaxSessions < 0:
		return fMaxSessions.err(src, "must not be negative")
	case p.MaxSessionsPerUser > 0 && !p.BindUser:
		return fMaxPerUser.err(src, "needs bind_user: true")
	}
	if p.Concurrency == ConcurrencyQueue {
		p.QueueSize = cmpOr(p.QueueSize, DefaultQueueSize)
		p.QueueTimeout = cmpOr(p.QueueTimeout, Duration(DefaultQueueTimeout))
	}
	switch p.Durability {
	case "", "none":
		p.Durability = ""
	case DurabilityState:
		p.StateMaxBytes = cmpOr(p.StateMaxBytes, DefaultStateMaxBytes)
	default:
		return fDurability.err(src, "%q is not one of none, state", p.Durability)
	}
	switch {
	case p.StateMaxBytes < 0 || (p.StateMaxBytes > 0 && !p.Durable()):
		return fStateMax.err(src, "needs durability: state, and must not be negative")
	case p.SuspendAfter < 0 || (p.SuspendAfter > 0 && !p.Durable()):
		return fSuspend.err(src, "needs durability: state (a suspended session resumes from its saved state)")
	case p.WarmPool < 0 || p.WarmPool > MaxWarmPool:
		return fWarmPool.err(src, "must be 0 to %d", MaxWarmPool)
	case src == SourceAPI && p.WarmPool > rb.APIWarmPool:
		return fWarmPool.err(src, "%d is above the operator's ceiling of %d", p.WarmPool, rb.APIWarmPool)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// The naming and format rules of AgentCore's control plane.

var (
	nameRE    = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)
	headerRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,255}$`)
	versionRE = regexp.MustCompile(`^[1-9][0-9]{0,4}$`)
	tagRE     = regexp.MustCompile(`^[a-zA-Z0-9\s._:/=+@-]*$`)
	roleARNRE = regexp.MustCompile(`^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$`)
)

// ValidateName checks a runtime or endpoint name against AgentCore's
// pattern [a-zA-Z][a-zA-Z0-9_]{0,47}.
func ValidateName(field, name string) error {
	if !nameRE.MatchString(name) {
		return errdefs.Field(field, "%q must match [a-zA-Z][a-zA-Z0-9_]{0,47}", name)
	}
	return nil
}

// restrictedHeaders may never be allow-listed: AgentCore's restricted
// names (hop-by-hop, content negotiation, caching, cookies, CORS, proxies
// and the addresses they claim, response-only headers), and what berth
// sets itself, so a caller can never spoof it.
var restrictedHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, group := range [][]string{
		{"connection", "keep-alive", "proxy-connection", "upgrade", "te", "trailer", "transfer-encoding", "expect", "host"},
		{"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "range", "if-range"},
		{"cache-control", "etag", "expires", "if-match", "if-modified-since", "if-none-match", "if-unmodified-since",
			"last-modified", "pragma", "vary"},
		{"cookie", "set-cookie", "user-agent", "referer", "from", "origin", "www-authenticate", "x-csrf-token", "x-requested-with"},
		{"forwarded", "via", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip", "x-originating-ip",
			"x-source-ip", "x-original-url", "x-original-host", "x-rewrite-url", "cf-ray", "cf-connecting-ip", "x-cache", "x-served-by"},
		{"server", "date", "location", "retry-after", "link", "strict-transport-security", "x-content-type-options",
			"x-frame-options", "x-xss-protection", "referrer-policy", "permissions-policy", "feature-policy", "clear-site-data",
			"expect-ct", "public-key-pins", "public-key-pins-report-only", "accept-ch", "accept-ch-lifetime",
			"cross-origin-embedder-policy", "cross-origin-opener-policy", "cross-origin-resource-policy"},
		{"dpr", "width", "viewport-width", "downlink", "ect", "rtt", "save-data"},
		{"workloadaccesstoken", "oauth2callbackurl"},
	} {
		for _, h := range group {
			m[h] = true
		}
	}
	return m
}()

// restrictedPrefixes are restricted name families.
var restrictedPrefixes = []string{"content-", "x-forwarded-", "sec-websocket-", "access-control-", "proxy-"}

// ValidateAllowlist applies AgentCore's request header allowlist rules.
// Authorization may be listed only on a runtime with a JWT authorizer
// (jwt): otherwise it carries a SigV4 signature, never the agent's.
func ValidateAllowlist(names []string, jwt bool) error {
	if len(names) > MaxAllowlist {
		return fmt.Errorf("%d headers exceed the limit of %d", len(names), MaxAllowlist)
	}
	seen := map[string]bool{}
	for _, h := range names {
		l := strings.ToLower(h)
		switch {
		case !headerRE.MatchString(h):
			return fmt.Errorf("%q is not a valid header name", h)
		case seen[l]:
			return fmt.Errorf("%q is listed twice", h)
		case restrictedHeaders[l], slices.ContainsFunc(restrictedPrefixes, func(p string) bool { return strings.HasPrefix(l, p) }):
			return fmt.Errorf("%q is a restricted header", h)
		case l == "authorization" && !jwt:
			return fmt.Errorf("%q may be allow-listed only on a runtime with a JWT authorizer", h)
		case strings.HasPrefix(l, "x-amz-"):
			return fmt.Errorf("%q: x-amz-* headers cannot be allow-listed", h)
		case strings.HasPrefix(l, "x-amzn-") && !strings.HasPrefix(l, "x-amzn-bedrock-agentcore-runtime-custom-"):
			return fmt.Errorf("%q: x-amzn-* headers cannot be allow-listed", h)
		}
		seen[l] = true
	}
	return nil
}

// ValidateTags checks tags against AgentCore's limits. Tags are labels
// only: none of them changes how berth runs a runtime.
func ValidateTags(field string, tags map[string]string) error {
	if len(tags) > MaxTags {
		return errdefs.Field(field, "%d tags exceed the limit of %d", len(tags), MaxTags)
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		v := tags[k]
		switch {
		case len(k) < 1 || len(k) > 128 || !tagRE.MatchString(k):
			return errdefs.Field(field, "tag key %q must be 1-128 characters of letters, digits, spaces and ._:/=+@-", k)
		case len(v) > 256 || !tagRE.MatchString(v):
			return errdefs.Field(field, "value of tag %q must be up to 256 characters of letters, digits, spaces and ._:/=+@-", k)
		case strings.HasPrefix(strings.ToLower(k), "berth:"):
			return errdefs.Field(field, "tag %q: berth: tags are reserved; tags never choose a sandbox or network, which only the operator's config file sets", k)
		}
	}
	return nil
}

// ParseVersion reads an agentRuntimeVersion string ("1" to "99999").
func ParseVersion(field, s string) (int, error) {
	if !versionRE.MatchString(s) {
		return 0, errdefs.Field(field, "%q is not a version (1 to 99999)", s)
	}
	n, _ := strconv.Atoi(s)
	return n, nil
}

// FormatVersion writes a version number as AgentCore's version string.
func FormatVersion(v int) string { return strconv.Itoa(v) }
