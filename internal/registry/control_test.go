package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/store"
)

// The control plane's operations against a real SQLite store: what they
// write, what they refuse, and what watchers hear.

// recorder is a Watcher that keeps every change and, on each one, what the
// registry resolves at that moment (so a test can tell the change came
// after the commit and the cache drop).
type recorder struct {
	reg *registry.Registry

	mu      sync.Mutex
	changes []registry.Change
	seen    []string // per change: the DEFAULT version Resolve saw, or its error class
}

func (w *recorder) RegistryChanged(ctx context.Context, c registry.Change) {
	seen := "-"
	if res, err := w.reg.Resolve(ctx, c.RuntimeID, ""); err == nil {
		seen = fmt.Sprint(res.Version.Version)
	} else if errors.Is(err, errdefs.ErrNotFound) {
		seen = "not found"
	}
	w.mu.Lock()
	w.changes = append(w.changes, c)
	w.seen = append(w.seen, seen)
	w.mu.Unlock()
}

// take returns and forgets what the watcher heard.
func (w *recorder) take() ([]registry.Change, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, s := w.changes, w.seen
	w.changes, w.seen = nil, nil
	return c, s
}

type fixture struct {
	t    *testing.T
	db   *store.DB
	reg  *registry.Registry
	ctl  *registry.Control
	w    *recorder
	code string // a code directory with an executable "agent" and main.py
}

var rules = registry.Rulebook{
	DefaultLimits: registry.Limits{Memory: 1 << 30, CPU: 1000, Pids: 256, Disk: 1 << 30},
	Ceilings:      registry.Limits{Memory: 2 << 30},
	APISandbox:    registry.BackendLinux,
	APINetwork:    sandbox.NetworkNone,
	APIWarmPool:   2,
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	code := t.TempDir()
	for name, mode := range map[string]os.FileMode{"agent": 0o755, "main.py": 0o644} {
		if err := os.WriteFile(filepath.Join(code, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	rb := rules
	rb.CodeRoots = []string{code}
	reg := registry.New(db, registry.Options{Rules: rb, Region: "us-west-2", Account: "210987654321", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	w := &recorder{reg: reg}
	reg.Watch(w)
	return &fixture{t: t, db: db, reg: reg, ctl: registry.NewControl(reg), w: w, code: code}
}

func (f *fixture) spec(name string) registry.RuntimeSpec {
	return registry.RuntimeSpec{
		Name: name,
		Artifact: registry.ArtifactSpec{Code: &registry.CodeSpec{
			Bucket: api.LocalBucket, Prefix: f.code, Runtime: "PYTHON_3_12", EntryPoint: []string{"agent"}}},
	}
}

func (f *fixture) create(name string) registry.Runtime {
	f.t.Helper()
	rt, _, err := f.ctl.CreateRuntime(f.t.Context(), f.spec(name))
	if err != nil {
		f.t.Fatal(err)
	}
	f.w.take()
	return rt
}

// snapshot is everything the store holds about runtimes.
func (f *fixture) snapshot(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	rts, _, err := f.db.ListRuntimes(ctx, registry.Page{MaxResults: 100})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, rt := range rts {
		vs, _, err := f.db.ListVersions(ctx, rt.ID, registry.Page{MaxResults: 100})
		if err != nil {
			t.Fatal(err)
		}
		es, _, err := f.db.ListEndpoints(ctx, rt.ID, registry.Page{MaxResults: 100})
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal([]any{rt, vs, es})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

// refused runs op, expects an error, and checks that the store did not
// change and no watcher heard of anything.
func (f *fixture) refused(t *testing.T, op func() error) error {
	t.Helper()
	before := f.snapshot(t)
	err := op()
	if err == nil {
		t.Fatal("accepted")
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("a refused request (%v) changed the store:\nbefore %s\nafter  %s", err, before, after)
	}
	if c, _ := f.w.take(); len(c) > 0 {
		t.Fatalf("a refused request (%v) told watchers %+v", err, c)
	}
	return err
}

// generic names the interpreter python3 whichever python3.x this host has.
func generic(cmd []string) []string {
	out := slices.Clone(cmd)
	for i, c := range out {
		if strings.HasPrefix(c, "python3.") {
			out[i] = "python3"
		}
	}
	return out
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var fe *errdefs.FieldError
	if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want an invalid-argument error on %s", err, field)
	}
}

func TestCreateRuntime(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	desc := "first"
	spec := f.spec("agent")
	spec.Description = &desc
	spec.Tags = map[string]string{"team": "berth"}
	spec.RoleARN = "arn:aws:iam::123456789012:role/agent"
	spec.Settings.Env = map[string]string{"MODE": "test"}
	rt, v, err := f.ctl.CreateRuntime(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rt.ID, "agent-") || len(rt.ID) != len("agent-")+10 ||
		rt.ARN != "arn:aws:bedrock-agentcore:us-west-2:210987654321:runtime/"+rt.ID ||
		rt.Source != registry.SourceAPI || rt.LatestVersion != 1 || rt.Status != api.StatusReady ||
		rt.Description != "first" || rt.Tags["team"] != "berth" {
		t.Fatalf("runtime %+v", rt)
	}
	s := v.Settings
	if v.Version != 1 || !slices.Equal(s.Command, []string{"./agent"}) || s.Workdir != f.code ||
		s.Sandbox != registry.BackendLinux || s.Network != sandbox.NetworkNone || s.Limits != rules.DefaultLimits ||
		s.Protocol != registry.ProtocolHTTP || s.Artifact.RoleARN != spec.RoleARN || s.Artifact.Runtime != "PYTHON_3_12" ||
		s.Env["MODE"] != "test" {
		t.Fatalf("version %+v", v)
	}
	// The store has what was returned, reachable by ID, ARN and name.
	for _, ref := range []string{rt.ID, rt.ARN, "agent"} {
		got, gv, err := f.ctl.GetRuntime(ctx, ref, "")
		if err != nil || got.ID != rt.ID || gv.Version != 1 || !slices.Equal(gv.Settings.Command, s.Command) {
			t.Fatalf("get %s: %+v %+v %v", ref, got, gv, err)
		}
	}
	// An ARN of another region, account or service names nothing here.
	for _, arn := range []string{
		"arn:aws:bedrock-agentcore:us-east-1:210987654321:runtime/" + rt.ID,
		"arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/" + rt.ID,
		"arn:aws:lambda:us-west-2:210987654321:runtime/" + rt.ID,
		"arn:runtime/" + rt.ID,
	} {
		if _, _, err := f.ctl.GetRuntime(ctx, arn, ""); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("get %s: %v", arn, err)
		}
	}
	_, es, _, err := f.ctl.ListEndpoints(ctx, rt.ID, registry.Page{})
	if err != nil || len(es) != 1 || es[0].Name != registry.DefaultEndpoint || es[0].LiveVersion != 1 {
		t.Fatalf("endpoints %+v %v", es, err)
	}
	changes, seen := f.w.take()
	if !slices.Equal(changes, []registry.Change{{Kind: registry.RuntimeCreated, RuntimeID: rt.ID}}) || seen[0] != "1" {
		t.Fatalf("watchers heard %+v, resolving %v", changes, seen)
	}

	// The same name again is a conflict, and changes nothing.
	err = f.refused(t, func() error { _, _, err := f.ctl.CreateRuntime(ctx, f.spec("agent")); return err })
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("taken name: %v", err)
	}
}

func TestCreateRuntimeRefusals(t *testing.T) {
	f := newFixture(t)
	f.create("existing")
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name  string
		mut   func(*registry.RuntimeSpec)
		field string
	}{
		{"bad name", func(s *registry.RuntimeSpec) { s.Name = "9lives" }, "agentRuntimeName"},
		{"no name", func(s *registry.RuntimeSpec) { s.Name = "" }, "agentRuntimeName"},
		{"reserved tag", func(s *registry.RuntimeSpec) { s.Tags = map[string]string{"berth:network": "host"} }, "tags"},
		{"empty description", func(s *registry.RuntimeSpec) { s.Description = str("") }, "description"},
		{"long description", func(s *registry.RuntimeSpec) { s.Description = str(strings.Repeat("d", registry.MaxDescription+1)) }, "description"},
		{"not a role ARN", func(s *registry.RuntimeSpec) { s.RoleARN = "arn:aws:iam::123456789012:user/bob" }, "roleArn"},
		{"VPC", func(s *registry.RuntimeSpec) { s.NetworkMode = "VPC" }, "networkConfiguration.networkMode"},
		{"unknown network mode", func(s *registry.RuntimeSpec) { s.NetworkMode = "PRIVATE" }, "networkConfiguration.networkMode"},
		{"container, with no image store", func(s *registry.RuntimeSpec) { s.Artifact = registry.ArtifactSpec{ContainerURI: "img"} },
			"agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"container, not a reference", func(s *registry.RuntimeSpec) { s.Artifact = registry.ArtifactSpec{ContainerURI: "Not A Ref"} },
			"agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"no artifact", func(s *registry.RuntimeSpec) { s.Artifact = registry.ArtifactSpec{} }, "agentRuntimeArtifact"},
		{"code outside the code roots", func(s *registry.RuntimeSpec) { s.Artifact.Code.Prefix = os.TempDir() },
			"agentRuntimeArtifact.codeConfiguration.code.s3.prefix"},
		{"a sandbox backend", func(s *registry.RuntimeSpec) { s.Settings.Sandbox = registry.BackendProcess }, "berthSettings.sandbox"},
		{"the host network", func(s *registry.RuntimeSpec) { s.Settings.Network = sandbox.NetworkHost }, "berthSettings.network"},
		{"a mount", func(s *registry.RuntimeSpec) {
			s.Settings.Mounts = []sandbox.Mount{{Source: "/srv/data", Target: "/data"}}
		}, "berthSettings.mounts"},
		{"a mount of the host's secrets", func(s *registry.RuntimeSpec) {
			s.Settings.Mounts = []sandbox.Mount{{Source: "/etc", Target: "/etc"}}
		}, "berthSettings.mounts[0].source"},
		{"memory above the ceiling", func(s *registry.RuntimeSpec) { s.Settings.Memory = 4 << 30 }, "berthSettings.limits.memoryBytes"},
		{"idle under a minute", func(s *registry.RuntimeSpec) { s.Settings.IdleTimeout = registry.Duration(59e9) },
			"lifecycleConfiguration.idleRuntimeSessionTimeout"},
		{"warm pool above the ceiling", func(s *registry.RuntimeSpec) { s.Settings.Sessions.WarmPool = 3 }, "berthSettings.sessions.warmPool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.spec("fresh")
			tc.mut(&s)
			err := f.refused(t, func() error { _, _, err := f.ctl.CreateRuntime(t.Context(), s); return err })
			wantField(t, err, tc.field)
		})
	}
}

func TestUpdateRuntime(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	desc := "v1"
	spec := f.spec("agent")
	spec.Description = &desc
	rt, _, err := f.ctl.CreateRuntime(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	_, pinned, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "stable", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	f.w.take()

	// An update replaces the settings and keeps a description left out.
	up := f.spec("")
	up.Artifact.Code.EntryPoint = []string{"main.py"}
	got, v, err := f.ctl.UpdateRuntime(ctx, rt.ARN, up)
	if err != nil {
		t.Fatal(err)
	}
	if got.LatestVersion != 2 || v.Version != 2 || got.Description != "v1" || !slices.Equal(generic(v.Settings.Command), []string{"python3", "main.py"}) {
		t.Fatalf("update: %+v %+v", got, v)
	}
	changes, seen := f.w.take()
	if !slices.Equal(changes, []registry.Change{{Kind: registry.RuntimeUpdated, RuntimeID: rt.ID}}) || seen[0] != "2" {
		t.Fatalf("watchers heard %+v, resolving DEFAULT to %v", changes, seen)
	}
	// DEFAULT follows; the pinned endpoint stays; version 1 is unchanged.
	for name, want := range map[string]int{registry.DefaultEndpoint: 2, "stable": 1} {
		if res, err := f.reg.Resolve(ctx, rt.ID, name); err != nil || res.Version.Version != want {
			t.Fatalf("%s resolves to %+v %v, want version %d", name, res.Version, err, want)
		}
	}
	if _, e, err := f.ctl.GetEndpoint(ctx, rt.ID, "stable"); err != nil || e.LiveVersion != pinned.LiveVersion {
		t.Fatalf("pinned endpoint moved: %+v %v", e, err)
	}
	if _, v1, err := f.ctl.GetRuntime(ctx, rt.ID, "1"); err != nil || !slices.Equal(v1.Settings.Command, []string{"./agent"}) {
		t.Fatalf("version 1 changed: %+v %v", v1, err)
	}
	desc2 := "v3"
	up.Description = &desc2
	if got, _, err := f.ctl.UpdateRuntime(ctx, "agent", up); err != nil || got.Description != "v3" || got.LatestVersion != 3 {
		t.Fatalf("update by name: %+v %v", got, err)
	}
	f.w.take()

	// Refusals change nothing.
	bad := f.spec("")
	bad.Settings.Sandbox = registry.BackendProcess
	wantField(t, f.refused(t, func() error { _, _, err := f.ctl.UpdateRuntime(ctx, rt.ID, bad); return err }), "berthSettings.sandbox")
	bad = f.spec("")
	bad.Artifact.Code.Bucket = "s3-bucket"
	wantField(t, f.refused(t, func() error { _, _, err := f.ctl.UpdateRuntime(ctx, rt.ID, bad); return err }),
		"agentRuntimeArtifact.codeConfiguration.code.s3.bucket")
	if err := f.refused(t, func() error { _, _, err := f.ctl.UpdateRuntime(ctx, "nobody", f.spec("")); return err }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown runtime: %v", err)
	}
	wantField(t, f.refused(t, func() error { _, _, err := f.ctl.UpdateRuntime(ctx, "", f.spec("")); return err }), "agentRuntimeId")
}

func TestGetRuntimeVersions(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rt := f.create("agent")
	wantField(t, func() error { _, _, err := f.ctl.GetRuntime(ctx, rt.ID, "v1"); return err }(), "version")
	if _, _, err := f.ctl.GetRuntime(ctx, rt.ID, "2"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a version not made yet: %v", err)
	}
	if _, _, err := f.ctl.GetRuntime(ctx, "arn:aws:bedrock-agentcore:us-west-2:210987654321:runtime/ghost-0123456789", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown ARN: %v", err)
	}
	for i := 2; i <= 3; i++ {
		if _, _, err := f.ctl.UpdateRuntime(ctx, rt.ID, f.spec("")); err != nil {
			t.Fatal(err)
		}
	}
	_, vs, next, err := f.ctl.ListVersions(ctx, rt.ID, registry.Page{MaxResults: 2})
	if err != nil || len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 2 || next == "" {
		t.Fatalf("first page: %+v %q %v", vs, next, err)
	}
	_, vs, next, err = f.ctl.ListVersions(ctx, rt.ID, registry.Page{MaxResults: 2, NextToken: next})
	if err != nil || len(vs) != 1 || vs[0].Version != 3 || next != "" {
		t.Fatalf("second page: %+v %q %v", vs, next, err)
	}
	_, _, _, err = f.ctl.ListVersions(ctx, rt.ID, registry.Page{MaxResults: 101})
	wantField(t, err, "maxResults")
	_, _, _, err = f.ctl.ListVersions(ctx, rt.ID, registry.Page{NextToken: "not-a-token"})
	wantField(t, err, "nextToken")
	_, _, err = f.ctl.ListRuntimes(ctx, registry.Page{NextToken: "%%%"})
	wantField(t, err, "nextToken")
}

func TestDeleteRuntime(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rt := f.create("agent")
	other := f.create("other")
	if _, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	f.w.take()
	got, err := f.ctl.DeleteRuntime(ctx, rt.ARN)
	if err != nil || got.ID != rt.ID || got.Status != api.StatusDeleting {
		t.Fatalf("delete: %+v %v", got, err)
	}
	changes, seen := f.w.take()
	if !slices.Equal(changes, []registry.Change{{Kind: registry.RuntimeDeleted, RuntimeID: rt.ID}}) || seen[0] != "not found" {
		t.Fatalf("watchers heard %+v, resolving %v", changes, seen)
	}
	for _, q := range []string{registry.DefaultEndpoint, "prod"} {
		if _, err := f.reg.Resolve(ctx, rt.ID, q); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("%s still resolves: %v", q, err)
		}
	}
	if _, err := f.db.GetEndpoint(ctx, rt.ID, "prod"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the endpoint outlived its runtime: %v", err)
	}
	if _, err := f.reg.Lookup(ctx, other.ID); err != nil {
		t.Fatalf("another runtime went too: %v", err)
	}
	if err := f.refused(t, func() error { _, err := f.ctl.DeleteRuntime(ctx, rt.ID); return err }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// A runtime the config file declares is the operator's: the control plane
// may read it but not change or remove it.
func TestConfigRuntimesAreTheOperators(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	s := registry.Settings{Command: []string{"agent"}}
	if err := rules.Validate(registry.SourceConfig, &s); err != nil {
		t.Fatal(err)
	}
	rts, err := f.reg.Reconcile(ctx, []registry.Declared{{Name: "declared", Settings: s}})
	if err != nil {
		t.Fatal(err)
	}
	rt := rts[0]
	if rt.Source != registry.SourceConfig || rt.ID != registry.StableID("declared") {
		t.Fatalf("reconciled %+v", rt)
	}
	if c, _ := f.w.take(); !slices.Equal(c, []registry.Change{{Kind: registry.RuntimeCreated, RuntimeID: rt.ID}}) {
		t.Fatalf("reconcile told watchers %+v", c)
	}
	wantField(t, f.refused(t, func() error { _, _, err := f.ctl.UpdateRuntime(ctx, rt.ID, f.spec("")); return err }), "agentRuntimeId")
	wantField(t, f.refused(t, func() error { _, err := f.ctl.DeleteRuntime(ctx, "declared"); return err }), "agentRuntimeId")
	// Its name is taken for API callers too.
	if err := f.refused(t, func() error { _, _, err := f.ctl.CreateRuntime(ctx, f.spec("declared")); return err }); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("create over a config runtime's name: %v", err)
	}
	if _, v, err := f.ctl.GetRuntime(ctx, rt.ARN, ""); err != nil || v.Settings.Command[0] != "agent" {
		t.Fatalf("read: %+v %v", v, err)
	}
}

func TestEndpoints(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rt := f.create("agent")
	if _, _, err := f.ctl.UpdateRuntime(ctx, rt.ID, f.spec("")); err != nil {
		t.Fatal(err)
	}
	f.w.take()
	desc := "production"
	_, e, err := f.ctl.CreateEndpoint(ctx, rt.Name, registry.EndpointSpec{Name: "prod", Version: "1", Description: &desc,
		Tags: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "prod" || e.LiveVersion != 1 || e.TargetVersion != 1 || e.Description != "production" || e.Status != api.StatusReady ||
		e.ARN != "arn:aws:bedrock-agentcore:us-west-2:210987654321:runtime/"+rt.ID+"/runtime-endpoint/prod" || !strings.HasPrefix(e.ID, "prod-") {
		t.Fatalf("created %+v", e)
	}
	_, latest, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "edge"})
	if err != nil || latest.LiveVersion != 2 {
		t.Fatalf("an endpoint without a version gets the latest: %+v %v", latest, err)
	}
	changes, seen := f.w.take()
	want := []registry.Change{{Kind: registry.EndpointChanged, RuntimeID: rt.ID, Endpoint: "prod"}, {Kind: registry.EndpointChanged, RuntimeID: rt.ID, Endpoint: "edge"}}
	if !slices.Equal(changes, want) || seen[0] != "2" {
		t.Fatalf("watchers heard %+v (%v)", changes, seen)
	}
	if res, err := f.reg.Resolve(ctx, rt.ID, "prod"); err != nil || res.Version.Version != 1 {
		t.Fatalf("prod resolves to %+v %v", res.Version, err)
	}

	// Moving: a version moves it; leaving the version out keeps the pin.
	if _, e, err = f.ctl.UpdateEndpoint(ctx, rt.ID, "prod", registry.EndpointSpec{Version: "2"}); err != nil || e.LiveVersion != 2 || e.Description != "production" {
		t.Fatalf("move: %+v %v", e, err)
	}
	if res, err := f.reg.Resolve(ctx, rt.ID, "prod"); err != nil || res.Version.Version != 2 {
		t.Fatalf("prod resolves to %+v %v after the move", res.Version, err)
	}
	desc2 := "moved"
	if _, e, err = f.ctl.UpdateEndpoint(ctx, rt.ARN, "prod", registry.EndpointSpec{Description: &desc2}); err != nil || e.LiveVersion != 2 || e.Description != "moved" {
		t.Fatalf("describe: %+v %v", e, err)
	}
	if c, _ := f.w.take(); len(c) != 2 || c[0].Endpoint != "prod" || c[0].Kind != registry.EndpointChanged {
		t.Fatalf("watchers heard %+v", c)
	}

	// Refusals change nothing.
	for _, tc := range []struct {
		name  string
		op    func() error
		field string
		class error
	}{
		{"bad name", func() error {
			_, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "no-dashes"})
			return err
		}, "name", nil},
		{"taken name", func() error {
			_, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "prod"})
			return err
		}, "", errdefs.ErrConflict},
		{"DEFAULT is taken", func() error {
			_, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: registry.DefaultEndpoint})
			return err
		}, "", errdefs.ErrConflict},
		{"version not made yet", func() error {
			_, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "next", Version: "3"})
			return err
		}, "agentRuntimeVersion", nil},
		{"unknown runtime", func() error {
			_, _, err := f.ctl.CreateEndpoint(ctx, "ghost", registry.EndpointSpec{Name: "x"})
			return err
		}, "", errdefs.ErrNotFound},
		{"move DEFAULT", func() error {
			_, _, err := f.ctl.UpdateEndpoint(ctx, rt.ID, registry.DefaultEndpoint, registry.EndpointSpec{Version: "1"})
			return err
		}, "endpointName", nil},
		{"move to a version not made", func() error {
			_, _, err := f.ctl.UpdateEndpoint(ctx, rt.ID, "prod", registry.EndpointSpec{Version: "9"})
			return err
		}, "agentRuntimeVersion", nil},
		{"move a missing endpoint", func() error {
			_, _, err := f.ctl.UpdateEndpoint(ctx, rt.ID, "ghost", registry.EndpointSpec{Version: "1"})
			return err
		}, "", errdefs.ErrNotFound},
		{"delete DEFAULT", func() error { _, _, err := f.ctl.DeleteEndpoint(ctx, rt.ID, registry.DefaultEndpoint); return err }, "endpointName", nil},
		{"delete a missing endpoint", func() error { _, _, err := f.ctl.DeleteEndpoint(ctx, rt.ID, "ghost"); return err }, "", errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.refused(t, tc.op)
			if tc.field != "" {
				wantField(t, err, tc.field)
			} else if !errors.Is(err, tc.class) {
				t.Fatalf("got %v, want %v", err, tc.class)
			}
		})
	}

	_, e, err = f.ctl.DeleteEndpoint(ctx, rt.ID, "prod")
	if err != nil || e.Status != api.StatusDeleting || e.Name != "prod" {
		t.Fatalf("delete: %+v %v", e, err)
	}
	if c, _ := f.w.take(); !slices.Equal(c, []registry.Change{{Kind: registry.EndpointDeleted, RuntimeID: rt.ID, Endpoint: "prod"}}) {
		t.Fatalf("watchers heard %+v", c)
	}
	if _, err := f.reg.Resolve(ctx, rt.ID, "prod"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a deleted endpoint resolves: %v", err)
	}
	_, es, _, err := f.ctl.ListEndpoints(ctx, rt.ID, registry.Page{})
	if err != nil || len(es) != 2 || es[0].Name != registry.DefaultEndpoint || es[1].Name != "edge" {
		t.Fatalf("left: %+v %v", es, err)
	}
}

// A runtime has at most MaxEndpoints endpoints, DEFAULT included.
func TestEndpointQuota(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rt := f.create("agent")
	for i := 1; i < registry.MaxEndpoints; i++ {
		if _, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: fmt.Sprintf("e%d", i)}); err != nil {
			t.Fatalf("endpoint %d: %v", i+1, err)
		}
	}
	f.w.take()
	err := f.refused(t, func() error {
		_, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "one_more"})
		return err
	})
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("endpoint %d: %v", registry.MaxEndpoints+1, err)
	}
	// Deleting one makes room again.
	if _, _, err := f.ctl.DeleteEndpoint(ctx, rt.ID, "e1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ctl.CreateEndpoint(ctx, rt.ID, registry.EndpointSpec{Name: "one_more"}); err != nil {
		t.Fatal(err)
	}
}

// Reconcile tells watchers of what it changed, and of nothing else.
func TestReconcileChanges(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	decl := func(name string, cmd ...string) registry.Declared {
		s := registry.Settings{Command: cmd}
		if err := rules.Validate(registry.SourceConfig, &s); err != nil {
			t.Fatal(err)
		}
		return registry.Declared{Name: name, Settings: s}
	}
	byAPI := f.create("byapi")
	a, b := registry.StableID("a"), registry.StableID("b")
	for _, step := range []struct {
		decl []registry.Declared
		want []registry.Change
	}{
		{[]registry.Declared{decl("a", "x"), decl("b", "y")}, []registry.Change{{Kind: registry.RuntimeCreated, RuntimeID: a}, {Kind: registry.RuntimeCreated, RuntimeID: b}}},
		{[]registry.Declared{decl("a", "x"), decl("b", "y")}, nil},
		{[]registry.Declared{decl("a", "x2"), decl("b", "y")}, []registry.Change{{Kind: registry.RuntimeUpdated, RuntimeID: a}}},
		{[]registry.Declared{decl("b", "y")}, []registry.Change{{Kind: registry.RuntimeDeleted, RuntimeID: a}}},
	} {
		if _, err := f.reg.Reconcile(ctx, step.decl); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.w.take(); !slices.Equal(got, step.want) {
			t.Fatalf("reconcile %v: watchers heard %+v, want %+v", step.decl, got, step.want)
		}
	}
	if _, err := f.reg.Lookup(ctx, byAPI.ID); err != nil {
		t.Fatalf("reconcile touched an API runtime: %v", err)
	}
	// A config runtime may not take an API runtime's name.
	before := f.snapshot(t)
	if _, err := f.reg.Reconcile(ctx, []registry.Declared{decl("byapi", "x")}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("reconcile over an API name: %v", err)
	}
	if f.snapshot(t) != before {
		t.Fatal("a refused reconcile changed the store")
	}
}
