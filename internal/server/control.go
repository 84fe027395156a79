package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// The bedrock-agentcore-control subset berth serves: runtimes, their
// versions and endpoints, on the paths, status codes and JSON members the
// AWS SDKs use (restJson1; note the trailing slashes). Domain rules live in
// registry.Control; this file only translates between the wire and it.

// maxControlBody caps a control-plane request body.
const maxControlBody = 1 << 20

// endSessionsTimeout bounds how long a delete waits for the runtime's live
// sessions to end.
const endSessionsTimeout = time.Minute

// controlAPI serves the control plane for one Server.
type controlAPI struct {
	s   *Server
	ctl *registry.Control
}

// registerControl adds the bedrock-agentcore-control routes.
func (s *Server) registerControl() {
	c := &controlAPI{s: s, ctl: registry.NewControl(s.reg)}
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"PUT /runtimes/{$}", c.createRuntime},
		{"POST /runtimes/{$}", c.listRuntimes},
		{"GET /runtimes/{id}/{$}", c.getRuntime},
		{"PUT /runtimes/{id}/{$}", c.updateRuntime},
		{"DELETE /runtimes/{id}/{$}", c.deleteRuntime},
		{"POST /runtimes/{id}/versions/{$}", c.listVersions},
		{"PUT /runtimes/{id}/runtime-endpoints/{$}", c.createEndpoint},
		{"POST /runtimes/{id}/runtime-endpoints/{$}", c.listEndpoints},
		{"GET /runtimes/{id}/runtime-endpoints/{name}/{$}", c.getEndpoint},
		{"PUT /runtimes/{id}/runtime-endpoints/{name}/{$}", c.updateEndpoint},
		{"DELETE /runtimes/{id}/runtime-endpoints/{name}/{$}", c.deleteEndpoint},
	} {
		s.mux.HandleFunc(r.pattern, r.h)
	}
}

// Wire shapes. Pointers and RawMessage tell "left out" from "zero".

type lifecycleJSON struct {
	IdleRuntimeSessionTimeout *int `json:"idleRuntimeSessionTimeout,omitempty"`
	MaxLifetime               *int `json:"maxLifetime,omitempty"`
}

type s3JSON struct {
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix"`
	VersionID string `json:"versionId,omitempty"`
}

type codeJSON struct {
	S3 *s3JSON `json:"s3,omitempty"`
}

type codeConfigJSON struct {
	Code       *codeJSON `json:"code,omitempty"`
	Runtime    string    `json:"runtime"`
	EntryPoint []string  `json:"entryPoint"`
}

type containerJSON struct {
	ContainerURI string `json:"containerUri"`
}

type artifactJSON struct {
	ContainerConfiguration *containerJSON  `json:"containerConfiguration,omitempty"`
	CodeConfiguration      *codeConfigJSON `json:"codeConfiguration,omitempty"`
}

type networkJSON struct {
	NetworkMode       string          `json:"networkMode"`
	NetworkModeConfig json.RawMessage `json:"networkModeConfig,omitempty"`
}

type protocolJSON struct {
	ServerProtocol string  `json:"serverProtocol"`
	Port           *int    `json:"port,omitempty"`
	Path           *string `json:"path,omitempty"`
}

type headerConfigJSON struct {
	RequestHeaderAllowlist []string `json:"requestHeaderAllowlist"`
}

type workloadJSON struct {
	WorkloadIdentityArn string `json:"workloadIdentityArn"`
}

// runtimeRequest is CreateAgentRuntime's and UpdateAgentRuntime's body.
type runtimeRequest struct {
	AgentRuntimeName           *string           `json:"agentRuntimeName"`
	AgentRuntimeArtifact       *artifactJSON     `json:"agentRuntimeArtifact"`
	RoleArn                    *string           `json:"roleArn"`
	NetworkConfiguration       *networkJSON      `json:"networkConfiguration"`
	ClientToken                *string           `json:"clientToken"`
	Description                *string           `json:"description"`
	RequestHeaderConfiguration *headerConfigJSON `json:"requestHeaderConfiguration"`
	ProtocolConfiguration      *protocolJSON     `json:"protocolConfiguration"`
	LifecycleConfiguration     *lifecycleJSON    `json:"lifecycleConfiguration"`
	EnvironmentVariables       map[string]string `json:"environmentVariables"`
	Tags                       map[string]string `json:"tags"`

	// Features berth cannot honour; a request using one is refused rather
	// than half-served.
	AuthorizerConfiguration       json.RawMessage `json:"authorizerConfiguration"`
	FilesystemConfigurations      json.RawMessage `json:"filesystemConfigurations"`
	CapacityProviderConfiguration json.RawMessage `json:"capacityProviderConfiguration"`
	AllowedPorts                  json.RawMessage `json:"allowedPorts"`
	// metadataConfiguration and platformVersion are accepted and ignored:
	// they tune AWS's microVMs, which berth does not have.
}

// runtimeJSON is GetAgentRuntime's answer.
type runtimeJSON struct {
	AgentRuntimeArn            string            `json:"agentRuntimeArn"`
	AgentRuntimeName           string            `json:"agentRuntimeName"`
	AgentRuntimeID             string            `json:"agentRuntimeId"`
	AgentRuntimeVersion        string            `json:"agentRuntimeVersion"`
	CreatedAt                  string            `json:"createdAt"`
	LastUpdatedAt              string            `json:"lastUpdatedAt"`
	RoleArn                    string            `json:"roleArn,omitempty"`
	NetworkConfiguration       networkJSON       `json:"networkConfiguration"`
	Status                     string            `json:"status"`
	LifecycleConfiguration     lifecycleJSON     `json:"lifecycleConfiguration"`
	Description                string            `json:"description,omitempty"`
	WorkloadIdentityDetails    *workloadJSON     `json:"workloadIdentityDetails,omitempty"`
	AgentRuntimeArtifact       *artifactJSON     `json:"agentRuntimeArtifact,omitempty"`
	ProtocolConfiguration      *protocolJSON     `json:"protocolConfiguration,omitempty"`
	EnvironmentVariables       map[string]string `json:"environmentVariables,omitempty"`
	RequestHeaderConfiguration *headerConfigJSON `json:"requestHeaderConfiguration,omitempty"`

	// berth's own members; AWS SDKs skip members they do not know.
	BerthSource  string   `json:"berthSource"`
	BerthCommand []string `json:"berthCommand,omitempty"`
	BerthWorkdir string   `json:"berthWorkdir,omitempty"`
}

// runtimeSummaryJSON is one entry of ListAgentRuntimes and
// ListAgentRuntimeVersions.
type runtimeSummaryJSON struct {
	AgentRuntimeArn     string `json:"agentRuntimeArn"`
	AgentRuntimeID      string `json:"agentRuntimeId"`
	AgentRuntimeVersion string `json:"agentRuntimeVersion"`
	AgentRuntimeName    string `json:"agentRuntimeName"`
	Description         string `json:"description"`
	LastUpdatedAt       string `json:"lastUpdatedAt"`
	Status              string `json:"status"`
	BerthSource         string `json:"berthSource"`
}

// runtimeWriteJSON answers CreateAgentRuntime and UpdateAgentRuntime.
type runtimeWriteJSON struct {
	AgentRuntimeArn         string        `json:"agentRuntimeArn"`
	AgentRuntimeID          string        `json:"agentRuntimeId"`
	AgentRuntimeVersion     string        `json:"agentRuntimeVersion"`
	WorkloadIdentityDetails *workloadJSON `json:"workloadIdentityDetails,omitempty"`
	CreatedAt               string        `json:"createdAt"`
	LastUpdatedAt           string        `json:"lastUpdatedAt,omitempty"`
	Status                  string        `json:"status"`
}

type endpointRequest struct {
	Name                *string           `json:"name"`
	AgentRuntimeVersion *string           `json:"agentRuntimeVersion"`
	Description         *string           `json:"description"`
	ClientToken         *string           `json:"clientToken"`
	Tags                map[string]string `json:"tags"`
}

// endpointJSON is GetAgentRuntimeEndpoint's answer, an entry of
// ListAgentRuntimeEndpoints and UpdateAgentRuntimeEndpoint's answer.
type endpointJSON struct {
	Name                    string `json:"name"`
	ID                      string `json:"id"`
	AgentRuntimeEndpointArn string `json:"agentRuntimeEndpointArn"`
	AgentRuntimeArn         string `json:"agentRuntimeArn"`
	AgentRuntimeID          string `json:"agentRuntimeId"`
	LiveVersion             string `json:"liveVersion,omitempty"`
	TargetVersion           string `json:"targetVersion,omitempty"`
	Status                  string `json:"status"`
	Description             string `json:"description,omitempty"`
	CreatedAt               string `json:"createdAt"`
	LastUpdatedAt           string `json:"lastUpdatedAt"`
}

// createEndpointJSON is CreateAgentRuntimeEndpoint's answer.
type createEndpointJSON struct {
	TargetVersion           string `json:"targetVersion"`
	AgentRuntimeEndpointArn string `json:"agentRuntimeEndpointArn"`
	AgentRuntimeArn         string `json:"agentRuntimeArn"`
	AgentRuntimeID          string `json:"agentRuntimeId"`
	EndpointName            string `json:"endpointName"`
	Status                  string `json:"status"`
	CreatedAt               string `json:"createdAt"`
}

// Handlers.

func (c *controlAPI) createRuntime(w http.ResponseWriter, r *http.Request) {
	var req runtimeRequest
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	if req.AgentRuntimeName == nil {
		c.s.writeError(w, r, validation("agentRuntimeName", "agentRuntimeName is required"))
		return
	}
	spec, err := req.spec()
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	spec.Name = *req.AgentRuntimeName
	spec.Tags = req.Tags
	rt, v, err := c.ctl.CreateRuntime(r.Context(), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, runtimeWriteJSON{
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		AgentRuntimeVersion:     registry.FormatVersion(v.Version),
		WorkloadIdentityDetails: &workloadJSON{c.ctl.WorkloadIdentityARN(rt.Name)},
		CreatedAt:               timestamp(rt.CreatedAt),
		Status:                  rt.Status,
	})
}

func (c *controlAPI) updateRuntime(w http.ResponseWriter, r *http.Request) {
	var req runtimeRequest
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	// Name and tags are not part of UpdateAgentRuntime; a body that has
	// them anyway is not changing them.
	spec, err := req.spec()
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	rt, v, err := c.ctl.UpdateRuntime(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, runtimeWriteJSON{
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		AgentRuntimeVersion:     registry.FormatVersion(v.Version),
		WorkloadIdentityDetails: &workloadJSON{c.ctl.WorkloadIdentityARN(rt.Name)},
		CreatedAt:               timestamp(rt.CreatedAt),
		LastUpdatedAt:           timestamp(v.CreatedAt),
		Status:                  rt.Status,
	})
}

func (c *controlAPI) getRuntime(w http.ResponseWriter, r *http.Request) {
	rt, v, err := c.ctl.GetRuntime(r.Context(), r.PathValue("id"), r.URL.Query().Get("version"))
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	cfg := v.Config
	idle, maxLife := int(cfg.IdleTimeout/time.Second), int(cfg.MaxLifetime/time.Second)
	out := runtimeJSON{
		AgentRuntimeArn:        rt.ARN,
		AgentRuntimeName:       rt.Name,
		AgentRuntimeID:         rt.ID,
		AgentRuntimeVersion:    registry.FormatVersion(v.Version),
		CreatedAt:              timestamp(rt.CreatedAt),
		LastUpdatedAt:          timestamp(v.CreatedAt),
		RoleArn:                cfg.Artifact.RoleARN,
		NetworkConfiguration:   networkJSON{NetworkMode: "PUBLIC"},
		Status:                 rt.Status,
		LifecycleConfiguration: lifecycleJSON{IdleRuntimeSessionTimeout: &idle, MaxLifetime: &maxLife},
		Description:            rt.Description,
		ProtocolConfiguration:  &protocolJSON{ServerProtocol: cmp.Or(strings.ToUpper(cfg.Protocol), "HTTP")},
		EnvironmentVariables:   cfg.Env,
		BerthSource:            rt.Source,
		BerthCommand:           cfg.Command,
		BerthWorkdir:           cfg.Workdir,
	}
	if rt.Source == registry.SourceAPI {
		out.WorkloadIdentityDetails = &workloadJSON{c.ctl.WorkloadIdentityARN(rt.Name)}
	}
	if a := cfg.Artifact; a.CodeLocation != "" {
		out.AgentRuntimeArtifact = &artifactJSON{CodeConfiguration: &codeConfigJSON{
			Code:       &codeJSON{S3: &s3JSON{Bucket: registry.LocalBucket, Prefix: a.CodeLocation}},
			Runtime:    a.Runtime,
			EntryPoint: a.EntryPoint,
		}}
	}
	if len(cfg.HeaderAllowlist) > 0 {
		out.RequestHeaderConfiguration = &headerConfigJSON{RequestHeaderAllowlist: cfg.HeaderAllowlist}
	}
	writeJSON(w, http.StatusOK, out)
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
	// The runtime goes first, so no new session can resolve it while the
	// live ones end.
	rt, err := c.ctl.DeleteRuntime(r.Context(), r.PathValue("id"))
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	if c.s.sessions != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), endSessionsTimeout)
		c.s.sessions.EndRuntime(ctx, rt.ID, session.EndDeleted)
		cancel()
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": rt.Status, "agentRuntimeId": rt.ID})
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
	items := make([]runtimeSummaryJSON, 0, len(rts))
	for _, rt := range rts {
		items = append(items, summary(rt, rt.LatestVersion, rt.UpdatedAt))
	}
	writeJSON(w, http.StatusOK, struct {
		AgentRuntimes []runtimeSummaryJSON `json:"agentRuntimes"`
		NextToken     string               `json:"nextToken,omitempty"`
	}{items, next})
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
	items := make([]runtimeSummaryJSON, 0, len(vs))
	for _, v := range vs {
		items = append(items, summary(rt, v.Version, v.CreatedAt))
	}
	writeJSON(w, http.StatusOK, struct {
		AgentRuntimes []runtimeSummaryJSON `json:"agentRuntimes"`
		NextToken     string               `json:"nextToken,omitempty"`
	}{items, next})
}

func (c *controlAPI) createEndpoint(w http.ResponseWriter, r *http.Request) {
	var req endpointRequest
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	if req.Name == nil {
		c.s.writeError(w, r, validation("name", "name is required"))
		return
	}
	spec, err := req.spec()
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	spec.Name = *req.Name
	rt, e, err := c.ctl.CreateEndpoint(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		c.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, createEndpointJSON{
		TargetVersion:           registry.FormatVersion(e.TargetVersion),
		AgentRuntimeEndpointArn: e.ARN,
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		EndpointName:            e.Name,
		Status:                  e.Status,
		CreatedAt:               timestamp(e.CreatedAt),
	})
}

func (c *controlAPI) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	var req endpointRequest
	if err := decodeControlBody(r, &req); err != nil {
		c.s.writeError(w, r, err)
		return
	}
	spec, err := req.spec()
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
	writeJSON(w, http.StatusAccepted, map[string]string{"status": e.Status, "agentRuntimeId": rt.ID, "endpointName": e.Name})
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
	items := make([]endpointJSON, 0, len(es))
	for _, e := range es {
		items = append(items, endpoint(rt, e))
	}
	writeJSON(w, http.StatusOK, struct {
		RuntimeEndpoints []endpointJSON `json:"runtimeEndpoints"`
		NextToken        string         `json:"nextToken,omitempty"`
	}{items, next})
}

// Translation.

// spec turns a create or update body into the registry's terms, refusing
// the features berth cannot honour.
func (req *runtimeRequest) spec() (registry.RuntimeSpec, error) {
	for _, u := range []struct {
		field string
		raw   json.RawMessage
		why   string
	}{
		{"authorizerConfiguration", req.AuthorizerConfiguration, "berth does not validate JWT bearer tokens yet; leave it out to use SigV4 (IAM) callers"},
		{"filesystemConfigurations", req.FilesystemConfigurations, "berth has no session storage mounts yet"},
		{"capacityProviderConfiguration", req.CapacityProviderConfiguration, "berth has no capacity providers"},
		{"allowedPorts", req.AllowedPorts, "berth does not expose session ports"},
	} {
		if present(u.raw) {
			return registry.RuntimeSpec{}, validation(u.field, u.field+": "+u.why)
		}
	}
	if err := validClientTokenPtr(req.ClientToken); err != nil {
		return registry.RuntimeSpec{}, err
	}
	// A missing artifact is the registry's to report, after it has checked
	// that the runtime may be changed at all.
	if req.AgentRuntimeArtifact == nil {
		req.AgentRuntimeArtifact = &artifactJSON{}
	}
	spec := registry.RuntimeSpec{
		Description: req.Description,
		Env:         req.EnvironmentVariables,
	}
	if a := req.AgentRuntimeArtifact; a.ContainerConfiguration != nil {
		// An empty URI still asks for a container; the registry refuses
		// every container, so it only has to know one was asked for.
		spec.Artifact.ContainerURI = cmp.Or(a.ContainerConfiguration.ContainerURI, "(empty)")
	}
	if cc := req.AgentRuntimeArtifact.CodeConfiguration; cc != nil {
		code := &registry.CodeSpec{Runtime: cc.Runtime, EntryPoint: cc.EntryPoint}
		if cc.Code != nil && cc.Code.S3 != nil {
			code.Bucket, code.Prefix, code.VersionID = cc.Code.S3.Bucket, cc.Code.S3.Prefix, cc.Code.S3.VersionID
		}
		spec.Artifact.Code = code
	}
	if req.RoleArn != nil {
		spec.RoleARN = *req.RoleArn
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
		spec.Protocol = p.ServerProtocol
	}
	if l := req.LifecycleConfiguration; l != nil {
		spec.IdleTimeout, spec.MaxLifetime = l.IdleRuntimeSessionTimeout, l.MaxLifetime
	}
	if h := req.RequestHeaderConfiguration; h != nil {
		spec.HeaderAllowlist = h.RequestHeaderAllowlist
		if spec.HeaderAllowlist == nil {
			spec.HeaderAllowlist = []string{}
		}
	}
	return spec, nil
}

func (req *endpointRequest) spec() (registry.EndpointSpec, error) {
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

func summary(rt registry.Runtime, version int, updated time.Time) runtimeSummaryJSON {
	return runtimeSummaryJSON{
		AgentRuntimeArn:     rt.ARN,
		AgentRuntimeID:      rt.ID,
		AgentRuntimeVersion: registry.FormatVersion(version),
		AgentRuntimeName:    rt.Name,
		Description:         rt.Description,
		LastUpdatedAt:       timestamp(updated),
		Status:              rt.Status,
		BerthSource:         rt.Source,
	}
}

func endpoint(rt registry.Runtime, e registry.Endpoint) endpointJSON {
	return endpointJSON{
		Name:                    e.Name,
		ID:                      e.ID,
		AgentRuntimeEndpointArn: e.ARN,
		AgentRuntimeArn:         rt.ARN,
		AgentRuntimeID:          rt.ID,
		LiveVersion:             registry.FormatVersion(e.LiveVersion),
		TargetVersion:           registry.FormatVersion(e.TargetVersion),
		Status:                  e.Status,
		Description:             e.Description,
		CreatedAt:               timestamp(e.CreatedAt),
		LastUpdatedAt:           timestamp(e.UpdatedAt),
	}
}

// timestamp writes the ISO 8601 form the SDKs parse (smithy date-time).
func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// decodeControlBody reads a JSON body into v. An empty body leaves v zero.
func decodeControlBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
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
