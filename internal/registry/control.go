package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// The control plane's domain rules: what a runtime or endpoint may look
// like, how an AgentCore artifact becomes a command berth can run, and the
// create/update/delete operations that turn a valid request into store
// writes. HTTP stays in internal/server; these functions speak in
// AgentCore's field names so the server can report them as they arrived.

// DefaultEndpoint is the endpoint that follows a runtime's latest version.
const DefaultEndpoint = api.DefaultQualifier

// pythonRuntimes are AgentCore's managed Python runtimes.
var pythonRuntimes = []string{"PYTHON_3_10", "PYTHON_3_11", "PYTHON_3_12", "PYTHON_3_13", "PYTHON_3_14"}

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

// code maps a code artifact onto what berth runs: the command, its
// working directory and, with a code store, the snapshot's digest. The
// prefix is a directory or a .zip file under the code roots; with a code
// store the version runs a snapshot of it, so a pinned endpoint runs the
// code it was created with. entryPoint runs as follows, in order:
//   - entryPoint[0] is a script for the runtime: the runtime's interpreter
//     (python3.12 for PYTHON_3_12 where it exists, else python3; node for
//     NODE_22) runs it with the rest as arguments;
//   - entryPoint[1] is the script: entryPoint[0] is a wrapper found on PATH
//     (opentelemetry-instrument, say) that runs the interpreter on it;
//   - entryPoint[0] is an executable file in the code directory.
//
// Every path must exist now and stay inside the code; a bad one is a
// FieldError.
func (c *Control) code(a ArtifactSpec) (command []string, dir, digest string, err error) {
	const base = "agentRuntimeArtifact"
	switch {
	case a.ContainerURI != "" && a.Code != nil:
		return nil, "", "", errdefs.Field(base, "give containerConfiguration or codeConfiguration, not both")
	case a.ContainerURI != "":
		return nil, "", "", nil // an image: settings pulls it
	case a.Code == nil:
		return nil, "", "", errdefs.Field(base, "codeConfiguration is required")
	}
	spec := a.Code
	const code = base + ".codeConfiguration"
	const prefix = code + ".code.s3.prefix"
	if spec.Bucket == "" && spec.Prefix == "" {
		return nil, "", "", errdefs.Field(code+".code.s3", "code.s3 is required: bucket %q and prefix the absolute path of the agent's directory", api.LocalBucket)
	}
	if spec.Bucket != api.LocalBucket {
		return nil, "", "", errdefs.Field(code+".code.s3.bucket",
			"berth does not fetch from S3: set bucket %q and prefix to the absolute path of the agent's directory on the berth host (got bucket %q)", api.LocalBucket, spec.Bucket)
	}
	if !filepath.IsAbs(spec.Prefix) {
		return nil, "", "", errdefs.Field(prefix, "must be an absolute path on the berth host")
	}
	dir = filepath.Clean(spec.Prefix)
	if err := c.reg.rules.checkCode(SourceAPI, dir); err != nil {
		return nil, "", "", err
	}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.Mode().IsRegular() && strings.HasSuffix(dir, ".zip"):
		if c.reg.code == nil {
			return nil, "", "", errdefs.Field(prefix, "this berth keeps no code store to unpack a zip into")
		}
		if digest, dir, err = c.reg.code.Unzip(dir); err != nil {
			return nil, "", "", errdefs.Field(prefix, "%v", err)
		}
	case err != nil || !fi.IsDir():
		return nil, "", "", errdefs.Field(prefix, "no such directory or .zip file under the code roots")
	}
	var interp string
	var scriptExt []string
	switch {
	case slices.Contains(pythonRuntimes, spec.Runtime):
		interp, scriptExt = c.python(spec.Runtime), []string{".py"}
	case spec.Runtime == "NODE_22":
		interp, scriptExt = "node", []string{".js", ".mjs", ".cjs"}
	default:
		return nil, "", "", errdefs.Field(code+".runtime", "%q is not one of %s, NODE_22", spec.Runtime, strings.Join(pythonRuntimes, ", "))
	}
	ep := spec.EntryPoint
	if len(ep) < 1 || len(ep) > 2 {
		return nil, "", "", errdefs.Field(code+".entryPoint", "give 1 or 2 entries, got %d", len(ep))
	}
	for i, e := range ep {
		if e == "" || len(e) > 128 {
			return nil, "", "", errdefs.Field(fmt.Sprintf("%s.entryPoint[%d]", code, i), "must be 1-128 characters")
		}
	}
	isScript := func(s string) bool { return slices.Contains(scriptExt, filepath.Ext(s)) }
	// inDir resolves an entry in the code directory; it must stay there,
	// through ".." and symlinks alike: an entry point never names a host
	// binary.
	inDir := func(i int) (string, error) {
		field := fmt.Sprintf("%s.entryPoint[%d]", code, i)
		if filepath.IsAbs(ep[i]) {
			return "", errdefs.Field(field, "%q is an absolute path; name a file in the code directory, or an interpreter or wrapper on the sandbox's PATH", ep[i])
		}
		p := filepath.Join(dir, ep[i])
		if !within(realPath(p), realPath(dir)) {
			return "", errdefs.Field(field, "%q leads out of the code directory", ep[i])
		}
		return p, nil
	}
	script := func(i int) error {
		p, err := inDir(i)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return errdefs.Field(fmt.Sprintf("%s.entryPoint[%d]", code, i), "script %s does not exist in the code directory", ep[i])
		}
		return nil
	}
	switch {
	case isScript(ep[0]):
		if err := script(0); err != nil {
			return nil, "", "", err
		}
		command = append([]string{interp}, ep...)
	case len(ep) == 2 && isScript(ep[1]) && !strings.Contains(ep[0], "/"):
		if err := script(1); err != nil {
			return nil, "", "", err
		}
		command = []string{ep[0], interp, ep[1]}
	default:
		p, err := inDir(0)
		if err != nil {
			return nil, "", "", err
		}
		if !executable(p) {
			return nil, "", "", errdefs.Field(code+".entryPoint[0]",
				"%q is neither an executable in the code directory nor a %s script for %s", ep[0], strings.Join(scriptExt, "/"), spec.Runtime)
		}
		// Relative to the working directory, so it names the snapshot's copy.
		command = append([]string{"./" + filepath.Clean(ep[0])}, ep[1:]...)
	}
	if digest == "" && c.reg.code != nil {
		if digest, dir, err = c.reg.code.Snapshot(dir); err != nil {
			if errdefs.NoSpace(err) {
				return nil, "", "", fmt.Errorf("snapshot code: %w", errdefs.DiskFull(err))
			}
			return nil, "", "", errdefs.Field(prefix, "%v", err)
		}
	}
	return command, dir, digest, nil
}

// python names the interpreter for a PYTHON_3_x runtime: python3.x where
// this host runs it (a pyenv shim for a version that is not installed does
// not count), else python3, saying which once per runtime.
func (c *Control) python(runtime string) string {
	if v, ok := c.pythons.Load(runtime); ok {
		return v.(string)
	}
	want := "python3." + strings.TrimPrefix(runtime, "PYTHON_3_")
	got := want
	if err := exec.Command(want, "-c", "").Run(); err != nil {
		got = "python3"
		c.reg.log.Warn("no interpreter for this runtime on the host; its agents run python3", "runtime", runtime, "want", want)
	} else {
		c.reg.log.Info("interpreter for runtime", "runtime", runtime, "interpreter", got)
	}
	c.pythons.Store(runtime, got)
	return got
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// RuntimeSpec is a create or update request, in the control plane's terms.
type RuntimeSpec struct {
	// Name and Tags are read on create only.
	Name string
	Tags map[string]string
	// Description nil means "left out".
	Description *string
	Artifact    ArtifactSpec
	RoleARN     string
	// NetworkMode is PUBLIC (or empty); VPC is refused.
	NetworkMode string
	// Settings carries everything else the request asked for; the
	// artifact fills its command and workdir.
	Settings Settings
}

// settings validates spec as an API caller's request and returns the
// version settings it describes, defaults filled in.
func (c *Control) settings(ctx context.Context, spec RuntimeSpec) (Settings, error) {
	if spec.Description != nil && (len(*spec.Description) < 1 || len(*spec.Description) > MaxDescription) {
		return Settings{}, errdefs.Field("description", "must be 1-%d characters", MaxDescription)
	}
	if spec.RoleARN != "" && (len(spec.RoleARN) > 2048 || !roleARNRE.MatchString(spec.RoleARN)) {
		return Settings{}, errdefs.Field("roleArn", "%q is not an IAM role ARN", spec.RoleARN)
	}
	switch spec.NetworkMode {
	case "", "PUBLIC":
	case "VPC":
		return Settings{}, errdefs.Field("networkConfiguration.networkMode", "berth has no VPC networking; use PUBLIC")
	default:
		return Settings{}, errdefs.Field("networkConfiguration.networkMode", "%q is not PUBLIC or VPC", spec.NetworkMode)
	}
	s := spec.Settings
	s.Env = maps.Clone(s.Env)
	s.HeaderAllowlist = slices.Clone(s.HeaderAllowlist)
	cmd, dir, digest, err := c.code(spec.Artifact)
	if err != nil {
		return Settings{}, err
	}
	if uri := spec.Artifact.ContainerURI; uri != "" {
		s.Image, s.Command, s.Workdir, s.CodeDigest = uri, nil, "", ""
		s.Artifact = Artifact{ContainerURI: uri, RoleARN: spec.RoleARN}
		if err := c.reg.rules.Validate(SourceAPI, &s); err != nil {
			return Settings{}, err
		}
		// Pull before the version exists, so the first session does not
		// wait for it, and the version pins the digest the tag means now.
		if err := c.reg.pullImage(ctx, &s); err != nil {
			return Settings{}, fImage.err(SourceAPI, "%v", err)
		}
		return s, nil
	}
	s.Command, s.Workdir, s.CodeDigest = cmd, dir, digest
	s.Artifact = Artifact{
		CodeLocation: filepath.Clean(spec.Artifact.Code.Prefix),
		EntryPoint:   slices.Clone(spec.Artifact.Code.EntryPoint),
		Runtime:      spec.Artifact.Code.Runtime,
		RoleARN:      spec.RoleARN,
	}
	if err := c.reg.rules.Validate(SourceAPI, &s); err != nil {
		return Settings{}, err
	}
	return s, nil
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

	pythons sync.Map // runtime → the interpreter that runs it here
}

// NewControl returns the control-plane service over reg.
func NewControl(reg *Registry) *Control { return &Control{reg: reg} }

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
	cfg, err := c.settings(ctx, spec)
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
	rt := Runtime{ID: id, Name: spec.Name, ARN: c.reg.RuntimeARN(id), Status: api.StatusReady,
		LatestVersion: 1, Tags: maps.Clone(spec.Tags), Source: SourceAPI, CreatedAt: now, UpdatedAt: now}
	if spec.Description != nil {
		rt.Description = *spec.Description
	}
	v := Version{RuntimeID: id, Version: 1, Settings: cfg, CreatedAt: now}
	if err := c.reg.store.CreateRuntime(ctx, rt, v, c.reg.rules.maxRuntimes()); err != nil {
		return Runtime{}, Version{}, fmt.Errorf("create runtime: %w", err)
	}
	c.reg.log.Info("runtime created", "runtime_id", id, "version", 1)
	c.reg.changed(ctx, Change{Kind: RuntimeCreated, RuntimeID: id})
	return rt, v, nil
}

// UpdateRuntime validates spec and appends it as the runtime's next
// version; DEFAULT moves to it, named endpoints stay where they are, and
// live sessions keep the version they started on. Every field of the new
// version comes from spec (an update replaces, it does not merge), except
// the description, which stays when spec leaves it out. Only the newest
// MaxVersions versions, and those an endpoint points at, are kept.
func (c *Control) UpdateRuntime(ctx context.Context, ref string, spec RuntimeSpec) (Runtime, Version, error) {
	rt, err := c.lookup(ctx, ref)
	if err != nil {
		return Runtime{}, Version{}, err
	}
	if err := ownedByConfig(rt, "change"); err != nil {
		return Runtime{}, Version{}, err
	}
	cfg, err := c.settings(ctx, spec)
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
	rt.Status = api.StatusReady
	if spec.Description != nil {
		rt.Description = *spec.Description
	}
	v := Version{RuntimeID: rt.ID, Version: rt.LatestVersion, Settings: cfg, CreatedAt: now}
	keep := c.reg.rules.maxVersions()
	if err := c.reg.store.UpdateRuntime(ctx, rt, v, keep); err != nil {
		return Runtime{}, Version{}, fmt.Errorf("update runtime: %w", err)
	}
	c.reg.log.Info("runtime updated", "runtime_id", rt.ID, "version", v.Version)
	c.reg.changed(ctx, Change{Kind: RuntimeUpdated, RuntimeID: rt.ID})
	if v.Version > keep {
		// Old versions went; their code may have gone with them.
		if err := c.reg.CollectCode(context.WithoutCancel(ctx)); err != nil {
			c.reg.log.Warn("collect code snapshots", "err", err)
		}
	}
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
	c.reg.log.Info("runtime deleted", "runtime_id", rt.ID)
	c.reg.changed(ctx, Change{Kind: RuntimeDeleted, RuntimeID: rt.ID})
	if err := c.reg.CollectCode(context.WithoutCancel(ctx)); err != nil {
		c.reg.log.Warn("collect code snapshots", "err", err)
	}
	rt.Status = api.StatusDeleting
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
		Status: api.StatusReady, LiveVersion: version, TargetVersion: version, CreatedAt: now, UpdatedAt: now}
	if spec.Description != nil {
		e.Description = *spec.Description
	}
	if err := c.reg.store.PutEndpoint(ctx, e); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("create endpoint: %w", err)
	}
	c.reg.log.Info("endpoint created", "runtime_id", rt.ID, "endpoint", e.Name, "version", version)
	c.reg.changed(ctx, Change{Kind: EndpointChanged, RuntimeID: rt.ID, Endpoint: e.Name})
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
	e.Status = api.StatusReady
	e.UpdatedAt = time.Now().UTC()
	if spec.Description != nil {
		e.Description = *spec.Description
	}
	if err := c.reg.store.PutEndpoint(ctx, e); err != nil {
		return Runtime{}, Endpoint{}, fmt.Errorf("update endpoint: %w", err)
	}
	c.reg.log.Info("endpoint updated", "runtime_id", rt.ID, "endpoint", e.Name, "version", version)
	c.reg.changed(ctx, Change{Kind: EndpointChanged, RuntimeID: rt.ID, Endpoint: e.Name})
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
	c.reg.log.Info("endpoint deleted", "runtime_id", rt.ID, "endpoint", name)
	c.reg.changed(ctx, Change{Kind: EndpointDeleted, RuntimeID: rt.ID, Endpoint: name})
	e.Status = api.StatusDeleting
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
