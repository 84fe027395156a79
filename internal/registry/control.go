package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// The control plane's domain rules: what a runtime or endpoint may look
// like, how an AgentCore artifact becomes a command berth can run, and the
// create/update/delete operations that turn a valid request into store
// writes. HTTP stays in internal/server; these functions speak in
// AgentCore's field names so the server can report them as they arrived.

// AgentCore's limits, as the control plane enforces them.
const (
	// MinLifetime and MaxLifetime bound idleRuntimeSessionTimeout and
	// maxLifetime, in seconds.
	MinLifetime = 60
	MaxLifetime = 28800
	// DefaultIdleSeconds and DefaultMaxLifetimeSeconds apply when a
	// request leaves them out.
	DefaultIdleSeconds        = 900
	DefaultMaxLifetimeSeconds = 28800
	// MaxAllowlist caps allow-listed request headers per runtime.
	MaxAllowlist = 20
	// MaxEnv caps environment variables; keys are 1-100 characters and
	// values at most 5000.
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
)

// LocalBucket is the reserved code.s3.bucket that tells berth the
// artifact's prefix is a directory on the berth host, not an S3 location.
const LocalBucket = "berth-local"

// DefaultEndpoint is the endpoint that follows a runtime's latest version.
const DefaultEndpoint = "DEFAULT"

// Tags berth reads as settings of its own; AgentCore has no field for
// them. They apply to every version of the runtime.
const (
	TagSandbox = "berth:sandbox"
	TagNetwork = "berth:network"
)

// Source values of Runtime.Source.
const (
	SourceConfig = "config"
	SourceAPI    = "api"
)

var (
	nameRE     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)
	headerRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,255}$`)
	versionRE  = regexp.MustCompile(`^[1-9][0-9]{0,4}$`)
	tagRE      = regexp.MustCompile(`^[a-zA-Z0-9\s._:/=+@-]*$`)
	roleARNRE  = regexp.MustCompile(`^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$`)
	protocols  = []string{"HTTP", "MCP", "A2A", "AGUI"}
	pyRuntimes = []string{"PYTHON_3_10", "PYTHON_3_11", "PYTHON_3_12", "PYTHON_3_13", "PYTHON_3_14"}
)

// ValidateName checks a runtime or endpoint name against AgentCore's
// pattern [a-zA-Z][a-zA-Z0-9_]{0,47}.
func ValidateName(field, name string) error {
	if !nameRE.MatchString(name) {
		return errdefs.Field(field, "%q must match [a-zA-Z][a-zA-Z0-9_]{0,47}", name)
	}
	return nil
}

// restrictedHeaders may never be allow-listed: they are hop-by-hop, set by
// berth, or would let a caller spoof what the agent sees.
var restrictedHeaders = map[string]bool{
	"accept": true, "accept-encoding": true, "connection": true, "content-length": true,
	"content-type": true, "cookie": true, "host": true, "keep-alive": true, "proxy-authorization": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "expect": true,
	"forwarded": true, "via": true, "set-cookie": true, "origin": true, "referer": true,
}

// ValidateAllowlist applies AgentCore's request header allowlist rules.
func ValidateAllowlist(names []string) error {
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
		case restrictedHeaders[l], strings.HasPrefix(l, "x-forwarded-"), strings.HasPrefix(l, "sec-websocket-"):
			return fmt.Errorf("%q is a restricted header", h)
		case strings.HasPrefix(l, "x-amz-"):
			return fmt.Errorf("%q: x-amz-* headers cannot be allow-listed", h)
		case strings.HasPrefix(l, "x-amzn-") && !strings.HasPrefix(l, "x-amzn-bedrock-agentcore-runtime-custom-"):
			return fmt.Errorf("%q: x-amzn-* headers cannot be allow-listed", h)
		}
		seen[l] = true
	}
	return nil
}

// Lifecycle applies AgentCore's lifecycle rules to the seconds a request
// gave (nil when left out): each in 60-28800, idle at most the max
// lifetime, idle 900 by default but never above a given max lifetime.
func Lifecycle(idle, maxLife *int) (time.Duration, time.Duration, error) {
	const (
		idleField = "lifecycleConfiguration.idleRuntimeSessionTimeout"
		maxField  = "lifecycleConfiguration.maxLifetime"
	)
	for _, f := range []struct {
		name string
		v    *int
	}{{idleField, idle}, {maxField, maxLife}} {
		if f.v != nil && (*f.v < MinLifetime || *f.v > MaxLifetime) {
			return 0, 0, errdefs.Field(f.name, "%d seconds is outside %d-%d", *f.v, MinLifetime, MaxLifetime)
		}
	}
	m := DefaultMaxLifetimeSeconds
	if maxLife != nil {
		m = *maxLife
	}
	i := min(DefaultIdleSeconds, m)
	if idle != nil {
		i = *idle
	}
	if i > m {
		return 0, 0, errdefs.Field(idleField, "%d seconds exceeds maxLifetime %d", i, m)
	}
	return time.Duration(i) * time.Second, time.Duration(m) * time.Second, nil
}

// ValidateEnv checks environment variables: at most 50, keys 1-100
// characters that a process environment can hold, values up to 5000.
func ValidateEnv(env map[string]string) error {
	const field = "environmentVariables"
	if len(env) > MaxEnv {
		return errdefs.Field(field, "%d variables exceed the limit of %d", len(env), MaxEnv)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		switch v := env[k]; {
		case len(k) < 1 || len(k) > MaxEnvKeyLen:
			return errdefs.Field(field, "key %q must be 1-%d characters", k, MaxEnvKeyLen)
		case strings.ContainsAny(k, "=\x00"):
			return errdefs.Field(field, "key %q must not contain '=' or NUL", k)
		case len(v) > MaxEnvValueLen:
			return errdefs.Field(field, "value of %s is %d characters; the limit is %d", k, len(v), MaxEnvValueLen)
		case strings.ContainsRune(v, 0):
			return errdefs.Field(field, "value of %s must not contain NUL", k)
		}
	}
	return nil
}

// ValidateTags checks tags against AgentCore's limits, and berth's own
// tags against the values berth understands.
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
		case k == TagSandbox && !slices.Contains([]string{"auto", "process", "linux"}, v):
			return errdefs.Field(field, "tag %s=%q: want auto, process or linux", k, v)
		case k == TagNetwork && !slices.Contains([]string{"none", "host", "egress"}, v):
			return errdefs.Field(field, "tag %s=%q: want none, host or egress", k, v)
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

// CodeSpec is AgentCore's codeConfiguration. berth reads code.s3.bucket
// "berth-local" as "code.s3.prefix is an absolute directory on this host".
type CodeSpec struct {
	Bucket     string
	Prefix     string
	VersionID  string
	Runtime    string // PYTHON_3_10..PYTHON_3_14 or NODE_22
	EntryPoint []string
}

// ArtifactSpec is AgentCore's agentRuntimeArtifact union.
type ArtifactSpec struct {
	ContainerURI string
	Code         *CodeSpec
}

// Command maps a code artifact onto what berth runs: the command and its
// working directory. entryPoint runs as follows, in order:
//   - entryPoint[0] is an executable file (absolute, or in the code
//     directory) that is not a .py/.js script: it runs as given;
//   - entryPoint[0] is a script for the runtime: python3 (PYTHON_3_x) or
//     node (NODE_22) runs it with the rest as arguments;
//   - entryPoint[1] is the script: entryPoint[0] is a wrapper found on PATH
//     (opentelemetry-instrument, say) that runs the interpreter on it.
//
// Every path must exist now; a missing one is a FieldError.
func (a ArtifactSpec) Command() (command []string, dir string, err error) {
	const base = "agentRuntimeArtifact"
	switch {
	case a.ContainerURI != "" && a.Code != nil:
		return nil, "", errdefs.Field(base, "give containerConfiguration or codeConfiguration, not both")
	case a.ContainerURI != "":
		return nil, "", errdefs.Field(base+".containerConfiguration",
			"berth cannot run container images yet; use codeConfiguration with code.s3.bucket %q and code.s3.prefix the absolute path of the agent's directory", LocalBucket)
	case a.Code == nil:
		return nil, "", errdefs.Field(base, "codeConfiguration is required")
	}
	c := a.Code
	const code = base + ".codeConfiguration"
	if c.Bucket == "" && c.Prefix == "" {
		return nil, "", errdefs.Field(code+".code.s3", "code.s3 is required: bucket %q and prefix the absolute path of the agent's directory", LocalBucket)
	}
	if c.Bucket != LocalBucket {
		return nil, "", errdefs.Field(code+".code.s3.bucket",
			"berth does not fetch from S3: set bucket %q and prefix to the absolute path of the agent's directory on the berth host (got bucket %q)", LocalBucket, c.Bucket)
	}
	if !filepath.IsAbs(c.Prefix) {
		return nil, "", errdefs.Field(code+".code.s3.prefix", "%q must be an absolute directory on the berth host", c.Prefix)
	}
	dir = filepath.Clean(c.Prefix)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, "", errdefs.Field(code+".code.s3.prefix", "directory %s does not exist on the berth host", dir)
	}
	var interp string
	var scriptExt []string
	switch {
	case slices.Contains(pyRuntimes, c.Runtime):
		interp, scriptExt = "python3", []string{".py"}
	case c.Runtime == "NODE_22":
		interp, scriptExt = "node", []string{".js", ".mjs", ".cjs"}
	default:
		return nil, "", errdefs.Field(code+".runtime", "%q is not one of %s, NODE_22", c.Runtime, strings.Join(pyRuntimes, ", "))
	}
	ep := c.EntryPoint
	if len(ep) < 1 || len(ep) > 2 {
		return nil, "", errdefs.Field(code+".entryPoint", "give 1 or 2 entries, got %d", len(ep))
	}
	for i, e := range ep {
		if e == "" || len(e) > 128 {
			return nil, "", errdefs.Field(fmt.Sprintf("%s.entryPoint[%d]", code, i), "must be 1-128 characters")
		}
	}
	isScript := func(s string) bool { return slices.Contains(scriptExt, filepath.Ext(s)) }
	inDir := func(s string) string {
		if filepath.IsAbs(s) {
			return filepath.Clean(s)
		}
		return filepath.Join(dir, s)
	}
	script := func(i int) error {
		p := inDir(ep[i])
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return errdefs.Field(fmt.Sprintf("%s.entryPoint[%d]", code, i), "script %s does not exist", p)
		}
		return nil
	}
	switch {
	case !isScript(ep[0]) && executable(inDir(ep[0])):
		return append([]string{inDir(ep[0])}, ep[1:]...), dir, nil
	case isScript(ep[0]):
		if err := script(0); err != nil {
			return nil, "", err
		}
		return append([]string{interp}, ep...), dir, nil
	case len(ep) == 2 && isScript(ep[1]) && !strings.Contains(ep[0], "/"):
		if err := script(1); err != nil {
			return nil, "", err
		}
		return []string{ep[0], interp, ep[1]}, dir, nil
	}
	return nil, "", errdefs.Field(code+".entryPoint[0]",
		"%q is neither an executable in %s nor a %s script for %s", ep[0], dir, strings.Join(scriptExt, "/"), c.Runtime)
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// RuntimeSpec is a create or update request, in the control plane's terms.
// Nil pointers and nil collections mean "left out".
type RuntimeSpec struct {
	// Name is set on create only.
	Name        string
	Description *string
	Artifact    ArtifactSpec
	RoleARN     string
	// NetworkMode is PUBLIC (or empty); VPC is refused.
	NetworkMode string
	// Protocol is HTTP (default), MCP, A2A or AGUI.
	Protocol        string
	IdleTimeout     *int
	MaxLifetime     *int
	HeaderAllowlist []string
	Env             map[string]string
	// Tags are set on create only.
	Tags map[string]string
}

// config validates spec and builds the version config it describes. tags
// are the runtime's tags, which carry berth's own settings.
func (spec RuntimeSpec) config(tags map[string]string) (Config, error) {
	if spec.Description != nil && (len(*spec.Description) < 1 || len(*spec.Description) > MaxDescription) {
		return Config{}, errdefs.Field("description", "must be 1-%d characters", MaxDescription)
	}
	if spec.RoleARN != "" && (len(spec.RoleARN) > 2048 || !roleARNRE.MatchString(spec.RoleARN)) {
		return Config{}, errdefs.Field("roleArn", "%q is not an IAM role ARN", spec.RoleARN)
	}
	switch spec.NetworkMode {
	case "", "PUBLIC":
	case "VPC":
		return Config{}, errdefs.Field("networkConfiguration.networkMode", "berth has no VPC networking; use PUBLIC")
	default:
		return Config{}, errdefs.Field("networkConfiguration.networkMode", "%q is not PUBLIC or VPC", spec.NetworkMode)
	}
	proto := spec.Protocol
	if proto == "" {
		proto = "HTTP"
	}
	if !slices.Contains(protocols, proto) {
		return Config{}, errdefs.Field("protocolConfiguration.serverProtocol", "%q is not one of %s", spec.Protocol, strings.Join(protocols, ", "))
	}
	idle, maxLife, err := Lifecycle(spec.IdleTimeout, spec.MaxLifetime)
	if err != nil {
		return Config{}, err
	}
	if spec.HeaderAllowlist != nil && len(spec.HeaderAllowlist) == 0 {
		return Config{}, errdefs.Field("requestHeaderConfiguration.requestHeaderAllowlist", "must list at least one header")
	}
	if err := ValidateAllowlist(spec.HeaderAllowlist); err != nil {
		return Config{}, errdefs.Field("requestHeaderConfiguration.requestHeaderAllowlist", "%s", err)
	}
	if err := ValidateEnv(spec.Env); err != nil {
		return Config{}, err
	}
	cmd, dir, err := spec.Artifact.Command()
	if err != nil {
		return Config{}, err
	}
	c := spec.Artifact.Code
	return Config{
		Command:         cmd,
		Workdir:         dir,
		Env:             maps.Clone(spec.Env),
		Sandbox:         tags[TagSandbox],
		Network:         tags[TagNetwork],
		IdleTimeout:     idle,
		MaxLifetime:     maxLife,
		HeaderAllowlist: slices.Clone(spec.HeaderAllowlist),
		Protocol:        proto,
		Artifact: Artifact{
			CodeLocation: dir,
			EntryPoint:   slices.Clone(c.EntryPoint),
			Runtime:      c.Runtime,
			RoleARN:      spec.RoleARN,
		},
	}, nil
}

// Control is the control plane's service: it validates requests and makes
// the store writes they ask for. Nothing reaches the store before a
// request has passed every check.
type Control struct {
	reg *Registry

	// mu serialises this process's control-plane writes, so a check and
	// the write it guards (an endpoint name is free, then take it) are one
	// step. Across processes the store's own checks still hold.
	mu sync.Mutex
}

// NewControl returns the control-plane service over reg.
func NewControl(reg *Registry) *Control { return &Control{reg: reg} }

// Registry returns the registry the service writes through.
// WorkloadIdentityARN is the workload identity AgentCore would create for
// a runtime; berth reports it but issues no tokens for it.
func (c *Control) WorkloadIdentityARN(name string) string {
	return fmt.Sprintf("arn:aws:bedrock-agentcore:%s:%s:workload-identity-directory/default/workload-identity/%s",
		c.reg.region, c.reg.account, name)
}

// lookup finds a runtime by the path's agentRuntimeId (ARNs and names are
// accepted too).
func (c *Control) lookup(ctx context.Context, ref string) (Runtime, error) {
	if ref == "" {
		return Runtime{}, errdefs.Field("agentRuntimeId", "must not be empty")
	}
	rt, err := c.reg.Lookup(ctx, ref)
	if err != nil {
		return Runtime{}, err
	}
	return rt, nil
}

// ownedByConfig refuses API writes to a runtime the config file declares:
// the next start would undo them.
func ownedByConfig(rt Runtime, verb string) error {
	if rt.Source != SourceConfig {
		return nil
	}
	return errdefs.Field("agentRuntimeId",
		"runtime %s is declared in berth's config file, which owns it; %s it there and restart berth", rt.Name, verb)
}

// CreateRuntime validates spec and writes the runtime, its version 1 and
// its DEFAULT endpoint. A taken name is errdefs.ErrConflict.
func (c *Control) CreateRuntime(ctx context.Context, spec RuntimeSpec) (Runtime, Version, error) {
	if err := ValidateName("agentRuntimeName", spec.Name); err != nil {
		return Runtime{}, Version{}, err
	}
	if err := ValidateTags("tags", spec.Tags); err != nil {
		return Runtime{}, Version{}, err
	}
	cfg, err := spec.config(spec.Tags)
	if err != nil {
		return Runtime{}, Version{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, err := c.reg.store.GetRuntimeByName(ctx, spec.Name); err == nil {
		return Runtime{}, Version{}, fmt.Errorf("a runtime named %s already exists (%s): %w", spec.Name, other.ID, errdefs.ErrConflict)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return Runtime{}, Version{}, fmt.Errorf("check name: %w", err)
	}
	now := time.Now().UTC()
	id := RandomID(spec.Name)
	rt := Runtime{ID: id, Name: spec.Name, ARN: c.reg.RuntimeARN(id), Status: StatusReady,
		LatestVersion: 1, Tags: maps.Clone(spec.Tags), Source: SourceAPI, CreatedAt: now, UpdatedAt: now}
	if spec.Description != nil {
		rt.Description = *spec.Description
	}
	v := Version{RuntimeID: id, Version: 1, Config: cfg, CreatedAt: now}
	if err := c.reg.store.CreateRuntime(ctx, rt, v); err != nil {
		return Runtime{}, Version{}, fmt.Errorf("create runtime: %w", err)
	}
	c.reg.Invalidate()
	c.reg.log.Info("runtime created", "runtime_id", id, "version", 1)
	return rt, v, nil
}

// UpdateRuntime validates spec and appends it as the runtime's next
// version; DEFAULT moves to it, named endpoints stay where they are, and
// live sessions keep the version they started on. Every field of the new
// version comes from spec (an update replaces, it does not merge), except
// the description, which stays when spec leaves it out.
func (c *Control) UpdateRuntime(ctx context.Context, ref string, spec RuntimeSpec) (Runtime, Version, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Version{}, err
	}
	if err := ownedByConfig(rt, "change"); err != nil {
		return Runtime{}, Version{}, err
	}
	cfg, err := spec.config(rt.Tags)
	if err != nil {
		return Runtime{}, Version{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Re-read under the lock: the version number must be the next one.
	if rt, err = c.reg.store.GetRuntime(ctx, rt.ID); err != nil {
		return Runtime{}, Version{}, fmt.Errorf("get runtime: %w", err)
	}
	if rt.LatestVersion >= 99999 {
		return Runtime{}, Version{}, fmt.Errorf("runtime %s has %d versions, the most a version string can count: %w", rt.ID, rt.LatestVersion, errdefs.ErrResourceExhausted)
	}
	now := time.Now().UTC()
	rt.LatestVersion++
	rt.UpdatedAt = now
	rt.Status = StatusReady
	if spec.Description != nil {
		rt.Description = *spec.Description
	}
	v := Version{RuntimeID: rt.ID, Version: rt.LatestVersion, Config: cfg, CreatedAt: now}
	if err := c.reg.store.UpdateRuntime(ctx, rt, v); err != nil {
		return Runtime{}, Version{}, fmt.Errorf("update runtime: %w", err)
	}
	c.reg.Invalidate()
	c.reg.log.Info("runtime updated", "runtime_id", rt.ID, "version", v.Version)
	return rt, v, nil
}

// DeleteRuntime removes a runtime with its versions and endpoints, so no
// new session can resolve it. The caller ends the runtime's live sessions
// afterwards. Session history stays.
func (c *Control) DeleteRuntime(ctx context.Context, ref string) (Runtime, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, err
	}
	if err := ownedByConfig(rt, "remove"); err != nil {
		return Runtime{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reg.store.DeleteRuntime(ctx, rt.ID); err != nil {
		return Runtime{}, fmt.Errorf("delete runtime: %w", err)
	}
	c.reg.Invalidate()
	c.reg.log.Info("runtime deleted", "runtime_id", rt.ID)
	rt.Status = StatusDeleting
	return rt, nil
}

// GetRuntime returns a runtime and one of its versions: the latest when
// version is empty.
func (c *Control) GetRuntime(ctx context.Context, ref, version string) (Runtime, Version, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Version{}, err
	}
	n := rt.LatestVersion
	if version != "" {
		if n, err = ParseVersion("version", version); err != nil {
			return Runtime{}, Version{}, err
		}
	}
	v, err := c.reg.store.GetVersion(ctx, rt.ID, n)
	if err != nil {
		return Runtime{}, Version{}, fmt.Errorf("runtime %s version %d: %w", rt.ID, n, err)
	}
	return rt, v, nil
}

// ValidatePage checks a listing's maxResults (1-100, or 0 for the default).
func ValidatePage(p Page) error {
	if p.MaxResults < 0 || p.MaxResults > 100 {
		return errdefs.Field("maxResults", "%d is outside 1-100", p.MaxResults)
	}
	if len(p.NextToken) > 2048 {
		return errdefs.Field("nextToken", "longer than 2048 characters")
	}
	return nil
}

// pageErr reports a store's rejection of a page token as a field error:
// the token is the only input a listing's store call validates.
func pageErr(err error) error {
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		return errdefs.Field("nextToken", "not a page token this listing issued")
	}
	return err
}

// ListRuntimes lists runtimes, config-file and API ones alike.
func (c *Control) ListRuntimes(ctx context.Context, p Page) ([]Runtime, string, error) {
	if err := ValidatePage(p); err != nil {
		return nil, "", err
	}
	rts, next, err := c.reg.store.ListRuntimes(ctx, p)
	if err != nil {
		return nil, "", pageErr(err)
	}
	return rts, next, nil
}

// ListVersions lists a runtime's versions, oldest first.
func (c *Control) ListVersions(ctx context.Context, ref string, p Page) (Runtime, []Version, string, error) {
	if err := ValidatePage(p); err != nil {
		return Runtime{}, nil, "", err
	}
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, nil, "", err
	}
	vs, next, err := c.reg.store.ListVersions(ctx, rt.ID, p)
	if err != nil {
		return Runtime{}, nil, "", pageErr(err)
	}
	return rt, vs, next, nil
}

// EndpointSpec is a create or update request for a named endpoint.
type EndpointSpec struct {
	// Name is set on create only.
	Name string
	// Version pins the endpoint; empty means the latest version.
	Version     string
	Description *string
	// Tags are validated and otherwise ignored: endpoints keep no tags.
	Tags map[string]string
}

func (spec EndpointSpec) validate(rt Runtime) (version int, err error) {
	if spec.Description != nil && (len(*spec.Description) < 1 || len(*spec.Description) > MaxEndpointDescription) {
		return 0, errdefs.Field("description", "must be 1-%d characters", MaxEndpointDescription)
	}
	if err := ValidateTags("tags", spec.Tags); err != nil {
		return 0, err
	}
	if spec.Version == "" {
		return rt.LatestVersion, nil
	}
	n, err := ParseVersion("agentRuntimeVersion", spec.Version)
	if err != nil {
		return 0, err
	}
	if n > rt.LatestVersion {
		return 0, errdefs.Field("agentRuntimeVersion", "runtime %s has no version %d (latest is %d)", rt.ID, n, rt.LatestVersion)
	}
	return n, nil
}

// CreateEndpoint adds a named endpoint pinned to a version. A taken name
// is errdefs.ErrConflict; more than MaxEndpoints is errdefs.ErrResourceExhausted.
func (c *Control) CreateEndpoint(ctx context.Context, ref string, spec EndpointSpec) (Runtime, Endpoint, error) {
	if err := ValidateName("name", spec.Name); err != nil {
		return Runtime{}, Endpoint{}, err
	}
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Endpoint{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rt, err = c.reg.store.GetRuntime(ctx, rt.ID); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("get runtime: %w", err)
	}
	version, err := spec.validate(rt)
	if err != nil {
		return Runtime{}, Endpoint{}, err
	}
	if _, err := c.reg.store.GetEndpoint(ctx, rt.ID, spec.Name); err == nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("runtime %s already has an endpoint named %s: %w", rt.ID, spec.Name, errdefs.ErrConflict)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return Runtime{}, Endpoint{}, fmt.Errorf("check endpoint name: %w", err)
	}
	existing, _, err := c.reg.store.ListEndpoints(ctx, rt.ID, Page{MaxResults: MaxEndpoints + 1})
	if err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("count endpoints: %w", err)
	}
	if len(existing) >= MaxEndpoints {
		return Runtime{}, Endpoint{}, fmt.Errorf("runtime %s has %d endpoints, the most AgentCore allows: %w", rt.ID, len(existing), errdefs.ErrResourceExhausted)
	}
	now := time.Now().UTC()
	e := Endpoint{RuntimeID: rt.ID, Name: spec.Name, ID: RandomID(spec.Name), ARN: c.reg.EndpointARN(rt.ID, spec.Name),
		Status: StatusReady, LiveVersion: version, TargetVersion: version, CreatedAt: now, UpdatedAt: now}
	if spec.Description != nil {
		e.Description = *spec.Description
	}
	if err := c.reg.store.PutEndpoint(ctx, e); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("create endpoint: %w", err)
	}
	c.reg.Invalidate()
	c.reg.log.Info("endpoint created", "runtime_id", rt.ID, "endpoint", e.Name, "version", version)
	return rt, e, nil
}

// UpdateEndpoint moves a named endpoint to another version or changes its
// description. Live sessions keep the version they started on; new ones
// get the new version. DEFAULT cannot be moved: it follows the latest.
func (c *Control) UpdateEndpoint(ctx context.Context, ref, name string, spec EndpointSpec) (Runtime, Endpoint, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Endpoint{}, err
	}
	if name == DefaultEndpoint {
		return Runtime{}, Endpoint{}, errdefs.Field("endpointName", "DEFAULT always follows the latest version; create a named endpoint to pin one")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rt, err = c.reg.store.GetRuntime(ctx, rt.ID); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("get runtime: %w", err)
	}
	e, err := c.reg.store.GetEndpoint(ctx, rt.ID, name)
	if err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("endpoint %s of runtime %s: %w", name, rt.ID, err)
	}
	version, err := spec.validate(rt)
	if err != nil {
		return Runtime{}, Endpoint{}, err
	}
	if spec.Version == "" {
		// Left out: keep the pin rather than jump to the latest.
		version = e.LiveVersion
	}
	e.LiveVersion, e.TargetVersion = version, version
	e.Status = StatusReady
	e.UpdatedAt = time.Now().UTC()
	if spec.Description != nil {
		e.Description = *spec.Description
	}
	if err := c.reg.store.PutEndpoint(ctx, e); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("update endpoint: %w", err)
	}
	c.reg.Invalidate()
	c.reg.log.Info("endpoint updated", "runtime_id", rt.ID, "endpoint", e.Name, "version", version)
	return rt, e, nil
}

// DeleteEndpoint removes a named endpoint. New calls to it fail; its live
// sessions run on until they end. DEFAULT goes only with its runtime.
func (c *Control) DeleteEndpoint(ctx context.Context, ref, name string) (Runtime, Endpoint, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Endpoint{}, err
	}
	if name == DefaultEndpoint {
		return Runtime{}, Endpoint{}, errdefs.Field("endpointName", "DEFAULT goes only with its runtime")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.reg.store.GetEndpoint(ctx, rt.ID, name)
	if err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("endpoint %s of runtime %s: %w", name, rt.ID, err)
	}
	if err := c.reg.store.DeleteEndpoint(ctx, rt.ID, name); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("delete endpoint: %w", err)
	}
	c.reg.Invalidate()
	c.reg.log.Info("endpoint deleted", "runtime_id", rt.ID, "endpoint", name)
	e.Status = StatusDeleting
	return rt, e, nil
}

// GetEndpoint returns one endpoint of a runtime.
func (c *Control) GetEndpoint(ctx context.Context, ref, name string) (Runtime, Endpoint, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Endpoint{}, err
	}
	e, err := c.reg.store.GetEndpoint(ctx, rt.ID, name)
	if err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("endpoint %s of runtime %s: %w", name, rt.ID, err)
	}
	return rt, e, nil
}

// ListEndpoints lists a runtime's endpoints by name.
func (c *Control) ListEndpoints(ctx context.Context, ref string, p Page) (Runtime, []Endpoint, string, error) {
	if err := ValidatePage(p); err != nil {
		return Runtime{}, nil, "", err
	}
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, nil, "", err
	}
	es, next, err := c.reg.store.ListEndpoints(ctx, rt.ID, p)
	if err != nil {
		return Runtime{}, nil, "", pageErr(err)
	}
	return rt, es, next, nil
}
