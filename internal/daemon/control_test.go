package daemon_test

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	ctl "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol"
	ctltypes "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol/types"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/google/uuid"
)

// cp is a berth daemon driven through the official AWS SDK clients: the
// control plane (bedrockagentcorecontrol) and the data plane
// (bedrockagentcore).
type cp struct {
	t       *testing.T
	d       *daemon.Daemon
	dataDir string
	ctl     *ctl.Client
	dp      *bedrockagentcore.Client
	closed  bool
	// backend is the sandbox backend runtimes created by createInput ask
	// for; token is in their agents' environment, to find the processes.
	backend string
	token   string
}

// agents counts the live agent processes of runtimes made by createInput.
func (c *cp) agents() int { return countAgents(c.t, tokenVar+"="+c.token) }

// waitAgents waits until n agent processes of this test are alive.
func (c *cp) waitAgents(n int) { waitForAgents(c.t, tokenVar+"="+c.token, n) }

const tokenVar = "BERTH_CONTROL_TEST_TOKEN"

// env is the environment of a test runtime: its version mark and the token.
func (c *cp) env(mark string) map[string]string {
	return map[string]string{"VERSION_MARK": mark, tokenVar: c.token}
}

// startCP starts berth on dataDir with one runtime declared in the config
// file ("fromconfig"), so the API sees both kinds side by side.
func startCP(t *testing.T, dataDir, backend, token string, mutate ...func(*config.Config)) *cp {
	t.Helper()
	agent := sandboxtest.BuildAgent(t)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.StartTimeout = config.Duration(30 * time.Second) // python and node start slowly on a loaded machine
	cfg.PingInterval = config.Duration(100 * time.Millisecond)
	cfg.StopGrace = config.Duration(500 * time.Millisecond)
	cfg.APIRuntimes.Sandbox = registry.Backend(backend)
	// Test code lives in temp dirs (codeDir).
	cfg.CodeRoots = []string{os.TempDir()}
	cfg.Runtimes = []config.Runtime{{Name: "fromconfig", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process"}}}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start berth: %v", err)
	}
	c := &cp{t: t, d: d, dataDir: dataDir, backend: backend, token: token}
	t.Cleanup(func() { c.close() })
	creds := credentials.NewStaticCredentialsProvider("AKIDBERTHTEST", "secret", "")
	c.ctl = ctl.New(ctl.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.URL()), Credentials: creds, Retryer: aws.NopRetryer{}})
	c.dp = bedrockagentcore.New(bedrockagentcore.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.URL()), Credentials: creds, Retryer: aws.NopRetryer{}})
	return c
}

func (c *cp) close() {
	if c.closed {
		return
	}
	c.closed = true
	if err := c.d.Close(context.Background()); err != nil {
		c.t.Errorf("close berth: %v", err)
	}
}

// codeDir makes an agent directory holding the test agent as "testagent",
// an executable entryPoint.
func codeDir(t *testing.T) string {
	t.Helper()
	bin := sandboxtest.BuildAgent(t)
	dir := t.TempDir()
	dst := filepath.Join(dir, "testagent")
	if err := os.Link(bin, dst); err != nil {
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatalf("read agent: %v", err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatalf("copy agent: %v", err)
		}
	}
	return dir
}

func codeArtifact(dir string, entry ...string) ctltypes.AgentRuntimeArtifact {
	return &ctltypes.AgentRuntimeArtifactMemberCodeConfiguration{Value: ctltypes.CodeConfiguration{
		Code:       &ctltypes.CodeMemberS3{Value: ctltypes.S3Location{Bucket: aws.String(api.LocalBucket), Prefix: aws.String(dir)}},
		Runtime:    ctltypes.AgentManagedRuntimeTypePython312,
		EntryPoint: entry,
	}}
}

// createInput is a valid CreateAgentRuntime request for the test agent in
// dir, marking its environment with mark.
func (c *cp) createInput(name, dir, mark string) *ctl.CreateAgentRuntimeInput {
	return &ctl.CreateAgentRuntimeInput{
		AgentRuntimeName:     aws.String(name),
		AgentRuntimeArtifact: codeArtifact(dir, "testagent"),
		RoleArn:              aws.String("arn:aws:iam::123456789012:role/berth-test"),
		NetworkConfiguration: &ctltypes.NetworkConfiguration{NetworkMode: ctltypes.NetworkModePublic},
		Description:          aws.String("control-plane test agent"),
		EnvironmentVariables: c.env(mark),
		LifecycleConfiguration: &ctltypes.LifecycleConfiguration{
			MaxLifetime: aws.Int32(600),
		},
		RequestHeaderConfiguration: &ctltypes.RequestHeaderConfigurationMemberRequestHeaderAllowlist{Value: []string{"X-Tenant-Id"}},
		Tags:                       map[string]string{"team": "berth"},
	}
}

type agentEcho struct {
	Count int               `json:"count"`
	Env   map[string]string `json:"env"`
}

// echo invokes the test agent's echo op through the data-plane SDK and
// returns what it saw.
func (c *cp) echo(arn, qualifier, sessionID string) agentEcho {
	c.t.Helper()
	in := &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn:  aws.String(arn),
		RuntimeSessionId: aws.String(sessionID),
		ContentType:      aws.String("application/json"),
		Payload:          []byte(`{"op":"echo","env":["VERSION_MARK"]}`),
	}
	if qualifier != "" {
		in.Qualifier = aws.String(qualifier)
	}
	out, err := c.dp.InvokeAgentRuntime(context.Background(), in)
	if err != nil {
		c.t.Fatalf("invoke %s (qualifier %q, session %s): %v", arn, qualifier, sessionID, err)
	}
	defer out.Response.Close()
	var e agentEcho
	if err := json.NewDecoder(out.Response).Decode(&e); err != nil {
		c.t.Fatalf("decode echo: %v", err)
	}
	return e
}

// sessionRecords reads the session incarnations of a runtime straight from
// the store file.
func sessionRecords(t *testing.T, dataDir, runtimeID string) []session.Record {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(dataDir, "berth.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer db.Close()
	recs, _, err := db.ListSessions(context.Background(), session.Filter{RuntimeID: runtimeID, Limit: 100})
	if err != nil {
		t.Fatalf("list sessions: %v", err)
	}
	return recs
}

func TestControlPlaneLifecycle(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) { testLifecycle(t, backend) })
	}
}

func testLifecycle(t *testing.T, backend string) {
	c := startCP(t, t.TempDir(), backend, uuid.NewString())
	ctx := context.Background()
	dir := codeDir(t)

	created, err := c.ctl.CreateAgentRuntime(ctx, c.createInput("ctl_agent", dir, "v1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id, arn := aws.ToString(created.AgentRuntimeId), aws.ToString(created.AgentRuntimeArn)
	if !strings.HasPrefix(id, "ctl_agent-") || len(id) != len("ctl_agent-")+10 ||
		arn != "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/"+id {
		t.Fatalf("create returned id %q arn %q", id, arn)
	}
	if v := aws.ToString(created.AgentRuntimeVersion); v != "1" || created.Status != ctltypes.AgentRuntimeStatusReady ||
		created.CreatedAt == nil || time.Since(*created.CreatedAt) > time.Minute || created.WorkloadIdentityDetails == nil {
		t.Fatalf("create returned version %q status %q createdAt %v workload %v", v, created.Status, created.CreatedAt, created.WorkloadIdentityDetails)
	}

	got, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	// Only maxLifetime was given and it is under 900 s: idle follows it.
	if l := got.LifecycleConfiguration; l == nil || aws.ToInt32(l.MaxLifetime) != 600 || aws.ToInt32(l.IdleRuntimeSessionTimeout) != 600 {
		t.Fatalf("lifecycle %+v, want idle 600 max 600", got.LifecycleConfiguration)
	}
	code, ok := got.AgentRuntimeArtifact.(*ctltypes.AgentRuntimeArtifactMemberCodeConfiguration)
	if !ok {
		t.Fatalf("artifact %T, want code configuration", got.AgentRuntimeArtifact)
	}
	s3, _ := code.Value.Code.(*ctltypes.CodeMemberS3)
	if s3 == nil || aws.ToString(s3.Value.Bucket) != api.LocalBucket || aws.ToString(s3.Value.Prefix) != dir ||
		!slices.Equal(code.Value.EntryPoint, []string{"testagent"}) || code.Value.Runtime != ctltypes.AgentManagedRuntimeTypePython312 {
		t.Fatalf("artifact echoed as %+v", code.Value)
	}
	allow, _ := got.RequestHeaderConfiguration.(*ctltypes.RequestHeaderConfigurationMemberRequestHeaderAllowlist)
	if got.EnvironmentVariables["VERSION_MARK"] != "v1" || aws.ToString(got.RoleArn) != "arn:aws:iam::123456789012:role/berth-test" ||
		got.ProtocolConfiguration == nil || got.ProtocolConfiguration.ServerProtocol != ctltypes.ServerProtocolHttp ||
		allow == nil || !slices.Equal(allow.Value, []string{"X-Tenant-Id"}) || aws.ToString(got.Description) != "control-plane test agent" ||
		got.NetworkConfiguration == nil || got.NetworkConfiguration.NetworkMode != ctltypes.NetworkModePublic {
		t.Fatalf("get returned %+v", got)
	}

	// The path takes the runtime's ARN or name as well as its ID.
	for _, ref := range []string{arn, "ctl_agent"} {
		byRef, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(ref)})
		if err != nil || aws.ToString(byRef.AgentRuntimeId) != id {
			t.Fatalf("get by %q: %v", ref, err)
		}
	}

	// Version 1 serves a session.
	s1 := newSessionID()
	a := c.echo(arn, "", s1)
	if a.Env["VERSION_MARK"] != "v1" || a.Count != 1 {
		t.Fatalf("first call saw %+v", a)
	}

	// Update: version 2. The live session stays on version 1; a new one
	// starts on version 2.
	upd, err := c.ctl.UpdateAgentRuntime(ctx, &ctl.UpdateAgentRuntimeInput{
		AgentRuntimeId:       aws.String(id),
		AgentRuntimeArtifact: codeArtifact(dir, "testagent"),
		RoleArn:              aws.String("arn:aws:iam::123456789012:role/berth-test"),
		NetworkConfiguration: &ctltypes.NetworkConfiguration{NetworkMode: ctltypes.NetworkModePublic},
		EnvironmentVariables: c.env("v2"),
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if v := aws.ToString(upd.AgentRuntimeVersion); v != "2" || upd.LastUpdatedAt == nil {
		t.Fatalf("update returned version %q lastUpdatedAt %v", v, upd.LastUpdatedAt)
	}
	// The count is per process: 2 means the same agent kept serving s1.
	if b := c.echo(arn, "", s1); b.Count != 2 || b.Env["VERSION_MARK"] != "v1" {
		t.Fatalf("live session after update: %+v, want its v1 process's second call", b)
	}
	s2 := newSessionID()
	if b := c.echo(arn, "", s2); b.Env["VERSION_MARK"] != "v2" || b.Count != 1 {
		t.Fatalf("new session after update: %+v, want v2 in a new process", b)
	}
	// The update replaced the lifecycle: defaults again.
	got, err = c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatalf("get after update: %v", err)
	}
	if l := got.LifecycleConfiguration; aws.ToString(got.AgentRuntimeVersion) != "2" || aws.ToInt32(l.IdleRuntimeSessionTimeout) != 900 || aws.ToInt32(l.MaxLifetime) != 28800 {
		t.Fatalf("after update: version %q lifecycle %+v", aws.ToString(got.AgentRuntimeVersion), l)
	}
	if got.Description == nil || *got.Description != "control-plane test agent" {
		t.Fatalf("description lost on update: %v", got.Description)
	}
	old, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id), AgentRuntimeVersion: aws.String("1")})
	if err != nil {
		t.Fatalf("get version 1: %v", err)
	}
	if aws.ToString(old.AgentRuntimeVersion) != "1" || old.EnvironmentVariables["VERSION_MARK"] != "v1" {
		t.Fatalf("version 1 reads back as %+v", old)
	}
	vers, err := c.ctl.ListAgentRuntimeVersions(ctx, &ctl.ListAgentRuntimeVersionsInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatalf("list versions: %v", err)
	}
	if len(vers.AgentRuntimes) != 2 || aws.ToString(vers.AgentRuntimes[0].AgentRuntimeVersion) != "1" || aws.ToString(vers.AgentRuntimes[1].AgentRuntimeVersion) != "2" {
		t.Fatalf("versions: %+v", vers.AgentRuntimes)
	}

	// A named endpoint pinned to version 1.
	ep, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{
		AgentRuntimeId: aws.String(id), Name: aws.String("pinned"), AgentRuntimeVersion: aws.String("1"),
		Description: aws.String("stays on v1"),
	})
	if err != nil {
		t.Fatalf("create endpoint: %v", err)
	}
	if aws.ToString(ep.TargetVersion) != "1" || aws.ToString(ep.EndpointName) != "pinned" || ep.Status != ctltypes.AgentRuntimeEndpointStatusReady ||
		aws.ToString(ep.AgentRuntimeArn) != arn || !strings.HasPrefix(aws.ToString(ep.AgentRuntimeEndpointArn), arn+"/") {
		t.Fatalf("create endpoint returned %+v", ep)
	}
	s3id := newSessionID()
	if p := c.echo(arn, "pinned", s3id); p.Env["VERSION_MARK"] != "v1" {
		t.Fatalf("pinned endpoint ran %+v, want v1", p)
	}
	eps, err := c.ctl.ListAgentRuntimeEndpoints(ctx, &ctl.ListAgentRuntimeEndpointsInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatalf("list endpoints: %v", err)
	}
	live := map[string]string{}
	for _, e := range eps.RuntimeEndpoints {
		live[aws.ToString(e.Name)] = aws.ToString(e.LiveVersion)
	}
	if len(live) != 2 || live["DEFAULT"] != "2" || live["pinned"] != "1" {
		t.Fatalf("endpoints: %v", live)
	}

	// Move the pinned endpoint: its live session keeps v1, new ones get v2.
	moved, err := c.ctl.UpdateAgentRuntimeEndpoint(ctx, &ctl.UpdateAgentRuntimeEndpointInput{
		AgentRuntimeId: aws.String(id), EndpointName: aws.String("pinned"), AgentRuntimeVersion: aws.String("2"),
	})
	if err != nil {
		t.Fatalf("update endpoint: %v", err)
	}
	if aws.ToString(moved.LiveVersion) != "2" || aws.ToString(moved.TargetVersion) != "2" {
		t.Fatalf("update endpoint returned %+v", moved)
	}
	if p := c.echo(arn, "pinned", s3id); p.Env["VERSION_MARK"] != "v1" || p.Count != 2 {
		t.Fatalf("live session on moved endpoint: %+v, want its v1 process", p)
	}
	if p := c.echo(arn, "pinned", newSessionID()); p.Env["VERSION_MARK"] != "v2" {
		t.Fatalf("new session on moved endpoint: %+v, want v2", p)
	}
	gep, err := c.ctl.GetAgentRuntimeEndpoint(ctx, &ctl.GetAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("pinned")})
	if err != nil {
		t.Fatalf("get endpoint: %v", err)
	}
	if aws.ToString(gep.LiveVersion) != "2" || aws.ToString(gep.Description) != "stays on v1" || gep.CreatedAt == nil || gep.LastUpdatedAt == nil ||
		!gep.LastUpdatedAt.After(*gep.CreatedAt) {
		t.Fatalf("get endpoint returned %+v", gep)
	}

	// Listing shows the config-file runtime beside the API one, across
	// pages.
	var names []string
	var token *string
	for {
		page, err := c.ctl.ListAgentRuntimes(ctx, &ctl.ListAgentRuntimesInput{MaxResults: aws.Int32(1), NextToken: token})
		if err != nil {
			t.Fatalf("list runtimes: %v", err)
		}
		for _, rt := range page.AgentRuntimes {
			names = append(names, aws.ToString(rt.AgentRuntimeName))
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"ctl_agent", "fromconfig"}) {
		t.Fatalf("listed %v", names)
	}

	// Deleting the endpoint makes its qualifier unknown.
	dep, err := c.ctl.DeleteAgentRuntimeEndpoint(ctx, &ctl.DeleteAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("pinned")})
	if err != nil {
		t.Fatalf("delete endpoint: %v", err)
	}
	if dep.Status != ctltypes.AgentRuntimeEndpointStatusDeleting {
		t.Fatalf("delete endpoint status %q", dep.Status)
	}
	_, err = c.ctl.GetAgentRuntimeEndpoint(ctx, &ctl.GetAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("pinned")})
	wantAPIError(t, err, "ResourceNotFoundException", 404)

	// Deleting the runtime ends its live sessions and their processes.
	// Four sessions: s1 and s2 on DEFAULT, two on pinned.
	c.waitAgents(4)
	del, err := c.ctl.DeleteAgentRuntime(ctx, &ctl.DeleteAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if del.Status != ctltypes.AgentRuntimeStatusDeleting || aws.ToString(del.AgentRuntimeId) != id {
		t.Fatalf("delete returned %+v", del)
	}
	// The delete waited for the sessions' teardown.
	if n := c.agents(); n != 0 {
		t.Fatalf("%d agent processes survived the runtime's deletion", n)
	}
	for _, s := range c.d.Sessions().Live() {
		if s.RuntimeID == id {
			t.Fatalf("session %s of the deleted runtime is still live", s.SessionID)
		}
	}
	recs := sessionRecords(t, c.dataDir, id)
	if len(recs) != 4 {
		t.Fatalf("%d session records, want 4", len(recs))
	}
	for _, r := range recs {
		if r.State != session.StateTerminated || r.EndReason != session.EndDeleted {
			t.Fatalf("session %s ended %s/%s, want terminated/deleted", r.SessionID, r.State, r.EndReason)
		}
	}
	_, err = c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	wantAPIError(t, err, "ResourceNotFoundException", 404)
	_, err = c.dp.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn: aws.String(arn), RuntimeSessionId: aws.String(s1), Payload: []byte(`{}`)})
	wantAPIError(t, err, "ResourceNotFoundException", 404)
}

// storeSnapshot renders every runtime, version and endpoint in the store.
func storeSnapshot(t *testing.T, st registry.Store) string {
	t.Helper()
	ctx := context.Background()
	rts, _, err := st.ListRuntimes(ctx, registry.Page{MaxResults: 1000})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	var b strings.Builder
	for _, rt := range rts {
		vs, _, err := st.ListVersions(ctx, rt.ID, registry.Page{MaxResults: 1000})
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		es, _, err := st.ListEndpoints(ctx, rt.ID, registry.Page{MaxResults: 1000})
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		data, _ := json.Marshal([]any{rt, vs, es})
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestControlPlaneBadInput(t *testing.T) {
	c := startCP(t, t.TempDir(), "process", uuid.NewString())
	ctx := context.Background()
	dir := codeDir(t)
	created, err := c.ctl.CreateAgentRuntime(ctx, c.createInput("good", dir, "v1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id := aws.ToString(created.AgentRuntimeId)
	cfgID := registry.StableID("fromconfig")
	before := storeSnapshot(t, c.d.Store())

	create := func(mut func(*ctl.CreateAgentRuntimeInput)) error {
		in := c.createInput("fresh", dir, "v1")
		mut(in)
		_, err := c.ctl.CreateAgentRuntime(ctx, in)
		return err
	}
	update := func(ref string, mut func(*ctl.UpdateAgentRuntimeInput)) error {
		in := &ctl.UpdateAgentRuntimeInput{
			AgentRuntimeId:       aws.String(ref),
			AgentRuntimeArtifact: codeArtifact(dir, "testagent"),
			RoleArn:              aws.String("arn:aws:iam::123456789012:role/berth-test"),
		}
		mut(in)
		_, err := c.ctl.UpdateAgentRuntime(ctx, in)
		return err
	}
	life := func(idle, maxLife int32) *ctltypes.LifecycleConfiguration {
		l := &ctltypes.LifecycleConfiguration{}
		if idle != 0 {
			l.IdleRuntimeSessionTimeout = aws.Int32(idle)
		}
		if maxLife != 0 {
			l.MaxLifetime = aws.Int32(maxLife)
		}
		return l
	}
	manyEnv := map[string]string{}
	for i := range 51 {
		manyEnv["K"+itoa(i)] = "v"
	}
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		call   func() error
		code   string
		status int
		field  string // the fieldList entry a ValidationException must carry
	}{
		{"name starts with a digit", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeName = aws.String("1agent") })
		}, "ValidationException", 400, "agentRuntimeName"},
		{"name with a hyphen", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeName = aws.String("my-agent") })
		}, "ValidationException", 400, "agentRuntimeName"},
		{"name of 49 characters", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeName = aws.String("a" + strings.Repeat("b", 48)) })
		}, "ValidationException", 400, "agentRuntimeName"},
		{"duplicate name", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeName = aws.String("good") })
		}, "ConflictException", 409, ""},
		{"name of a config runtime", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeName = aws.String("fromconfig") })
		}, "ConflictException", 409, ""},
		{"idle timeout under 60", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.LifecycleConfiguration = life(59, 0) })
		}, "ValidationException", 400, "lifecycleConfiguration.idleRuntimeSessionTimeout"},
		{"max lifetime over 28800", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.LifecycleConfiguration = life(0, 28801) })
		}, "ValidationException", 400, "lifecycleConfiguration.maxLifetime"},
		{"idle above max lifetime", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.LifecycleConfiguration = life(1000, 600) })
		}, "ValidationException", 400, "lifecycleConfiguration.idleRuntimeSessionTimeout"},
		{"restricted header in allowlist", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.RequestHeaderConfiguration = &ctltypes.RequestHeaderConfigurationMemberRequestHeaderAllowlist{Value: []string{"Host"}}
			})
		}, "ValidationException", 400, "requestHeaderConfiguration.requestHeaderAllowlist"},
		{"x-amz header in allowlist", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.RequestHeaderConfiguration = &ctltypes.RequestHeaderConfigurationMemberRequestHeaderAllowlist{Value: []string{"X-Amz-Date"}}
			})
		}, "ValidationException", 400, "requestHeaderConfiguration.requestHeaderAllowlist"},
		{"51 environment variables", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.EnvironmentVariables = manyEnv })
		}, "ValidationException", 400, "environmentVariables"},
		{"environment key of 101 characters", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.EnvironmentVariables = map[string]string{strings.Repeat("K", 101): "v"}
			})
		}, "ValidationException", 400, "environmentVariables"},
		{"environment value of 5001 characters", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.EnvironmentVariables = map[string]string{"K": strings.Repeat("v", 5001)}
			})
		}, "ValidationException", 400, "environmentVariables"},
		{"container image", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AgentRuntimeArtifact = &ctltypes.AgentRuntimeArtifactMemberContainerConfiguration{
					Value: ctltypes.ContainerConfiguration{ContainerUri: aws.String("123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:latest")}}
			})
		}, "ValidationException", 400, "agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"a real S3 bucket", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AgentRuntimeArtifact = &ctltypes.AgentRuntimeArtifactMemberCodeConfiguration{Value: ctltypes.CodeConfiguration{
					Code:    &ctltypes.CodeMemberS3{Value: ctltypes.S3Location{Bucket: aws.String("my-bucket"), Prefix: aws.String("agent.zip")}},
					Runtime: ctltypes.AgentManagedRuntimeTypePython312, EntryPoint: []string{"main.py"}}}
			})
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.code.s3.bucket"},
		{"missing code directory", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AgentRuntimeArtifact = codeArtifact(filepath.Join(dir, "nope"), "testagent")
			})
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.code.s3.prefix"},
		{"relative code directory", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeArtifact = codeArtifact("agent", "testagent") })
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.code.s3.prefix"},
		{"missing script", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeArtifact = codeArtifact(dir, "main.py") })
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.entryPoint[0]"},
		{"entry point is not executable", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeArtifact = codeArtifact(dir, "data.txt") })
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.entryPoint[0]"},
		{"absolute entry point (a host binary)", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AgentRuntimeArtifact = codeArtifact(dir, "/usr/bin/perl", "-e1")
			})
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.entryPoint[0]"},
		{"entry point out of the code dir", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AgentRuntimeArtifact = codeArtifact(dir, "../../usr/bin/perl")
			})
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.entryPoint[0]"},
		{"code outside the code roots", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeArtifact = codeArtifact("/etc", "testagent") })
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.code.s3.prefix"},
		{"code in berth's data dir", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.AgentRuntimeArtifact = codeArtifact(c.dataDir, "testagent") })
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.code.s3.prefix"},
		{"three entry points", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AgentRuntimeArtifact = codeArtifact(dir, "testagent", "a", "b")
			})
		}, "ValidationException", 400, "agentRuntimeArtifact.codeConfiguration.entryPoint"},
		{"VPC network", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.NetworkConfiguration = &ctltypes.NetworkConfiguration{NetworkMode: ctltypes.NetworkModeVpc}
			})
		}, "ValidationException", 400, "networkConfiguration.networkMode"},
		{"JWT authorizer without a check", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AuthorizerConfiguration = &ctltypes.AuthorizerConfigurationMemberCustomJWTAuthorizer{Value: ctltypes.CustomJWTAuthorizerConfiguration{
					DiscoveryUrl: aws.String("https://issuer.example/.well-known/openid-configuration")}}
			})
		}, "ValidationException", 400, "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT authorizer over plain http", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AuthorizerConfiguration = &ctltypes.AuthorizerConfigurationMemberCustomJWTAuthorizer{Value: ctltypes.CustomJWTAuthorizerConfiguration{
					DiscoveryUrl: aws.String("http://issuer.example/.well-known/openid-configuration"), AllowedAudience: []string{"x"}}}
			})
		}, "ValidationException", 400, "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT authorizer with advertised scopes", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.AuthorizerConfiguration = &ctltypes.AuthorizerConfigurationMemberCustomJWTAuthorizer{Value: ctltypes.CustomJWTAuthorizerConfiguration{
					DiscoveryUrl: aws.String("https://issuer.example/.well-known/openid-configuration"), AllowedScopes: []string{"a"},
					AdvertisedScopeMapping: map[string]string{"a": "b"}}}
			})
		}, "ValidationException", 400, "authorizerConfiguration.customJWTAuthorizer.advertisedScopeMapping"},
		{"Authorization allow-listed without a JWT authorizer", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) {
				in.RequestHeaderConfiguration = &ctltypes.RequestHeaderConfigurationMemberRequestHeaderAllowlist{Value: []string{"Authorization"}}
			})
		}, "ValidationException", 400, "requestHeaderConfiguration.requestHeaderAllowlist"},
		{"a tag that would choose the sandbox", func() error {
			return create(func(in *ctl.CreateAgentRuntimeInput) { in.Tags = map[string]string{"berth:sandbox": "process"} })
		}, "ValidationException", 400, "tags"},
		{"update an unknown runtime", func() error {
			return update("nope-0123456789", func(*ctl.UpdateAgentRuntimeInput) {})
		}, "ResourceNotFoundException", 404, ""},
		{"update with a bad lifecycle", func() error {
			return update(id, func(in *ctl.UpdateAgentRuntimeInput) { in.LifecycleConfiguration = life(30, 0) })
		}, "ValidationException", 400, "lifecycleConfiguration.idleRuntimeSessionTimeout"},
		{"update a config runtime", func() error {
			return update(cfgID, func(*ctl.UpdateAgentRuntimeInput) {})
		}, "ValidationException", 400, "agentRuntimeId"},
		{"delete a config runtime", func() error {
			_, err := c.ctl.DeleteAgentRuntime(ctx, &ctl.DeleteAgentRuntimeInput{AgentRuntimeId: aws.String(cfgID)})
			return err
		}, "ValidationException", 400, "agentRuntimeId"},
		{"get an unknown runtime", func() error {
			_, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String("nope-0123456789")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"get a version that does not exist", func() error {
			_, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id), AgentRuntimeVersion: aws.String("7")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"get a malformed version", func() error {
			_, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id), AgentRuntimeVersion: aws.String("v1")})
			return err
		}, "ValidationException", 400, "version"},
		{"delete an unknown runtime", func() error {
			_, err := c.ctl.DeleteAgentRuntime(ctx, &ctl.DeleteAgentRuntimeInput{AgentRuntimeId: aws.String("nope-0123456789")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"list versions of an unknown runtime", func() error {
			_, err := c.ctl.ListAgentRuntimeVersions(ctx, &ctl.ListAgentRuntimeVersionsInput{AgentRuntimeId: aws.String("nope-0123456789")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"list with maxResults 101", func() error {
			_, err := c.ctl.ListAgentRuntimes(ctx, &ctl.ListAgentRuntimesInput{MaxResults: aws.Int32(101)})
			return err
		}, "ValidationException", 400, "maxResults"},
		{"list with a forged token", func() error {
			_, err := c.ctl.ListAgentRuntimes(ctx, &ctl.ListAgentRuntimesInput{NextToken: aws.String("not-a-token")})
			return err
		}, "ValidationException", 400, "nextToken"},
		{"endpoint on an unknown runtime", func() error {
			_, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String("nope-0123456789"), Name: aws.String("e")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"endpoint pinned to a missing version", func() error {
			_, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), Name: aws.String("e"), AgentRuntimeVersion: aws.String("9")})
			return err
		}, "ValidationException", 400, "agentRuntimeVersion"},
		{"endpoint with a bad name", func() error {
			_, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), Name: aws.String("bad-name")})
			return err
		}, "ValidationException", 400, "name"},
		{"endpoint named DEFAULT", func() error {
			_, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), Name: aws.String("DEFAULT")})
			return err
		}, "ConflictException", 409, ""},
		{"move DEFAULT", func() error {
			_, err := c.ctl.UpdateAgentRuntimeEndpoint(ctx, &ctl.UpdateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("DEFAULT"), AgentRuntimeVersion: aws.String("1")})
			return err
		}, "ValidationException", 400, "endpointName"},
		{"update an unknown endpoint", func() error {
			_, err := c.ctl.UpdateAgentRuntimeEndpoint(ctx, &ctl.UpdateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("nope"), AgentRuntimeVersion: aws.String("1")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"delete DEFAULT", func() error {
			_, err := c.ctl.DeleteAgentRuntimeEndpoint(ctx, &ctl.DeleteAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("DEFAULT")})
			return err
		}, "ValidationException", 400, "endpointName"},
		{"get an unknown endpoint", func() error {
			_, err := c.ctl.GetAgentRuntimeEndpoint(ctx, &ctl.GetAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("nope")})
			return err
		}, "ResourceNotFoundException", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantAPIError(t, err, tc.code, tc.status)
			var ve *ctltypes.ValidationException
			if tc.code == "ValidationException" {
				if !errors.As(err, &ve) {
					t.Fatalf("want a typed ValidationException, got %T", err)
				}
				if ve.Reason != ctltypes.ValidationExceptionReasonFieldValidationFailed || len(ve.FieldList) != 1 ||
					aws.ToString(ve.FieldList[0].Name) != tc.field || aws.ToString(ve.Message) == "" {
					t.Fatalf("validation error %q reason %q fields %+v, want field %s", aws.ToString(ve.Message), ve.Reason, ve.FieldList, tc.field)
				}
			}
			if after := storeSnapshot(t, c.d.Store()); after != before {
				t.Fatalf("store changed on bad input:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// On the process backend, the container refusal says what to do instead.
	err = create(func(in *ctl.CreateAgentRuntimeInput) {
		in.AgentRuntimeArtifact = &ctltypes.AgentRuntimeArtifactMemberContainerConfiguration{
			Value: ctltypes.ContainerConfiguration{ContainerUri: aws.String("public.ecr.aws/x/agent:1")}}
	})
	var ve *ctltypes.ValidationException
	if !errors.As(err, &ve) || !strings.Contains(aws.ToString(ve.Message), "container images") ||
		!strings.Contains(aws.ToString(ve.Message), api.LocalBucket) {
		t.Fatalf("container refusal: %v", err)
	}

	// A runtime holds at most ten endpoints, DEFAULT included.
	for i := range registry.MaxEndpoints - 1 {
		if _, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{
			AgentRuntimeId: aws.String(id), Name: aws.String("e" + itoa(i))}); err != nil {
			t.Fatalf("endpoint %d: %v", i, err)
		}
	}
	full := storeSnapshot(t, c.d.Store())
	_, err = c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), Name: aws.String("one_too_many")})
	wantAPIError(t, err, "ServiceQuotaExceededException", 402)
	_, err = c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), Name: aws.String("e0")})
	wantAPIError(t, err, "ConflictException", 409)
	if after := storeSnapshot(t, c.d.Store()); after != full {
		t.Fatalf("store changed on refused endpoint creates")
	}

	// The config runtime is listed and readable, marked as the file's.
	resp, err := http.Get(c.d.URL() + "/runtimes/" + cfgID + "/")
	if err != nil {
		t.Fatalf("get config runtime: %v", err)
	}
	defer resp.Body.Close()
	var raw struct {
		Source  string   `json:"berthSource"`
		Command []string `json:"berthCommand"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != 200 || raw.Source != string(registry.SourceConfig) || len(raw.Command) != 1 {
		t.Fatalf("config runtime: status %d source %q command %v err %v", resp.StatusCode, raw.Source, raw.Command, err)
	}
}

// TestControlPlaneRestart checks that what the API created survives a
// restart on the same data dir, that sessions alive at the restart end as
// "shutdown", and that their IDs then get fresh sandboxes.
func TestControlPlaneRestart(t *testing.T) {
	for _, backend := range backends(t) {
		for _, crash := range []bool{false, true} {
			name := backend + "/clean"
			if crash {
				name = backend + "/crash"
			}
			t.Run(name, func(t *testing.T) { testRestart(t, backend, crash) })
		}
	}
}

func testRestart(t *testing.T, backend string, crash bool) {
	ctx := context.Background()
	dataDir := t.TempDir()
	dir := codeDir(t)
	token := uuid.NewString()
	c1 := startCP(t, dataDir, backend, token)
	created, err := c1.ctl.CreateAgentRuntime(ctx, c1.createInput("survivor", dir, "v1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id, arn := aws.ToString(created.AgentRuntimeId), aws.ToString(created.AgentRuntimeArn)
	if _, err := c1.ctl.UpdateAgentRuntime(ctx, &ctl.UpdateAgentRuntimeInput{
		AgentRuntimeId: aws.String(id), AgentRuntimeArtifact: codeArtifact(dir, "testagent"),
		RoleArn: aws.String("arn:aws:iam::123456789012:role/berth-test"), EnvironmentVariables: c1.env("v2"),
	}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := c1.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{
		AgentRuntimeId: aws.String(id), Name: aws.String("pinned"), AgentRuntimeVersion: aws.String("1")}); err != nil {
		t.Fatalf("create endpoint: %v", err)
	}
	sid := newSessionID()
	c1.echo(arn, "pinned", sid)
	if e := c1.echo(arn, "pinned", sid); e.Count != 2 {
		t.Fatalf("second call before the restart: %+v", e)
	}
	c1.waitAgents(1)

	if crash {
		// Leave the first berth running, as if it had died (its lock goes
		// with it): the second one must claim its sessions and kill their
		// leftover processes.
		c1.d.ReleaseLock()
		c2 := startCP(t, dataDir, backend, token)
		c2.waitAgents(0)
		deadline := time.Now().Add(10 * time.Second)
		for len(c1.d.Sessions().Live()) > 0 {
			// The first berth notices its agent died; wait until its
			// teardown is done, since it shares the sandbox directory.
			if time.Now().After(deadline) {
				t.Fatalf("the first berth still holds %d sessions after its agent was reaped", len(c1.d.Sessions().Live()))
			}
			time.Sleep(20 * time.Millisecond)
		}
		checkRestarted(t, c2, id, arn, sid)
		c2.close()
		c1.closed = true
		// The first berth's own shutdown finds nothing left to stop; its
		// store writes are fenced. Only that it returns matters.
		if err := c1.d.Close(ctx); err != nil {
			t.Logf("closing the abandoned berth: %v", err)
		}
		return
	}
	c1.close()
	if n := c1.agents(); n != 0 {
		t.Fatalf("%d agent processes survived a clean shutdown", n)
	}
	c2 := startCP(t, dataDir, backend, token)
	checkRestarted(t, c2, id, arn, sid)
}

func checkRestarted(t *testing.T, c *cp, id, arn, sid string) {
	t.Helper()
	ctx := context.Background()
	got, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if aws.ToString(got.AgentRuntimeArn) != arn || aws.ToString(got.AgentRuntimeVersion) != "2" || got.EnvironmentVariables["VERSION_MARK"] != "v2" {
		t.Fatalf("after restart: %+v", got)
	}
	vers, err := c.ctl.ListAgentRuntimeVersions(ctx, &ctl.ListAgentRuntimeVersionsInput{AgentRuntimeId: aws.String(id)})
	if err != nil || len(vers.AgentRuntimes) != 2 {
		t.Fatalf("versions after restart: %v %+v", err, vers)
	}
	ep, err := c.ctl.GetAgentRuntimeEndpoint(ctx, &ctl.GetAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("pinned")})
	if err != nil || aws.ToString(ep.LiveVersion) != "1" {
		t.Fatalf("pinned endpoint after restart: %v %+v", err, ep)
	}
	def, err := c.ctl.GetAgentRuntimeEndpoint(ctx, &ctl.GetAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id), EndpointName: aws.String("DEFAULT")})
	if err != nil || aws.ToString(def.LiveVersion) != "2" {
		t.Fatalf("DEFAULT after restart: %v %+v", err, def)
	}

	recs := sessionRecords(t, c.dataDir, id)
	if len(recs) != 1 || recs[0].SessionID != sid || recs[0].EndReason != session.EndShutdown || recs[0].State != session.StateTerminated {
		t.Fatalf("session records after restart: %+v", recs)
	}
	again := c.echo(arn, "pinned", sid)
	if again.Count != 1 || again.Env["VERSION_MARK"] != "v1" {
		t.Fatalf("old session ID after restart: %+v, want a fresh v1 sandbox", again)
	}
	c.waitAgents(1)
	if recs := sessionRecords(t, c.dataDir, id); len(recs) != 2 {
		t.Fatalf("%d session records after the fresh start, want 2", len(recs))
	}
}

// TestControlPlaneLifecycleRules checks AgentCore's defaulting of
// lifecycleConfiguration as GetAgentRuntime reports it.
func TestControlPlaneLifecycleRules(t *testing.T) {
	c := startCP(t, t.TempDir(), "process", uuid.NewString())
	ctx := context.Background()
	dir := codeDir(t)
	for i, tc := range []struct {
		idle, maxLife         int32 // 0: left out
		wantIdle, wantMaxLife int32
	}{
		{0, 0, 900, 28800},
		{0, 600, 600, 600},
		{0, 900, 900, 900},
		{0, 1200, 900, 1200},
		{300, 0, 300, 28800},
		{60, 60, 60, 60},
		{28800, 28800, 28800, 28800},
	} {
		in := c.createInput("life"+itoa(i), dir, "v1")
		in.LifecycleConfiguration = &ctltypes.LifecycleConfiguration{}
		if tc.idle != 0 {
			in.LifecycleConfiguration.IdleRuntimeSessionTimeout = aws.Int32(tc.idle)
		}
		if tc.maxLife != 0 {
			in.LifecycleConfiguration.MaxLifetime = aws.Int32(tc.maxLife)
		}
		out, err := c.ctl.CreateAgentRuntime(ctx, in)
		if err != nil {
			t.Fatalf("idle %d max %d: %v", tc.idle, tc.maxLife, err)
		}
		got, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: out.AgentRuntimeId})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		l := got.LifecycleConfiguration
		if aws.ToInt32(l.IdleRuntimeSessionTimeout) != tc.wantIdle || aws.ToInt32(l.MaxLifetime) != tc.wantMaxLife {
			t.Errorf("idle %d max %d: got idle %d max %d, want %d %d", tc.idle, tc.maxLife,
				aws.ToInt32(l.IdleRuntimeSessionTimeout), aws.ToInt32(l.MaxLifetime), tc.wantIdle, tc.wantMaxLife)
		}
	}
}

const pythonAgent = `import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ping":
            self.reply({"status": "Healthy", "time_of_last_update": 0})
        else:
            self.send_error(404)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply({"lang": "python", "cwd": os.getcwd()})

    def reply(self, v):
        body = json.dumps(v).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((os.environ.get("BERTH_AGENT_HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
`

const nodeAgent = `const http = require("http");
http.createServer((req, res) => {
  res.setHeader("Content-Type", "application/json");
  if (req.method === "GET" && req.url === "/ping") {
    res.end(JSON.stringify({status: "Healthy", time_of_last_update: 0}));
    return;
  }
  req.resume();
  req.on("end", () => res.end(JSON.stringify({lang: "node", cwd: process.cwd()})));
}).listen(Number(process.env.PORT || 8080), process.env.BERTH_AGENT_HOST || "0.0.0.0");
`

// TestControlPlaneArtifactMapping creates runtimes from each entryPoint
// form and runs them: a Python script, a Node script, a wrapper in front of
// a script, and an executable by absolute path.
func TestControlPlaneArtifactMapping(t *testing.T) {
	// It runs real Python and Node agents.
	_, err := exec.LookPath("python3")
	testenv.Require(t, testenv.Python3, err)
	_, err = exec.LookPath("node")
	testenv.Require(t, testenv.Node, err)
	// The mapping, not the isolation, is under test: the process backend
	// sees the host's interpreters wherever they are installed.
	c := startCP(t, t.TempDir(), "process", uuid.NewString())
	ctx := context.Background()
	dir := codeDir(t)
	for name, src := range map[string]string{"main.py": pythonAgent, "index.js": nodeAgent} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		runtime  ctltypes.AgentManagedRuntimeType
		entry    []string
		wantCmd  []string
		wantLang string // "" for the test agent
	}{
		{"python", ctltypes.AgentManagedRuntimeTypePython312, []string{"main.py"}, []string{python("3.12"), "main.py"}, "python"},
		{"node", ctltypes.AgentManagedRuntimeTypeNode22, []string{"index.js"}, []string{"node", "index.js"}, "node"},
		{"wrapped", ctltypes.AgentManagedRuntimeTypePython313, []string{"env", "main.py"}, []string{"env", python("3.13"), "main.py"}, "python"},
		{"relative_exe", ctltypes.AgentManagedRuntimeTypePython312, []string{"testagent"}, []string{"./testagent"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := c.createInput("map_"+tc.name, dir, "v1")
			in.AgentRuntimeArtifact = &ctltypes.AgentRuntimeArtifactMemberCodeConfiguration{Value: ctltypes.CodeConfiguration{
				Code:    &ctltypes.CodeMemberS3{Value: ctltypes.S3Location{Bucket: aws.String(api.LocalBucket), Prefix: aws.String(dir)}},
				Runtime: tc.runtime, EntryPoint: tc.entry,
			}}
			out, err := c.ctl.CreateAgentRuntime(ctx, in)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			resp, err := http.Get(c.d.URL() + "/runtimes/" + aws.ToString(out.AgentRuntimeId) + "/")
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			var raw struct {
				Command []string `json:"berthCommand"`
				Workdir string   `json:"berthWorkdir"`
			}
			err = json.NewDecoder(resp.Body).Decode(&raw)
			resp.Body.Close()
			// The version runs a snapshot of the code, in berth's data dir.
			if err != nil || !slices.Equal(raw.Command, tc.wantCmd) || !strings.HasPrefix(raw.Workdir, filepath.Join(c.dataDir, "snapshots")+"/") {
				t.Fatalf("command %q in %q (err %v), want %q in a snapshot of %s", raw.Command, raw.Workdir, err, tc.wantCmd, dir)
			}
			inv, err := c.dp.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
				AgentRuntimeArn: out.AgentRuntimeArn, RuntimeSessionId: aws.String(newSessionID()), Payload: []byte(`{"op":"echo"}`)})
			if err != nil {
				t.Fatalf("invoke: %v", err)
			}
			defer inv.Response.Close()
			var reply struct {
				Lang string `json:"lang"`
				Cwd  string `json:"cwd"`
				PID  int    `json:"pid"`
			}
			if err := json.NewDecoder(inv.Response).Decode(&reply); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if reply.Lang != tc.wantLang || reply.Cwd != raw.Workdir || (tc.wantLang == "" && reply.PID == 0) {
				t.Fatalf("agent answered %+v, want lang %q in %s", reply, tc.wantLang, dir)
			}
		})
	}
}

// TestControlPlaneGoClient drives the same API through berth's own Go
// client (package client), which the CLI uses.
func TestControlPlaneGoClient(t *testing.T) {
	c := startCP(t, t.TempDir(), "process", uuid.NewString())
	ctx := context.Background()
	dir := codeDir(t)
	cl := &client.Client{Endpoint: c.d.URL()}

	idle := 120
	in := client.RuntimeInput{
		AgentRuntimeName:       "via_client",
		AgentRuntimeArtifact:   api.LocalCode(dir, "PYTHON_3_12", "testagent"),
		Description:            optional("made by package client"),
		LifecycleConfiguration: &api.Lifecycle{IdleRuntimeSessionTimeout: &idle},
		EnvironmentVariables:   c.env("v1"),
		// berth's own settings: limits within the operator's ceilings and
		// a session policy, which only the config file could set before.
		BerthSettings: &api.BerthSettings{
			Limits:   &api.Limits{MemoryBytes: 256 << 20, Pids: 64},
			Sessions: &api.SessionPolicy{Concurrency: "reject"},
		},
	}
	rt, err := cl.CreateRuntime(ctx, in)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if rt.AgentRuntimeVersion != "1" || rt.Status != api.StatusReady || rt.AgentRuntimeID == "" || rt.CreatedAt.IsZero() {
		t.Fatalf("create returned %+v", rt)
	}
	got, err := cl.GetRuntime(ctx, "via_client", "")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	l := got.LifecycleConfiguration
	if got.AgentRuntimeID != rt.AgentRuntimeID || got.BerthSource != string(registry.SourceAPI) || *l.IdleRuntimeSessionTimeout != 120 ||
		*l.MaxLifetime != 28800 || got.EnvironmentVariables["VERSION_MARK"] != "v1" ||
		got.AgentRuntimeArtifact.Code.Code.S3.Prefix != dir || !strings.HasPrefix(got.BerthWorkdir, filepath.Join(c.dataDir, "snapshots")) ||
		!slices.Equal(got.BerthCommand, []string{"./testagent"}) {
		t.Fatalf("get returned %+v", got)
	}
	if b := got.BerthSettings; b == nil || b.Limits.MemoryBytes != 256<<20 || b.Limits.Pids != 64 ||
		b.Sessions.Concurrency != "reject" || b.Sandbox != "process" || b.Network != "" {
		t.Fatalf("berth settings not kept: %+v", got.BerthSettings)
	}
	// The policy is live: a second call while one runs is refused.
	const sid = "reject-policy-session-0123456789abcdef"
	first := make(chan error, 1)
	go func() {
		out, err := cl.Invoke(ctx, client.InvokeInput{Runtime: rt.AgentRuntimeID, SessionID: sid,
			Payload: strings.NewReader(`{"op":"sleep","ms":5000}`)})
		if err == nil {
			_, err = io.Copy(io.Discard, out.Body)
			out.Body.Close()
		}
		first <- err
	}()
	for inFlight := 0; inFlight == 0; {
		list, err := cl.ListSessions(ctx, client.SessionFilter{Runtime: rt.AgentRuntimeID, State: "live"})
		if err != nil {
			t.Fatalf("list sessions: %v", err)
		}
		for _, s := range list.Sessions {
			if s.SessionID == sid {
				inFlight = s.InFlight
			}
		}
	}
	_, err = cl.Invoke(ctx, client.InvokeInput{Runtime: rt.AgentRuntimeID, SessionID: sid,
		Payload: strings.NewReader(`{"op":"echo"}`)})
	if ae := (*api.Error)(nil); !errors.As(err, &ae) || ae.Type != api.ErrRetryableConflict {
		t.Fatalf("second call under reject: %v, want RetryableConflictException (the first call ended with %v)", err, <-first)
	}
	if err := <-first; err != nil {
		t.Fatalf("first call: %v", err)
	}
	// Above the ceiling, or an operator-only setting: refused, field named.
	for _, tc := range []struct {
		b     *api.BerthSettings
		field string
	}{
		{&api.BerthSettings{Limits: &api.Limits{MemoryBytes: 64 << 30}}, "berthSettings.limits.memoryBytes"},
		{&api.BerthSettings{Sandbox: "process"}, "berthSettings.sandbox"},
		{&api.BerthSettings{Network: "host"}, "berthSettings.network"},
		{&api.BerthSettings{Mounts: []api.Mount{{Source: "/", Target: "/host"}}}, "berthSettings.mounts"},
	} {
		bad := in
		bad.AgentRuntimeName, bad.BerthSettings = "refused", tc.b
		_, err := cl.CreateRuntime(ctx, bad)
		if ae := (*api.Error)(nil); !errors.As(err, &ae) || ae.Type != api.ErrValidation || !strings.Contains(ae.Message, tc.field) {
			t.Errorf("%s: %v, want ValidationException naming it", tc.field, err)
		}
	}
	in.EnvironmentVariables = c.env("v2")
	up, err := cl.UpdateRuntime(ctx, rt.AgentRuntimeID, in)
	if err != nil || up.AgentRuntimeVersion != "2" {
		t.Fatalf("update: %v %+v", err, up)
	}
	vs, err := cl.AllRuntimeVersions(ctx, rt.AgentRuntimeArn)
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions: %v %+v", err, vs)
	}
	all, err := cl.AllRuntimes(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("runtimes: %v %+v", err, all)
	}
	ep, err := cl.CreateEndpoint(ctx, rt.AgentRuntimeID, client.EndpointInput{Name: "old", AgentRuntimeVersion: optional("1")})
	if err != nil || ep.Name != "old" || ep.LiveVersion != "1" {
		t.Fatalf("create endpoint: %v %+v", err, ep)
	}
	if ep, err = cl.UpdateEndpoint(ctx, rt.AgentRuntimeID, "old", client.EndpointInput{Description: optional("still v1")}); err != nil ||
		ep.LiveVersion != "1" || ep.Description != "still v1" {
		t.Fatalf("update endpoint without a version: %v %+v", err, ep)
	}
	eps, err := cl.AllEndpoints(ctx, rt.AgentRuntimeID)
	if err != nil || len(eps) != 2 {
		t.Fatalf("endpoints: %v %+v", err, eps)
	}
	out, err := cl.Invoke(ctx, client.InvokeInput{Runtime: rt.AgentRuntimeID, Qualifier: "old",
		Payload: strings.NewReader(`{"op":"echo","env":["VERSION_MARK"]}`)})
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	var e agentEcho
	err = json.NewDecoder(out.Body).Decode(&e)
	out.Body.Close()
	if err != nil || e.Env["VERSION_MARK"] != "v1" {
		t.Fatalf("invoke on the old endpoint: %v %+v", err, e)
	}
	if err := cl.DeleteEndpoint(ctx, rt.AgentRuntimeID, "old"); err != nil {
		t.Fatalf("delete endpoint: %v", err)
	}

	_, err = cl.CreateRuntime(ctx, client.RuntimeInput{AgentRuntimeName: "bad-name", AgentRuntimeArtifact: api.LocalCode(dir, "PYTHON_3_12", "testagent")})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Type != api.ErrValidation || ae.StatusCode != 400 || !strings.Contains(ae.Message, "agentRuntimeName") {
		t.Fatalf("bad name: %v", err)
	}
	// Requests the AWS SDKs would stop client-side still get a clear
	// answer: the CLI's update of a config runtime sends no artifact.
	_, err = cl.UpdateRuntime(ctx, registry.StableID("fromconfig"), client.RuntimeInput{EnvironmentVariables: map[string]string{"A": "b"}})
	if !errors.As(err, &ae) || ae.Type != api.ErrValidation || !strings.Contains(ae.Message, "config file") {
		t.Fatalf("update of a config runtime: %v", err)
	}
	_, err = cl.CreateRuntime(ctx, client.RuntimeInput{AgentRuntimeName: "no_code", AgentRuntimeArtifact: &api.Artifact{Code: &api.CodeConfiguration{
		Runtime: "PYTHON_3_12", EntryPoint: []string{"main.py"}}}})
	if !errors.As(err, &ae) || ae.Type != api.ErrValidation || !strings.Contains(ae.Message, "code.s3 is required") {
		t.Fatalf("code without s3: %v", err)
	}
	if err := cl.DeleteRuntime(ctx, rt.AgentRuntimeID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	c.waitAgents(0)
	_, err = cl.GetRuntime(ctx, rt.AgentRuntimeID, "")
	if !errors.As(err, &ae) || ae.Type != api.ErrResourceNotFound || ae.StatusCode != 404 {
		t.Fatalf("get after delete: %v", err)
	}
}

func optional(s string) *string { return &s }

// python is the interpreter berth picks for a PYTHON_3_x runtime here.
func python(version string) string {
	if exec.Command("python"+version, "-c", "").Run() == nil {
		return "python" + version
	}
	return "python3"
}

// TestVersionsPinCode: each version runs a snapshot of its code, so an
// endpoint pinned to version 1 runs version 1's code after the directory
// changed; and a code zip deploys like a directory.
func TestVersionsPinCode(t *testing.T) {
	c := startCP(t, t.TempDir(), "process", uuid.NewString())
	ctx := context.Background()
	dir := codeDir(t)
	mark := filepath.Join(dir, "mark.txt")
	os.WriteFile(mark, []byte("one"), 0o644)
	created, err := c.ctl.CreateAgentRuntime(ctx, c.createInput("pinning", dir, "v"))
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(created.AgentRuntimeId)
	if _, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{AgentRuntimeId: aws.String(id),
		Name: aws.String("pinned"), AgentRuntimeVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mark, []byte("two"), 0o644)
	up := &ctl.UpdateAgentRuntimeInput{AgentRuntimeId: aws.String(id)}
	in := c.createInput("pinning", dir, "v")
	up.AgentRuntimeArtifact, up.RoleArn, up.NetworkConfiguration, up.EnvironmentVariables = in.AgentRuntimeArtifact, in.RoleArn, in.NetworkConfiguration, in.EnvironmentVariables
	if _, err := c.ctl.UpdateAgentRuntime(ctx, up); err != nil {
		t.Fatal(err)
	}
	read := func(qualifier string) string {
		t.Helper()
		out, err := c.dp.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{AgentRuntimeArn: created.AgentRuntimeArn,
			Qualifier: aws.String(qualifier), RuntimeSessionId: aws.String(newSessionID()), ContentType: aws.String("application/json"),
			Payload: []byte(`{"op":"read","path":"mark.txt"}`)})
		if err != nil {
			t.Fatalf("invoke %s: %v", qualifier, err)
		}
		defer out.Response.Close()
		var r struct {
			Data string `json:"data"`
		}
		json.NewDecoder(out.Response).Decode(&r)
		return r.Data
	}
	if got := read("pinned"); got != "one" {
		t.Errorf("the endpoint pinned to version 1 runs code reading %q, want version 1's %q", got, "one")
	}
	if got := read("DEFAULT"); got != "two" {
		t.Errorf("DEFAULT runs code reading %q, want version 2's %q", got, "two")
	}

	// The same agent as a zip: it deploys, and runs from the unpacked copy.
	zipPath := filepath.Join(dir, "..", filepath.Base(dir)+".zip")
	f, err := os.Create(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, name := range []string{"testagent", "mark.txt"} {
		fi, _ := os.Stat(filepath.Join(dir, name))
		h, _ := zip.FileInfoHeader(fi)
		h.Name = name
		w, _ := zw.CreateHeader(h)
		data, _ := os.ReadFile(filepath.Join(dir, name))
		w.Write(data)
	}
	zw.Close()
	f.Close()
	zin := c.createInput("zipped", zipPath, "z")
	zin.AgentRuntimeArtifact = codeArtifact(zipPath, "testagent")
	zc, err := c.ctl.CreateAgentRuntime(ctx, zin)
	if err != nil {
		t.Fatalf("create from a zip: %v", err)
	}
	out, err := c.dp.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{AgentRuntimeArn: zc.AgentRuntimeArn,
		RuntimeSessionId: aws.String(newSessionID()), ContentType: aws.String("application/json"), Payload: []byte(`{"op":"read","path":"mark.txt"}`)})
	if err != nil {
		t.Fatalf("invoke the zipped runtime: %v", err)
	}
	body, _ := io.ReadAll(out.Response)
	out.Response.Close()
	if !strings.Contains(string(body), `"two"`) {
		t.Errorf("the zipped runtime answered %s", body)
	}
}
