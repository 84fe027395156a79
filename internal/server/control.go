package server

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
)

// The bedrock-agentcore-control subset berth serves: runtimes, their
// versions and endpoints, on the paths, status codes and JSON members the
// AWS SDKs use (restJson1; note the trailing slashes). Domain rules live in
// registry.Control; this file only translates between the wire and it.

// maxControlBody caps a control-plane request body.
const maxControlBody = 1 << 20

// controlAPI serves the control plane for one Server.
type controlAPI struct {
	s   *Server
	ctl *registry.Control
}

// registerControl adds the bedrock-agentcore-control routes.
func (s *Server) registerControl() {
	c := &controlAPI{s: s, ctl: registry.NewControl(s.reg)}
	// Reads are for any signed-in principal (a non-admin sees environment
	// variable names, not values); writes are for admins.
	for _, r := range []struct {
		pattern string
		a       access
		h       http.HandlerFunc
	}{
		{"PUT /runtimes/{$}", accessAdmin, c.createRuntime},
		{"POST /runtimes/{$}", accessSignedIn, c.listRuntimes},
		{"GET /runtimes/{id}/{$}", accessSignedIn, c.getRuntime},
		{"PUT /runtimes/{id}/{$}", accessAdmin, c.updateRuntime},
		{"DELETE /runtimes/{id}/{$}", accessAdmin, c.deleteRuntime},
		{"POST /runtimes/{id}/versions/{$}", accessSignedIn, c.listVersions},
		{"PUT /runtimes/{id}/runtime-endpoints/{$}", accessAdmin, c.createEndpoint},
		{"POST /runtimes/{id}/runtime-endpoints/{$}", accessSignedIn, c.listEndpoints},
		{"GET /runtimes/{id}/runtime-endpoints/{name}/{$}", accessSignedIn, c.getEndpoint},
		{"PUT /runtimes/{id}/runtime-endpoints/{name}/{$}", accessAdmin, c.updateEndpoint},
		{"DELETE /runtimes/{id}/runtime-endpoints/{name}/{$}", accessAdmin, c.deleteEndpoint},
	} {
		s.handle(r.pattern, r.a, r.h)
	}
}

// Handlers.

func (c *controlAPI) createRuntime(w http.ResponseWriter, r *http.Request) {
	spec, err := createSpec(r)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, v, err := c.ctl.CreateRuntime(r.Context(), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.AgentRuntime{
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		AgentRuntimeVersion:     registry.FormatVersion(v.Version),
		WorkloadIdentityDetails: &api.WorkloadIdentity{WorkloadIdentityARN: c.ctl.WorkloadIdentityARN(rt.Name)},
		CreatedAt:               rt.CreatedAt,
		Status:                  rt.Status,
	})
}

func (c *controlAPI) updateRuntime(w http.ResponseWriter, r *http.Request) {
	var req api.RuntimeInput
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	// Name and tags are not part of UpdateAgentRuntime; a body that has
	// them anyway is not changing them.
	spec, err := runtimeSpec(&req)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, v, err := c.ctl.UpdateRuntime(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.AgentRuntime{
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		AgentRuntimeVersion:     registry.FormatVersion(v.Version),
		WorkloadIdentityDetails: &api.WorkloadIdentity{WorkloadIdentityARN: c.ctl.WorkloadIdentityARN(rt.Name)},
		CreatedAt:               rt.CreatedAt,
		LastUpdatedAt:           v.CreatedAt,
		Status:                  rt.Status,
	})
}

func (c *controlAPI) getRuntime(w http.ResponseWriter, r *http.Request) {
	rt, v, err := c.ctl.GetRuntime(r.Context(), r.PathValue("id"), r.URL.Query().Get("version"))
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	_, admin := c.s.caller(r)
	writeJSON(w, http.StatusOK, c.runtimeOut(rt, v, admin))
}

// hiddenValue stands for an environment variable's value shown to a
// non-admin: values are typically API keys.
const hiddenValue = "(hidden: only admins see values)"

// runtimeOut is GetAgentRuntime's answer for one version; admin shows
// environment variables' values.
func (c *controlAPI) runtimeOut(rt registry.Runtime, v registry.Version, admin bool) api.AgentRuntime {
	cfg := v.Settings
	idle, maxLife := int(cfg.IdleTimeout.D()/time.Second), int(cfg.MaxLifetime.D()/time.Second)
	out := api.AgentRuntime{
		AgentRuntimeArn:        rt.ARN,
		AgentRuntimeName:       rt.Name,
		AgentRuntimeID:         rt.ID,
		AgentRuntimeVersion:    registry.FormatVersion(v.Version),
		CreatedAt:              rt.CreatedAt,
		LastUpdatedAt:          v.CreatedAt,
		RoleArn:                cfg.Artifact.RoleARN,
		NetworkConfiguration:   &api.NetworkConfiguration{NetworkMode: "PUBLIC"},
		Status:                 rt.Status,
		LifecycleConfiguration: &api.Lifecycle{IdleRuntimeSessionTimeout: &idle, MaxLifetime: &maxLife},
		Description:            rt.Description,
		ProtocolConfiguration:  &api.ProtocolConfiguration{ServerProtocol: string(cfg.Protocol)},
		EnvironmentVariables:   envOut(cfg.Env, admin),
		BerthSource:            string(rt.Source),
		BerthCommand:           cfg.Command,
		BerthWorkdir:           cfg.Workdir,
		BerthSettings:          berthSettingsOut(cfg),
	}
	if rt.Source == registry.SourceAPI {
		out.WorkloadIdentityDetails = &api.WorkloadIdentity{WorkloadIdentityARN: c.ctl.WorkloadIdentityARN(rt.Name)}
	}
	out.AgentRuntimeArtifact = artifactOut(cfg)
	if len(cfg.HeaderAllowlist) > 0 {
		out.RequestHeaderConfiguration = &api.RequestHeaderConfiguration{RequestHeaderAllowlist: cfg.HeaderAllowlist}
	}
	if cfg.SessionStorage != "" {
		out.FilesystemConfigurations = []api.FilesystemConfiguration{{SessionStorage: &api.SessionStorage{MountPath: cfg.SessionStorage}}}
	}
	if j := cfg.Authorizer.JWT; j != nil {
		out.AuthorizerConfiguration = &api.AuthorizerConfiguration{CustomJWTAuthorizer: jwtOut(j)}
	}
	return out
}

func envOut(env map[string]string, admin bool) map[string]string {
	if admin || len(env) == 0 {
		return env
	}
	out := make(map[string]string, len(env))
	for k := range env {
		out[k] = hiddenValue
	}
	return out
}

// jwtIn turns AgentCore's customJWTAuthorizer into berth's; the rulebook
// checks it.
func jwtIn(in *api.CustomJWTAuthorizer) (*auth.JWTAuthorizer, error) {
	const field = "authorizerConfiguration.customJWTAuthorizer"
	for _, u := range []struct {
		member string
		raw    json.RawMessage
	}{
		{"advertisedScopeMapping", in.AdvertisedScopeMapping},
		{"allowedWorkloadConfiguration", in.AllowedWorkloadConfiguration},
		{"privateEndpoint", in.PrivateEndpoint},
		{"privateEndpointOverrides", in.PrivateEndpointOverrides},
	} {
		if present(u.raw) {
			return nil, validation(field+"."+u.member, field+"."+u.member+": berth does not support it; leave it out")
		}
	}
	out := &auth.JWTAuthorizer{DiscoveryURL: in.DiscoveryURL, AllowedAudience: in.AllowedAudience,
		AllowedClients: in.AllowedClients, AllowedScopes: in.AllowedScopes}
	for i, c := range in.CustomClaims {
		m := c.AuthorizingClaimMatchValue
		cc := auth.CustomClaim{Name: c.InboundTokenClaimName, ValueType: c.InboundTokenClaimValueType,
			Operator: m.ClaimMatchOperator, Values: m.ClaimMatchValue.MatchValueStringList}
		if v := m.ClaimMatchValue.MatchValueString; v != nil {
			if len(cc.Values) > 0 {
				return nil, validation(fmt.Sprintf("%s.customClaims[%d]", field, i), "set matchValueString or matchValueStringList, not both")
			}
			cc.Value = *v
		}
		out.CustomClaims = append(out.CustomClaims, cc)
	}
	return out, nil
}

// jwtOut shows berth's JWT authorizer as AgentCore's.
func jwtOut(j *auth.JWTAuthorizer) *api.CustomJWTAuthorizer {
	out := &api.CustomJWTAuthorizer{DiscoveryURL: j.DiscoveryURL, AllowedAudience: j.AllowedAudience,
		AllowedClients: j.AllowedClients, AllowedScopes: j.AllowedScopes}
	for _, c := range j.CustomClaims {
		v := api.ClaimMatchValue{MatchValueStringList: c.Values}
		if c.Value != "" {
			v.MatchValueString = &c.Value
		}
		out.CustomClaims = append(out.CustomClaims, api.CustomClaimValidation{
			InboundTokenClaimName:      c.Name,
			InboundTokenClaimValueType: c.ValueType,
			AuthorizingClaimMatchValue: api.AuthorizingClaimMatchValue{ClaimMatchValue: v, ClaimMatchOperator: c.Operator},
		})
	}
	return out
}

func (c *controlAPI) deleteRuntime(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("version") != "" {
		c.s.writeError(w, r, validation("version", "berth deletes whole runtimes; versions are immutable history"))
		return
	}
	if err := validClientToken(q.Get("clientToken")); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	// The registry's watchers end the runtime's live sessions before this
	// returns.
	rt, err := c.ctl.DeleteRuntime(r.Context(), r.PathValue("id"))
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.DeleteResult{Status: rt.Status, AgentRuntimeID: rt.ID})
}

func (c *controlAPI) listRuntimes(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rts, next, err := c.ctl.ListRuntimes(r.Context(), p)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	out := api.AgentRuntimeList{AgentRuntimes: make([]api.AgentRuntime, 0, len(rts)), NextToken: next}
	for _, rt := range rts {
		out.AgentRuntimes = append(out.AgentRuntimes, summary(rt, rt.LatestVersion, rt.UpdatedAt))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *controlAPI) listVersions(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, vs, next, err := c.ctl.ListVersions(r.Context(), r.PathValue("id"), p)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	out := api.AgentRuntimeList{AgentRuntimes: make([]api.AgentRuntime, 0, len(vs)), NextToken: next}
	for _, v := range vs {
		out.AgentRuntimes = append(out.AgentRuntimes, summary(rt, v.Version, v.CreatedAt))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *controlAPI) createEndpoint(w http.ResponseWriter, r *http.Request) {
	var req api.EndpointInput
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	if req.Name == "" {
		c.s.writeError(w, r, validation("name", "name is required"))
		return
	}
	spec, err := endpointSpec(&req)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	spec.Name = req.Name
	rt, e, err := c.ctl.CreateEndpoint(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.Endpoint{
		TargetVersion:           registry.FormatVersion(e.TargetVersion),
		AgentRuntimeEndpointArn: e.ARN,
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		EndpointName:            e.Name,
		Status:                  e.Status,
		CreatedAt:               e.CreatedAt,
	})
}

func (c *controlAPI) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	var req api.EndpointInput
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	spec, err := endpointSpec(&req)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, e, err := c.ctl.UpdateEndpoint(r.Context(), r.PathValue("id"), r.PathValue("name"), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, endpoint(rt, e))
}

func (c *controlAPI) getEndpoint(w http.ResponseWriter, r *http.Request) {
	rt, e, err := c.ctl.GetEndpoint(r.Context(), r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, endpoint(rt, e))
}

func (c *controlAPI) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := validClientToken(r.URL.Query().Get("clientToken")); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, e, err := c.ctl.DeleteEndpoint(r.Context(), r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.DeleteResult{Status: e.Status, AgentRuntimeID: rt.ID, EndpointName: e.Name})
}

func (c *controlAPI) listEndpoints(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, es, next, err := c.ctl.ListEndpoints(r.Context(), r.PathValue("id"), p)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	out := api.EndpointList{RuntimeEndpoints: make([]api.Endpoint, 0, len(es)), NextToken: next}
	for _, e := range es {
		out.RuntimeEndpoints = append(out.RuntimeEndpoints, endpoint(rt, e))
	}
	writeJSON(w, http.StatusOK, out)
}

// Translation.

// createSpec reads a CreateAgentRuntime body into the registry's terms.
func createSpec(r *http.Request) (registry.RuntimeSpec, error) {
	var req api.RuntimeInput
	if err := decodeControlBody(r, &req); err != nil {
		return registry.RuntimeSpec{}, err
	}
	if req.AgentRuntimeName == "" {
		return registry.RuntimeSpec{}, validation("agentRuntimeName", "agentRuntimeName is required")
	}
	spec, err := runtimeSpec(&req)
	if err != nil {
		return registry.RuntimeSpec{}, err
	}
	spec.Name, spec.Tags = req.AgentRuntimeName, req.Tags
	return spec, nil
}

// runtimeSpec turns a create or update body into the registry's terms,
// refusing the features berth cannot honour. The registry's rulebook
// checks every value.
func runtimeSpec(req *api.RuntimeInput) (registry.RuntimeSpec, error) {
	for _, u := range []struct {
		field string
		raw   json.RawMessage
		why   string
	}{
		{"capacityProviderConfiguration", req.CapacityProviderConfiguration, "berth has no capacity providers (the Instances compute type)"},
		{"hooksConfiguration", req.HooksConfiguration, "berth runs no build hooks; warm sessions up with a warm pool (berthSettings.sessions.warmPool) instead"},
		{"allowedPorts", req.AllowedPorts, "berth does not expose session ports"},
	} {
		if present(u.raw) {
			return registry.RuntimeSpec{}, validation(u.field, u.field+": "+u.why)
		}
	}
	if err := validClientTokenPtr(req.ClientToken); err != nil {
		return registry.RuntimeSpec{}, err
	}
	switch req.PlatformVersion {
	case "", "V1", "V2":
	default:
		return registry.RuntimeSpec{}, validation("platformVersion", "platformVersion must be V1 or V2")
	}
	if m := req.MetadataConfiguration; present(m) {
		var mc struct {
			RequireMMDSV2 *bool `json:"requireMMDSV2"`
		}
		if json.Unmarshal(m, &mc) != nil || mc.RequireMMDSV2 == nil {
			return registry.RuntimeSpec{}, validation("metadataConfiguration", "metadataConfiguration takes requireMMDSV2 (true or false)")
		}
	}
	spec := registry.RuntimeSpec{
		Description: req.Description,
		RoleARN:     req.RoleArn,
		Settings:    registry.Settings{Env: req.EnvironmentVariables},
	}
	// A missing artifact is the registry's to report, after it has checked
	// that the runtime may be changed at all.
	if a := req.AgentRuntimeArtifact; a != nil {
		if a.Container != nil {
			// An empty URI still asks for a container.
			spec.Artifact.ContainerURI = cmp.Or(a.Container.ContainerURI, "(empty)")
		}
		if cc := a.Code; cc != nil {
			code := &registry.CodeSpec{Runtime: cc.Runtime, EntryPoint: cc.EntryPoint}
			if cc.Code != nil && cc.Code.S3 != nil {
				code.Bucket, code.Prefix, code.VersionID = cc.Code.S3.Bucket, cc.Code.S3.Prefix, cc.Code.S3.VersionID
			}
			spec.Artifact.Code = code
		}
	}
	if n := req.NetworkConfiguration; n != nil {
		spec.NetworkMode = n.NetworkMode
		if n.NetworkMode == "" {
			return registry.RuntimeSpec{}, validation("networkConfiguration.networkMode", "networkMode is required")
		}
	}
	if p := req.ProtocolConfiguration; p != nil {
		if p.Port != nil || p.Path != nil {
			return registry.RuntimeSpec{}, validation("protocolConfiguration",
				"berth assigns each sandbox its port (the PORT variable) and serves the protocol's standard path; leave port and path out")
		}
		if p.ServerProtocol == "" {
			return registry.RuntimeSpec{}, validation("protocolConfiguration.serverProtocol", "serverProtocol is required")
		}
		spec.Settings.Protocol = registry.Protocol(p.ServerProtocol)
	}
	if l := req.LifecycleConfiguration; l != nil {
		for _, f := range []struct {
			name string
			in   *int
			out  *registry.Duration
		}{
			{"lifecycleConfiguration.idleRuntimeSessionTimeout", l.IdleRuntimeSessionTimeout, &spec.Settings.IdleTimeout},
			{"lifecycleConfiguration.maxLifetime", l.MaxLifetime, &spec.Settings.MaxLifetime},
		} {
			if f.in == nil {
				continue
			}
			if *f.in <= 0 {
				return registry.RuntimeSpec{}, validation(f.name, fmt.Sprintf("%d seconds is outside 60-28800", *f.in))
			}
			*f.out = registry.Duration(time.Duration(*f.in) * time.Second)
		}
	}
	if h := req.RequestHeaderConfiguration; h != nil {
		if len(h.RequestHeaderAllowlist) == 0 {
			return registry.RuntimeSpec{}, validation("requestHeaderConfiguration.requestHeaderAllowlist", "must list at least one header")
		}
		spec.Settings.HeaderAllowlist = h.RequestHeaderAllowlist
	}
	if b := req.BerthSettings; b != nil {
		berthSettingsIn(b, &spec.Settings)
	}
	if err := filesystemsIn(req.FilesystemConfigurations, &spec.Settings); err != nil {
		return registry.RuntimeSpec{}, err
	}
	if a := req.AuthorizerConfiguration; a != nil {
		if a.CustomJWTAuthorizer == nil {
			return registry.RuntimeSpec{}, validation("authorizerConfiguration", "authorizerConfiguration needs customJWTAuthorizer")
		}
		j, err := jwtIn(a.CustomJWTAuthorizer)
		if err != nil {
			return registry.RuntimeSpec{}, err
		}
		spec.Settings.Authorizer.JWT = j
	}
	return spec, nil
}

// filesystemsIn reads filesystemConfigurations with AgentCore's rules: at
// most 5, at most one sessionStorage, mount paths unique and not nested.
// The rulebook checks the session storage path itself.
func filesystemsIn(fss []api.FilesystemConfiguration, s *registry.Settings) error {
	const field = "filesystemConfigurations"
	if len(fss) > 5 {
		return validation(field, "at most 5 filesystem configurations")
	}
	for i, fs := range fss {
		name := fmt.Sprintf("%s[%d]", field, i)
		n := 0
		for _, set := range []bool{fs.SessionStorage != nil, present(fs.S3FilesAccessPoint), present(fs.EfsAccessPoint)} {
			if set {
				n++
			}
		}
		switch {
		case n != 1:
			return validation(name, "give exactly one of sessionStorage, s3FilesAccessPoint, efsAccessPoint")
		case present(fs.S3FilesAccessPoint) || present(fs.EfsAccessPoint):
			return validation(name, "S3 Files and EFS access points need AWS (and a VPC); berth serves sessionStorage")
		case s.SessionStorage != "":
			return validation(name, "at most one sessionStorage")
		}
		s.SessionStorage = fs.SessionStorage.MountPath
	}
	return nil
}

// artifactOut is the artifact a version echoes: the control plane's own,
// or for a config runtime the codeConfiguration form of its command and
// directory (within AgentCore's member limits: a non-empty prefix and at
// most two entry points; berthCommand has the whole command), so a get →
// update round trip always finds one the SDKs accept.
func artifactOut(s registry.Settings) *api.Artifact {
	if s.Image != "" {
		return &api.Artifact{Container: &api.ContainerConfiguration{ContainerURI: s.Image}}
	}
	if a := s.Artifact; a.Runtime != "" {
		return api.LocalCode(a.CodeLocation, a.Runtime, a.EntryPoint...)
	}
	runtime, prefix, entry := "PYTHON_3_12", cmp.Or(s.Artifact.CodeLocation, s.Workdir), s.Command
	if len(entry) > 0 {
		if strings.HasPrefix(filepath.Base(entry[0]), "node") {
			runtime = "NODE_22"
		}
		if prefix == "" && filepath.IsAbs(entry[0]) {
			prefix = filepath.Dir(entry[0])
		}
	}
	if len(entry) > 2 {
		entry = entry[:2]
	}
	return api.LocalCode(cmp.Or(prefix, "/"), runtime, entry...)
}

// berthSettingsIn copies berth's own members into s; the rulebook judges
// them, the operator-only ones included.
func berthSettingsIn(b *api.BerthSettings, s *registry.Settings) {
	s.Sandbox = registry.Backend(b.Sandbox)
	s.Network = sandbox.NetworkMode(b.Network)
	s.Commands = b.Commands
	for _, m := range b.Mounts {
		s.Mounts = append(s.Mounts, sandbox.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if l := b.Limits; l != nil {
		s.Limits = registry.Limits{Memory: registry.Bytes(l.MemoryBytes), CPU: registry.Millicores(l.CPU * 1000),
			Pids: l.Pids, Disk: registry.Bytes(l.DiskBytes)}
	}
	s.Invokers = b.Invokers
	if p := b.Sessions; p != nil {
		s.Sessions = registry.SessionPolicy{
			Concurrency:        registry.Concurrency(p.Concurrency),
			QueueSize:          p.QueueSize,
			QueueTimeout:       seconds(p.QueueTimeoutSeconds),
			MaxSessions:        p.MaxSessions,
			BindUser:           p.BindUser,
			MaxSessionsPerUser: p.MaxSessionsPerUser,
			Durability:         registry.Durability(p.Durability),
			StateMaxBytes:      registry.Bytes(p.StateMaxBytes),
			SuspendAfter:       seconds(p.SuspendAfterSeconds),
			WarmPool:           p.WarmPool,
		}
	}
}

func seconds(f float64) registry.Duration { return registry.Duration(f * float64(time.Second)) }

// berthSettingsOut shows berth's own settings of a version.
func berthSettingsOut(s registry.Settings) *api.BerthSettings {
	p := s.Sessions
	commands := s.CommandsEnabled()
	out := &api.BerthSettings{
		Sandbox:  string(s.Sandbox),
		Network:  string(s.Network),
		Commands: &commands,
		Limits: &api.Limits{MemoryBytes: int64(s.Memory), CPU: float64(s.CPU) / 1000,
			Pids: s.Pids, DiskBytes: int64(s.Disk)},
		Sessions: &api.SessionPolicy{
			Concurrency:         string(p.Concurrency),
			QueueSize:           p.QueueSize,
			QueueTimeoutSeconds: p.QueueTimeout.D().Seconds(),
			MaxSessions:         p.MaxSessions,
			BindUser:            p.BindUser,
			MaxSessionsPerUser:  p.MaxSessionsPerUser,
			Durability:          string(p.Durability),
			StateMaxBytes:       int64(p.StateMaxBytes),
			SuspendAfterSeconds: p.SuspendAfter.D().Seconds(),
			WarmPool:            p.WarmPool,
		},
		Invokers: s.Invokers,
	}
	for _, m := range s.Mounts {
		out.Mounts = append(out.Mounts, api.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	return out
}

func endpointSpec(req *api.EndpointInput) (registry.EndpointSpec, error) {
	if err := validClientTokenPtr(req.ClientToken); err != nil {
		return registry.EndpointSpec{}, err
	}
	spec := registry.EndpointSpec{Description: req.Description, Tags: req.Tags}
	if req.AgentRuntimeVersion != nil {
		if *req.AgentRuntimeVersion == "" {
			return registry.EndpointSpec{}, validation("agentRuntimeVersion", "agentRuntimeVersion must not be empty")
		}
		spec.Version = *req.AgentRuntimeVersion
	}
	return spec, nil
}

func summary(rt registry.Runtime, version int, updated time.Time) api.AgentRuntime {
	return api.AgentRuntime{
		AgentRuntimeArn:     rt.ARN,
		AgentRuntimeID:      rt.ID,
		AgentRuntimeVersion: registry.FormatVersion(version),
		AgentRuntimeName:    rt.Name,
		Description:         rt.Description,
		LastUpdatedAt:       updated,
		Status:              rt.Status,
		BerthSource:         string(rt.Source),
	}
}

func endpoint(rt registry.Runtime, e registry.Endpoint) api.Endpoint {
	return api.Endpoint{
		Name:                    e.Name,
		ID:                      e.ID,
		AgentRuntimeEndpointArn: e.ARN,
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		LiveVersion:             registry.FormatVersion(e.LiveVersion),
		TargetVersion:           registry.FormatVersion(e.TargetVersion),
		Status:                  e.Status,
		Description:             e.Description,
		CreatedAt:               e.CreatedAt,
		LastUpdatedAt:           e.UpdatedAt,
	}
}

// decodeControlBody reads a JSON body into v. An empty body leaves v zero.
func decodeControlBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
	if te := typedError(nil); errors.As(err, &te) {
		return err
	}
	if err != nil {
		return validation("body", "read body: "+err.Error())
	}
	if len(data) > maxControlBody {
		return validation("body", "request body exceeds "+itoa(maxControlBody)+" bytes")
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &apiError{typ: api.ErrValidation, msg: te.Field + ": wrong JSON type (" + te.Value + ")", reason: "CannotParse",
				fields: []api.FieldError{{Name: te.Field, Message: "wrong JSON type (" + te.Value + ")"}}}
		}
		return &apiError{typ: api.ErrValidation, msg: "malformed JSON body: " + err.Error(), reason: "CannotParse"}
	}
	return nil
}

// page reads a listing's maxResults and nextToken query parameters.
func page(r *http.Request) (registry.Page, error) {
	q := r.URL.Query()
	p := registry.Page{NextToken: q.Get("nextToken")}
	if s := q.Get("maxResults"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return p, validation("maxResults", "maxResults must be an integer from 1 to 100, got "+strconv.Quote(s))
		}
		p.MaxResults = n
	}
	return p, nil
}

var clientTokenRE = regexp.MustCompile(`^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,256}$`)

// validClientToken checks an idempotency token's shape. berth does not
// replay by token: a retried create meets ConflictException instead.
func validClientToken(tok string) error {
	if tok == "" {
		return nil
	}
	if len(tok) < 33 || len(tok) > 256 || !clientTokenRE.MatchString(tok) {
		return validation("clientToken", "clientToken must be 33-256 letters, digits and hyphens")
	}
	return nil
}

func validClientTokenPtr(tok *string) error {
	if tok == nil {
		return nil
	}
	if *tok == "" {
		return validation("clientToken", "clientToken must not be empty")
	}
	return validClientToken(*tok)
}

// present reports whether a raw member was sent with a non-null value.
func present(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
