// Package storetest is the conformance suite for berth's stores: whatever
// persists runtimes and sessions (SQLite today, PostgreSQL later) passes the
// same tests.
//
// Times in the suite are whole microseconds in UTC, the finest precision
// PostgreSQL keeps.
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session"
)

// Store is everything a berth store provides.
type Store interface {
	registry.Store
	session.Store
}

// Run runs the suite. open returns a new, empty store and arranges for it
// to be closed when t ends.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"CreateAndGetRuntime", testCreateAndGetRuntime},
		{"CreateRuntimeConflict", testCreateRuntimeConflict},
		{"UpdateRuntimeAppendsVersions", testUpdateRuntimeAppendsVersions},
		{"UpdateRuntimeStaleVersion", testUpdateRuntimeStaleVersion},
		{"ConcurrentUpdateRuntime", testConcurrentUpdateRuntime},
		{"NamedEndpoints", testNamedEndpoints},
		{"DeleteRuntime", testDeleteRuntime},
		{"RuntimeQuota", testRuntimeQuota},
		{"UpdateRuntimeKeepsVersions", testUpdateRuntimeKeepsVersions},
		{"RegistryNotFound", testRegistryNotFound},
		{"ListRuntimesPages", testListRuntimesPages},
		{"ListVersionsAndEndpointsPages", testListVersionsAndEndpointsPages},
		{"BadPageToken", testBadPageToken},

		{"ClaimAndGetSession", testClaimAndGetSession},
		{"ClaimWhileLive", testClaimWhileLive},
		{"ReclaimAfterEnd", testReclaimAfterEnd},
		{"UpdateSession", testUpdateSession},
		{"FencedUpdate", testFencedUpdate},
		{"FencedEnd", testFencedEnd},
		{"EndSessionTwice", testEndSessionTwice},
		{"EndAllLive", testEndAllLive},
		{"ConcurrentClaims", testConcurrentClaims},
		{"ConcurrentClaimEndCycles", testConcurrentClaimEndCycles},
		{"SessionNotFound", testSessionNotFound},
		{"ListSessionsPages", testListSessionsPages},
		{"ListSessionsFilters", testListSessionsFilters},
		{"SessionsOutliveRuntime", testSessionsOutliveRuntime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// base is an arbitrary instant with a sub-second part, so precision loss
// shows up.
var base = time.Date(2026, 11, 28, 9, 30, 15, 123456000, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func check(t *testing.T, err error, step string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

func wantErr(t *testing.T, err, target error, step string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", step, err, target)
	}
}

func same(t *testing.T, got, want any, what string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// utc puts t in UTC, so values compare with DeepEqual whatever zone a store
// hands back.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func rtUTC(r registry.Runtime) registry.Runtime {
	r.CreatedAt, r.UpdatedAt = utc(r.CreatedAt), utc(r.UpdatedAt)
	return r
}

func vUTC(v registry.Version) registry.Version {
	v.CreatedAt = utc(v.CreatedAt)
	return v
}

func epUTC(e registry.Endpoint) registry.Endpoint {
	e.CreatedAt, e.UpdatedAt = utc(e.CreatedAt), utc(e.UpdatedAt)
	return e
}

func recUTC(r session.Record) session.Record {
	r.CreatedAt, r.LastActiveAt = utc(r.CreatedAt), utc(r.LastActiveAt)
	r.ExpiresAt, r.EndedAt = utc(r.ExpiresAt), utc(r.EndedAt)
	return r
}

// newRuntime builds a runtime and its first version with every field set.
func newRuntime(name string, created time.Time) (registry.Runtime, registry.Version) {
	id := name + "-a1B2c3D4e5"
	rt := registry.Runtime{
		ID:          id,
		Name:        name,
		ARN:         "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/" + id,
		Description: "agent " + name,
		Status:      api.StatusReady,
		Tags:        map[string]string{"team": "berth", "name": name},
		Source:      "api",
		CreatedAt:   created,
		UpdatedAt:   created,
	}
	return rt, newVersion(id, 1, created)
}

func newVersion(runtimeID string, n int, created time.Time) registry.Version {
	return registry.Version{
		RuntimeID: runtimeID,
		Version:   n,
		Settings: registry.Settings{
			Command:         []string{"python3", "agent.py", fmt.Sprintf("--v%d", n)},
			Workdir:         "/srv/agent",
			Env:             map[string]string{"MODEL": "m", "VERSION": fmt.Sprint(n)},
			Sandbox:         "linux",
			IdleTimeout:     registry.Duration(15 * time.Minute),
			MaxLifetime:     registry.Duration(8 * time.Hour),
			HeaderAllowlist: []string{"X-Amzn-Bedrock-Agentcore-Runtime-Custom-A"},
			Protocol:        "HTTP",
			Network:         "egress",
			Limits:          registry.Limits{Memory: 1 << 30, CPU: 1500, Pids: 256, Disk: 1 << 32},
			Mounts:          []sandbox.Mount{{Source: "/data", Target: "/mnt/data", ReadOnly: true}},
			Artifact:        registry.Artifact{ContainerURI: "example/agent:1", EntryPoint: []string{"agent.py"}},
		},
		CreatedAt: created,
	}
}

func createRuntime(t *testing.T, s Store, name string, created time.Time) (registry.Runtime, registry.Version) {
	t.Helper()
	rt, v := newRuntime(name, created)
	check(t, s.CreateRuntime(t.Context(), rt, v, 0), "create runtime "+name)
	rt.LatestVersion = 1
	return rt, v
}

// updateRuntime appends the next version to rt and returns both as stored.
func updateRuntime(t *testing.T, s Store, rt registry.Runtime, updated time.Time) (registry.Runtime, registry.Version) {
	t.Helper()
	v := newVersion(rt.ID, rt.LatestVersion+1, updated)
	rt.LatestVersion = v.Version
	rt.Description = fmt.Sprintf("agent %s at v%d", rt.Name, v.Version)
	rt.Tags = map[string]string{"v": fmt.Sprint(v.Version)}
	rt.UpdatedAt = updated
	check(t, s.UpdateRuntime(t.Context(), rt, v, 0), "update runtime")
	return rt, v
}

func wantDefault(t *testing.T, s Store, runtimeID string, version int) {
	t.Helper()
	e, err := s.GetEndpoint(t.Context(), runtimeID, "DEFAULT")
	check(t, err, "get DEFAULT")
	if e.Name != "DEFAULT" || e.RuntimeID != runtimeID || e.LiveVersion != version || e.TargetVersion != version {
		t.Fatalf("DEFAULT = %+v, want live and target version %d", e, version)
	}
}

func testCreateAndGetRuntime(t *testing.T, s Store) {
	ctx := t.Context()
	rt, v := createRuntime(t, s, "alpha", at(0))

	got, err := s.GetRuntime(ctx, rt.ID)
	check(t, err, "get runtime")
	same(t, rtUTC(got), rt, "runtime by ID")
	got, err = s.GetRuntimeByName(ctx, rt.Name)
	check(t, err, "get runtime by name")
	same(t, rtUTC(got), rt, "runtime by name")

	gv, err := s.GetVersion(ctx, rt.ID, 1)
	check(t, err, "get version 1")
	same(t, vUTC(gv), v, "version 1")
	wantDefault(t, s, rt.ID, 1)
}

func testCreateRuntimeConflict(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))

	dupID, v := newRuntime("other", at(time.Second))
	dupID.ID, v.RuntimeID = rt.ID, rt.ID
	wantErr(t, s.CreateRuntime(ctx, dupID, v, 0), errdefs.ErrConflict, "create with a taken ID")

	dupName, v := newRuntime("alpha", at(time.Second))
	dupName.ID = "alpha-zzzzzzzzzz"
	v.RuntimeID = dupName.ID
	wantErr(t, s.CreateRuntime(ctx, dupName, v, 0), errdefs.ErrConflict, "create with a taken name")

	got, err := s.GetRuntime(ctx, rt.ID)
	check(t, err, "get runtime")
	same(t, rtUTC(got), rt, "runtime after failed creates")
	_, err = s.GetRuntime(ctx, dupName.ID)
	wantErr(t, err, errdefs.ErrNotFound, "get the runtime whose create failed")
}

func testUpdateRuntimeAppendsVersions(t *testing.T, s Store) {
	ctx := t.Context()
	rt, v1 := createRuntime(t, s, "alpha", at(0))
	versions := []registry.Version{v1}
	for i := range 3 {
		var v registry.Version
		rt, v = updateRuntime(t, s, rt, at(time.Duration(i+1)*time.Minute))
		versions = append(versions, v)

		got, err := s.GetRuntime(ctx, rt.ID)
		check(t, err, "get runtime")
		same(t, rtUTC(got), rt, "runtime after update")
		wantDefault(t, s, rt.ID, v.Version)
	}
	// Versions are immutable: every earlier one reads back as written.
	for _, want := range versions {
		got, err := s.GetVersion(ctx, rt.ID, want.Version)
		check(t, err, "get version")
		same(t, vUTC(got), want, fmt.Sprintf("version %d", want.Version))
	}
}

func testUpdateRuntimeStaleVersion(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	rt, _ = updateRuntime(t, s, rt, at(time.Minute))

	for _, n := range []int{rt.LatestVersion, rt.LatestVersion + 2, 0} {
		stale := rt
		stale.Description = "stale"
		stale.UpdatedAt = at(time.Hour)
		err := s.UpdateRuntime(ctx, stale, newVersion(rt.ID, n, at(time.Hour)), 0)
		wantErr(t, err, errdefs.ErrConflict, fmt.Sprintf("update with version %d", n))
	}
	got, err := s.GetRuntime(ctx, rt.ID)
	check(t, err, "get runtime")
	same(t, rtUTC(got), rt, "runtime after stale updates")
	_, err = s.GetVersion(ctx, rt.ID, rt.LatestVersion+2)
	wantErr(t, err, errdefs.ErrNotFound, "get a version that was refused")
	wantDefault(t, s, rt.ID, rt.LatestVersion)
}

// testConcurrentUpdateRuntime races read-then-update loops: every success
// gets its own version and the versions stay dense.
func testConcurrentUpdateRuntime(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	const workers, tries = 8, 5
	var (
		mu  sync.Mutex
		won []int
		wg  sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for range tries {
				cur, err := s.GetRuntime(ctx, rt.ID)
				if err != nil {
					t.Errorf("worker %d: get runtime: %v", w, err)
					return
				}
				v := newVersion(rt.ID, cur.LatestVersion+1, at(time.Minute))
				cur.UpdatedAt = at(time.Minute)
				err = s.UpdateRuntime(ctx, cur, v, 0)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, v.Version)
					mu.Unlock()
				case !errors.Is(err, errdefs.ErrConflict):
					t.Errorf("worker %d: update: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(won)
	got, err := s.GetRuntime(ctx, rt.ID)
	check(t, err, "get runtime")
	if len(won) == 0 || got.LatestVersion != len(won)+1 {
		t.Fatalf("latest version %d after %d successful updates", got.LatestVersion, len(won))
	}
	for i, v := range won {
		if v != i+2 {
			t.Fatalf("successful versions %v are not 2..%d", won, len(won)+1)
		}
	}
	vs := listAllVersions(t, s, rt.ID, 0)
	if len(vs) != got.LatestVersion {
		t.Fatalf("%d versions stored, latest is %d", len(vs), got.LatestVersion)
	}
	wantDefault(t, s, rt.ID, got.LatestVersion)
}

func testNamedEndpoints(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	rt, _ = updateRuntime(t, s, rt, at(time.Minute))

	prod := registry.Endpoint{
		RuntimeID:     rt.ID,
		Name:          "prod",
		ID:            "prod-0123456789",
		ARN:           rt.ARN + "/runtime-endpoint/prod",
		Description:   "pinned",
		Status:        api.StatusReady,
		LiveVersion:   1,
		TargetVersion: 1,
		CreatedAt:     at(2 * time.Minute),
		UpdatedAt:     at(2 * time.Minute),
	}
	check(t, s.PutEndpoint(ctx, prod), "put prod")
	got, err := s.GetEndpoint(ctx, rt.ID, "prod")
	check(t, err, "get prod")
	same(t, epUTC(got), prod, "prod")

	// Updating the runtime moves DEFAULT only.
	rt, _ = updateRuntime(t, s, rt, at(3*time.Minute))
	wantDefault(t, s, rt.ID, 3)
	got, err = s.GetEndpoint(ctx, rt.ID, "prod")
	check(t, err, "get prod after update")
	same(t, epUTC(got), prod, "prod after runtime update")

	// Put replaces.
	prod.TargetVersion, prod.Status, prod.UpdatedAt = 3, api.StatusUpdating, at(4*time.Minute)
	check(t, s.PutEndpoint(ctx, prod), "re-put prod")
	got, err = s.GetEndpoint(ctx, rt.ID, "prod")
	check(t, err, "get prod after re-put")
	same(t, epUTC(got), prod, "prod after re-put")

	bad := prod
	bad.Name, bad.LiveVersion = "future", 9
	wantErr(t, s.PutEndpoint(ctx, bad), errdefs.ErrNotFound, "put an endpoint pinned to a missing version")
	_, err = s.GetEndpoint(ctx, rt.ID, "future")
	wantErr(t, err, errdefs.ErrNotFound, "get the endpoint whose put failed")

	wantErr(t, s.DeleteEndpoint(ctx, rt.ID, "DEFAULT"), errdefs.ErrInvalidArgument, "delete DEFAULT")
	wantDefault(t, s, rt.ID, 3)

	check(t, s.DeleteEndpoint(ctx, rt.ID, "prod"), "delete prod")
	_, err = s.GetEndpoint(ctx, rt.ID, "prod")
	wantErr(t, err, errdefs.ErrNotFound, "get deleted endpoint")
	wantErr(t, s.DeleteEndpoint(ctx, rt.ID, "prod"), errdefs.ErrNotFound, "delete prod twice")
}

func testDeleteRuntime(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	rt, _ = updateRuntime(t, s, rt, at(time.Minute))
	check(t, s.PutEndpoint(ctx, registry.Endpoint{RuntimeID: rt.ID, Name: "prod", LiveVersion: 1, TargetVersion: 1}), "put prod")
	other, otherV := createRuntime(t, s, "beta", at(0))

	check(t, s.DeleteRuntime(ctx, rt.ID), "delete runtime")
	_, err := s.GetRuntime(ctx, rt.ID)
	wantErr(t, err, errdefs.ErrNotFound, "get deleted runtime")
	_, err = s.GetRuntimeByName(ctx, rt.Name)
	wantErr(t, err, errdefs.ErrNotFound, "get deleted runtime by name")
	for v := 1; v <= 2; v++ {
		_, err = s.GetVersion(ctx, rt.ID, v)
		wantErr(t, err, errdefs.ErrNotFound, fmt.Sprintf("get version %d of deleted runtime", v))
	}
	for _, name := range []string{"DEFAULT", "prod"} {
		_, err = s.GetEndpoint(ctx, rt.ID, name)
		wantErr(t, err, errdefs.ErrNotFound, "get endpoint "+name+" of deleted runtime")
	}
	wantErr(t, s.DeleteRuntime(ctx, rt.ID), errdefs.ErrNotFound, "delete twice")

	// The other runtime is untouched, and the name is free again.
	got, err := s.GetVersion(ctx, other.ID, 1)
	check(t, err, "get other runtime's version")
	same(t, vUTC(got), otherV, "other runtime's version")
	wantDefault(t, s, other.ID, 1)
	again, _ := createRuntime(t, s, "alpha", at(time.Hour))
	wantDefault(t, s, again.ID, 1)
}

func testRegistryNotFound(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	const missing = "missing-0000000000"

	_, err := s.GetRuntime(ctx, missing)
	wantErr(t, err, errdefs.ErrNotFound, "get runtime")
	_, err = s.GetRuntimeByName(ctx, "missing")
	wantErr(t, err, errdefs.ErrNotFound, "get runtime by name")
	wantErr(t, s.UpdateRuntime(ctx, registry.Runtime{ID: missing}, newVersion(missing, 2, at(0)), 0),
		errdefs.ErrNotFound, "update runtime")
	wantErr(t, s.DeleteRuntime(ctx, missing), errdefs.ErrNotFound, "delete runtime")
	_, err = s.GetVersion(ctx, rt.ID, 2)
	wantErr(t, err, errdefs.ErrNotFound, "get version 2")
	_, err = s.GetVersion(ctx, missing, 1)
	wantErr(t, err, errdefs.ErrNotFound, "get version of missing runtime")
	_, _, err = s.ListVersions(ctx, missing, registry.Page{})
	wantErr(t, err, errdefs.ErrNotFound, "list versions of missing runtime")
	_, err = s.GetEndpoint(ctx, rt.ID, "nope")
	wantErr(t, err, errdefs.ErrNotFound, "get endpoint")
	wantErr(t, s.DeleteEndpoint(ctx, rt.ID, "nope"), errdefs.ErrNotFound, "delete endpoint")
	wantErr(t, s.PutEndpoint(ctx, registry.Endpoint{RuntimeID: missing, Name: "prod"}),
		errdefs.ErrNotFound, "put endpoint of missing runtime")
	_, _, err = s.ListEndpoints(ctx, missing, registry.Page{})
	wantErr(t, err, errdefs.ErrNotFound, "list endpoints of missing runtime")
}

func listAllRuntimes(t *testing.T, s Store, pageSize int, between func()) []registry.Runtime {
	t.Helper()
	var all []registry.Runtime
	p := registry.Page{MaxResults: pageSize}
	for range 1000 {
		page, next, err := s.ListRuntimes(t.Context(), p)
		check(t, err, "list runtimes")
		if pageSize > 0 && len(page) > pageSize {
			t.Fatalf("page of %d runtimes, asked for %d", len(page), pageSize)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		if between != nil {
			between()
		}
		p.NextToken = next
	}
	t.Fatal("list runtimes: no end after 1000 pages")
	return nil
}

func listAllVersions(t *testing.T, s Store, runtimeID string, pageSize int) []registry.Version {
	t.Helper()
	var all []registry.Version
	p := registry.Page{MaxResults: pageSize}
	for range 1000 {
		page, next, err := s.ListVersions(t.Context(), runtimeID, p)
		check(t, err, "list versions")
		if pageSize > 0 && len(page) > pageSize {
			t.Fatalf("page of %d versions, asked for %d", len(page), pageSize)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		p.NextToken = next
	}
	t.Fatal("list versions: no end after 1000 pages")
	return nil
}

func listAllEndpoints(t *testing.T, s Store, runtimeID string, pageSize int) []registry.Endpoint {
	t.Helper()
	var all []registry.Endpoint
	p := registry.Page{MaxResults: pageSize}
	for range 1000 {
		page, next, err := s.ListEndpoints(t.Context(), runtimeID, p)
		check(t, err, "list endpoints")
		if pageSize > 0 && len(page) > pageSize {
			t.Fatalf("page of %d endpoints, asked for %d", len(page), pageSize)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		p.NextToken = next
	}
	t.Fatal("list endpoints: no end after 1000 pages")
	return nil
}

func runtimeIDs(rts []registry.Runtime) []string {
	ids := make([]string, len(rts))
	for i, rt := range rts {
		ids[i] = rt.ID
	}
	return ids
}

func testListRuntimesPages(t *testing.T, s Store) {
	want := map[string]registry.Runtime{}
	for i := range 7 {
		rt, _ := createRuntime(t, s, fmt.Sprintf("rt%c", 'g'-i), at(time.Duration(i)*time.Second))
		want[rt.ID] = rt
	}
	// One page holds everything when it is big enough.
	whole := listAllRuntimes(t, s, 0, nil)
	if len(whole) != len(want) {
		t.Fatalf("listed %d runtimes, created %d", len(whole), len(want))
	}
	for _, rt := range whole {
		same(t, rtUTC(rt), want[rt.ID], "listed runtime")
	}

	// Pages of 3 give the same order; runtimes created between pages never
	// duplicate or hide the ones that existed.
	n := 0
	paged := listAllRuntimes(t, s, 3, func() {
		n++
		createRuntime(t, s, fmt.Sprintf("late%d", n), at(time.Hour))
		createRuntime(t, s, fmt.Sprintf("a%d", n), at(time.Hour))
	})
	seen := map[string]bool{}
	var old []string
	for _, rt := range paged {
		if seen[rt.ID] {
			t.Fatalf("runtime %s listed twice: %v", rt.ID, runtimeIDs(paged))
		}
		seen[rt.ID] = true
		if _, ok := want[rt.ID]; ok {
			old = append(old, rt.ID)
		}
	}
	same(t, old, runtimeIDs(whole), "pre-existing runtimes in paged listing")
}

func testListVersionsAndEndpointsPages(t *testing.T, s Store) {
	ctx := t.Context()
	rt, v := createRuntime(t, s, "alpha", at(0))
	want := []registry.Version{v}
	for i := range 6 {
		rt, v = updateRuntime(t, s, rt, at(time.Duration(i+1)*time.Minute))
		want = append(want, v)
	}
	for _, size := range []int{0, 1, 3, 7, 100} {
		got := listAllVersions(t, s, rt.ID, size)
		for i := range got {
			got[i] = vUTC(got[i])
		}
		same(t, got, want, fmt.Sprintf("versions in pages of %d", size))
	}

	wantEp := map[string]bool{"DEFAULT": true}
	for i := range 5 {
		name := fmt.Sprintf("ep%d", 5-i)
		check(t, s.PutEndpoint(ctx, registry.Endpoint{RuntimeID: rt.ID, Name: name, LiveVersion: i + 1, TargetVersion: i + 1}), "put "+name)
		wantEp[name] = true
	}
	whole := listAllEndpoints(t, s, rt.ID, 0)
	for _, size := range []int{1, 2, 6} {
		got := listAllEndpoints(t, s, rt.ID, size)
		same(t, got, whole, fmt.Sprintf("endpoints in pages of %d", size))
	}
	names := map[string]bool{}
	for _, e := range whole {
		names[e.Name] = true
	}
	same(t, names, wantEp, "endpoint names")
}

func testBadPageToken(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	for _, tok := range []string{"%%%not a token", "AAAA"} {
		_, _, err := s.ListRuntimes(ctx, registry.Page{NextToken: tok})
		wantErr(t, err, errdefs.ErrInvalidArgument, "list runtimes with token "+tok)
		_, _, err = s.ListVersions(ctx, rt.ID, registry.Page{NextToken: tok})
		wantErr(t, err, errdefs.ErrInvalidArgument, "list versions with token "+tok)
		_, _, err = s.ListEndpoints(ctx, rt.ID, registry.Page{NextToken: tok})
		wantErr(t, err, errdefs.ErrInvalidArgument, "list endpoints with token "+tok)
		_, _, err = s.ListSessions(ctx, session.Filter{After: tok})
		if err == nil {
			t.Fatalf("list sessions with cursor %q: no error", tok)
		}
	}
}

// newRecord is a live record for key with every settable field set.
func newRecord(key session.Key, owner string, created time.Time) session.Record {
	return session.Record{
		Key:          key,
		Lease:        session.Lease{Owner: owner},
		Version:      2,
		UserID:       "user-1",
		State:        session.StateStarting,
		Backend:      "process",
		SandboxID:    "sb-" + key.SessionID,
		Addr:         "127.0.0.1:40000",
		CreatedAt:    created,
		LastActiveAt: created,
		ExpiresAt:    created.Add(8 * time.Hour),
	}
}

func key(runtime, endpoint, id string) session.Key {
	// Session IDs are at least 33 characters on the wire.
	return session.Key{RuntimeID: runtime, Endpoint: endpoint, SessionID: id + strings.Repeat("0", 33)}
}

func claim(t *testing.T, s Store, rec session.Record) session.Record {
	t.Helper()
	got, err := s.ClaimSession(t.Context(), rec)
	check(t, err, "claim session")
	return recUTC(got)
}

func getRec(t *testing.T, s Store, id string) session.Record {
	t.Helper()
	got, err := s.GetSession(t.Context(), id)
	check(t, err, "get session "+id)
	return recUTC(got)
}

func testClaimAndGetSession(t *testing.T, s Store) {
	in := newRecord(key("rt-1", "DEFAULT", "s1"), "node-a", at(0))
	got := claim(t, s, in)
	if got.ID == "" {
		t.Fatal("claimed record has no incarnation ID")
	}
	if got.Epoch != 1 {
		t.Fatalf("first claim has epoch %d, want 1", got.Epoch)
	}
	want := in
	want.ID, want.Epoch = got.ID, 1
	same(t, got, want, "claimed record")
	same(t, getRec(t, s, got.ID), want, "stored record")

	// A caller-chosen incarnation ID is kept.
	in2 := newRecord(key("rt-1", "DEFAULT", "s2"), "node-a", at(time.Second))
	in2.ID = "incarnation-chosen-by-caller"
	got2 := claim(t, s, in2)
	if got2.ID != in2.ID {
		t.Fatalf("claimed ID %q, want %q", got2.ID, in2.ID)
	}
}

func testClaimWhileLive(t *testing.T, s Store) {
	ctx := t.Context()
	k := key("rt-1", "DEFAULT", "s1")
	first := claim(t, s, newRecord(k, "node-a", at(0)))

	_, err := s.ClaimSession(ctx, newRecord(k, "node-b", at(time.Second)))
	wantErr(t, err, session.ErrLive, "claim a live key")
	same(t, getRec(t, s, first.ID), first, "live record after refused claim")
	all, _, err := s.ListSessions(ctx, session.Filter{})
	check(t, err, "list sessions")
	if len(all) != 1 {
		t.Fatalf("%d incarnations after a refused claim, want 1", len(all))
	}

	// The same session ID on another endpoint or runtime is another key.
	for _, other := range []session.Key{key("rt-1", "prod", "s1"), key("rt-2", "DEFAULT", "s1")} {
		other.SessionID = k.SessionID
		if r := claim(t, s, newRecord(other, "node-a", at(0))); r.Epoch != 1 {
			t.Fatalf("claim of %+v has epoch %d, want 1", other, r.Epoch)
		}
	}
}

func testReclaimAfterEnd(t *testing.T, s Store) {
	ctx := t.Context()
	k := key("rt-1", "DEFAULT", "s1")
	var prev session.Record
	for i := range 4 {
		rec := claim(t, s, newRecord(k, "node-a", at(time.Duration(i)*time.Minute)))
		if i > 0 {
			if rec.Epoch <= prev.Epoch || rec.ID == prev.ID {
				t.Fatalf("incarnation %d: epoch %d ID %s after epoch %d ID %s", i, rec.Epoch, rec.ID, prev.Epoch, prev.ID)
			}
		}
		if rec.Epoch != int64(i+1) {
			t.Fatalf("incarnation %d has epoch %d, want %d", i, rec.Epoch, i+1)
		}
		end := at(time.Duration(i)*time.Minute + 30*time.Second)
		check(t, s.EndSession(ctx, rec.ID, rec.Lease, session.EndIdleTimeout, "idle", end), "end session")
		ended := getRec(t, s, rec.ID)
		want := rec
		want.State, want.EndReason, want.Detail, want.EndedAt = session.StateTerminated, session.EndIdleTimeout, "idle", end
		same(t, ended, want, "ended record")
		prev = rec
	}
}

func testUpdateSession(t *testing.T, s Store) {
	ctx := t.Context()
	rec := claim(t, s, newRecord(key("rt-1", "DEFAULT", "s1"), "node-a", at(0)))
	want := rec
	want.State, want.Addr, want.SandboxID, want.Invocations = session.StateActive, "127.0.0.1:41000", "sb-new", 3
	want.LastActiveAt, want.ExpiresAt, want.Detail, want.UserID = at(time.Minute), at(time.Hour), "busy", "user-2"
	err := s.UpdateSession(ctx, rec.ID, rec.Lease, func(r *session.Record) {
		same(t, recUTC(*r), rec, "record handed to fn")
		r.State, r.Addr, r.SandboxID, r.Invocations = want.State, want.Addr, want.SandboxID, want.Invocations
		r.LastActiveAt, r.ExpiresAt, r.Detail, r.UserID = want.LastActiveAt, want.ExpiresAt, want.Detail, want.UserID
	})
	check(t, err, "update session")
	same(t, getRec(t, s, rec.ID), want, "updated record")

	err = s.UpdateSession(ctx, rec.ID, rec.Lease, func(r *session.Record) { r.State = session.StateIdle })
	check(t, err, "update session to idle")
	want.State = session.StateIdle
	same(t, getRec(t, s, rec.ID), want, "idle record")
}

func testFencedUpdate(t *testing.T, s Store) {
	ctx := t.Context()
	k := key("rt-1", "DEFAULT", "s1")
	old := claim(t, s, newRecord(k, "node-a", at(0)))
	check(t, s.EndSession(ctx, old.ID, old.Lease, session.EndCrashed, "", at(time.Second)), "end first incarnation")
	oldEnded := getRec(t, s, old.ID)
	cur := claim(t, s, newRecord(k, "node-a", at(2*time.Second)))

	called := false
	mutate := func(r *session.Record) { called = true; r.Invocations = 99; r.State = session.StateActive }
	for _, tc := range []struct {
		what string
		id   string
		l    session.Lease
	}{
		{"stale epoch on the live incarnation", cur.ID, session.Lease{Owner: "node-a", Epoch: old.Epoch}},
		{"future epoch", cur.ID, session.Lease{Owner: "node-a", Epoch: cur.Epoch + 1}},
		{"other owner", cur.ID, session.Lease{Owner: "node-b", Epoch: cur.Epoch}},
		{"ended incarnation with its own lease", old.ID, old.Lease},
	} {
		wantErr(t, s.UpdateSession(ctx, tc.id, tc.l, mutate), session.ErrFenced, "update with "+tc.what)
	}
	if called {
		t.Fatal("fn ran for a fenced update")
	}
	same(t, getRec(t, s, cur.ID), cur, "live record after fenced updates")
	same(t, getRec(t, s, old.ID), oldEnded, "ended record after fenced updates")
}

func testFencedEnd(t *testing.T, s Store) {
	ctx := t.Context()
	k := key("rt-1", "DEFAULT", "s1")
	old := claim(t, s, newRecord(k, "node-a", at(0)))
	check(t, s.EndSession(ctx, old.ID, old.Lease, session.EndStopped, "", at(time.Second)), "end first incarnation")
	cur := claim(t, s, newRecord(k, "node-a", at(2*time.Second)))

	for _, l := range []session.Lease{{Owner: "node-a", Epoch: old.Epoch}, {Owner: "node-b", Epoch: cur.Epoch}} {
		err := s.EndSession(ctx, cur.ID, l, session.EndCrashed, "stale", at(time.Minute))
		wantErr(t, err, session.ErrFenced, fmt.Sprintf("end with lease %+v", l))
	}
	same(t, getRec(t, s, cur.ID), cur, "live record after fenced ends")
	_, err := s.ClaimSession(ctx, newRecord(k, "node-a", at(time.Hour)))
	wantErr(t, err, session.ErrLive, "claim while the fenced end left it live")
}

func testEndSessionTwice(t *testing.T, s Store) {
	ctx := t.Context()
	rec := claim(t, s, newRecord(key("rt-1", "DEFAULT", "s1"), "node-a", at(0)))
	check(t, s.EndSession(ctx, rec.ID, rec.Lease, session.EndIdleTimeout, "first", at(time.Minute)), "end")
	first := getRec(t, s, rec.ID)
	check(t, s.EndSession(ctx, rec.ID, rec.Lease, session.EndCrashed, "second", at(time.Hour)), "end again")
	same(t, getRec(t, s, rec.ID), first, "record after a second end")
}

func testEndAllLive(t *testing.T, s Store) {
	ctx := t.Context()
	var mine, theirs []session.Record
	for i := range 4 {
		mine = append(mine, claim(t, s, newRecord(key("rt-1", "DEFAULT", fmt.Sprintf("a%d", i)), "node-a", at(time.Duration(i)*time.Second))))
		theirs = append(theirs, claim(t, s, newRecord(key("rt-1", "DEFAULT", fmt.Sprintf("b%d", i)), "node-b", at(time.Duration(i)*time.Second))))
	}
	// One of mine already ended: it is not ended again.
	check(t, s.EndSession(ctx, mine[0].ID, mine[0].Lease, session.EndStopped, "", at(time.Minute)), "end one")
	endedBefore := getRec(t, s, mine[0].ID)

	end := at(time.Hour)
	got, err := s.EndAllLive(ctx, "node-a", session.EndShutdown, end)
	check(t, err, "end all live")
	var want []session.Record
	for _, r := range mine[1:] {
		r.State, r.EndReason, r.EndedAt = session.StateTerminated, session.EndShutdown, end
		want = append(want, r)
	}
	for i := range got {
		got[i] = recUTC(got[i])
	}
	newestFirst(got)
	newestFirst(want)
	same(t, got, want, "records ended by EndAllLive")
	for _, r := range want {
		same(t, getRec(t, s, r.ID), r, "stored record ended by EndAllLive")
	}
	same(t, getRec(t, s, mine[0].ID), endedBefore, "record ended earlier")
	for _, r := range theirs {
		same(t, getRec(t, s, r.ID), r, "other owner's record")
	}

	again, err := s.EndAllLive(ctx, "node-a", session.EndShutdown, end)
	check(t, err, "end all live again")
	if len(again) != 0 {
		t.Fatalf("second EndAllLive ended %d records", len(again))
	}
	// The keys are free for new incarnations with higher epochs.
	r := claim(t, s, newRecord(mine[1].Key, "node-a", at(2*time.Hour)))
	if r.Epoch != mine[1].Epoch+1 {
		t.Fatalf("reclaim after EndAllLive has epoch %d, want %d", r.Epoch, mine[1].Epoch+1)
	}
}

// testConcurrentClaims races 50 claims of one key: exactly one wins.
func testConcurrentClaims(t *testing.T, s Store) {
	ctx := t.Context()
	k := key("rt-1", "DEFAULT", "race")
	// An ended incarnation first, so the winner must read the epoch.
	old := claim(t, s, newRecord(k, "node-a", at(0)))
	check(t, s.EndSession(ctx, old.ID, old.Lease, session.EndStopped, "", at(time.Second)), "end")

	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		winners []session.Record
	)
	for i := range n {
		wg.Go(func() {
			<-start
			r, err := s.ClaimSession(ctx, newRecord(k, fmt.Sprintf("node-%d", i), at(time.Minute)))
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, r)
				mu.Unlock()
			case !errors.Is(err, session.ErrLive):
				t.Errorf("claim %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent claims won, want exactly 1", len(winners), n)
	}
	if winners[0].Epoch != old.Epoch+1 {
		t.Fatalf("winner has epoch %d, want %d", winners[0].Epoch, old.Epoch+1)
	}
	live, _, err := s.ListSessions(ctx, session.Filter{State: session.StateStarting})
	check(t, err, "list live")
	if len(live) != 1 || live[0].ID != winners[0].ID {
		t.Fatalf("live incarnations %+v, want only the winner %s", live, winners[0].ID)
	}
}

// testConcurrentClaimEndCycles has workers claim and end one key over and
// over: epochs come out unique and dense.
func testConcurrentClaimEndCycles(t *testing.T, s Store) {
	ctx := t.Context()
	k := key("rt-1", "DEFAULT", "cycle")
	const workers, rounds = 6, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				created := at(time.Duration(w*rounds+i) * time.Millisecond)
				r, err := s.ClaimSession(ctx, newRecord(k, fmt.Sprintf("node-%d", w), created))
				if errors.Is(err, session.ErrLive) {
					continue
				}
				if err != nil {
					t.Errorf("worker %d: claim: %v", w, err)
					return
				}
				if err := s.EndSession(ctx, r.ID, r.Lease, session.EndStopped, "", created); err != nil {
					t.Errorf("worker %d: end: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	all := listAllSessions(t, s, session.Filter{RuntimeID: k.RuntimeID}, 7)
	if len(all) == 0 {
		t.Fatal("no claim won")
	}
	epochs := make([]int64, len(all))
	for i, r := range all {
		if r.State != session.StateTerminated {
			t.Fatalf("incarnation %s still %s", r.ID, r.State)
		}
		epochs[i] = r.Epoch
	}
	slices.Sort(epochs)
	for i, e := range epochs {
		if e != int64(i+1) {
			t.Fatalf("epochs %v are not 1..%d", epochs, len(epochs))
		}
	}
}

func testSessionNotFound(t *testing.T, s Store) {
	ctx := t.Context()
	_, err := s.GetSession(ctx, "no-such-incarnation")
	wantErr(t, err, errdefs.ErrNotFound, "get")
	l := session.Lease{Owner: "node-a", Epoch: 1}
	wantErr(t, s.UpdateSession(ctx, "no-such-incarnation", l, func(*session.Record) {}), errdefs.ErrNotFound, "update")
	wantErr(t, s.EndSession(ctx, "no-such-incarnation", l, session.EndStopped, "", at(0)), errdefs.ErrNotFound, "end")
}

func listAllSessions(t *testing.T, s Store, f session.Filter, limit int) []session.Record {
	t.Helper()
	var all []session.Record
	f.Limit, f.After = limit, ""
	for range 1000 {
		page, next, err := s.ListSessions(t.Context(), f)
		check(t, err, "list sessions")
		if limit > 0 && len(page) > limit {
			t.Fatalf("page of %d sessions, asked for %d", len(page), limit)
		}
		for _, r := range page {
			all = append(all, recUTC(r))
		}
		if next == "" {
			return all
		}
		f.After = next
	}
	t.Fatal("list sessions: no end after 1000 pages")
	return nil
}

// newestFirst sorts records the way ListSessions returns them.
func newestFirst(recs []session.Record) {
	slices.SortFunc(recs, func(a, b session.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
}

func testListSessionsPages(t *testing.T, s Store) {
	ctx := t.Context()
	var want []session.Record
	for i := range 11 {
		// Groups of three share a creation time, so the ID breaks ties.
		created := at(time.Duration(i/3) * time.Second)
		want = append(want, claim(t, s, newRecord(key("rt-1", "DEFAULT", fmt.Sprintf("p%02d", i)), "node-a", created)))
	}
	newestFirst(want)
	same(t, listAllSessions(t, s, session.Filter{}, 0), want, "one page")
	same(t, listAllSessions(t, s, session.Filter{}, 100), want, "one big page")
	for _, size := range []int{1, 3, 4, 11} {
		same(t, listAllSessions(t, s, session.Filter{}, size), want, fmt.Sprintf("pages of %d", size))
	}

	// Newer sessions claimed between pages do not shift the walk.
	var got []session.Record
	f := session.Filter{Limit: 4}
	for n := 0; ; n++ {
		page, next, err := s.ListSessions(ctx, f)
		check(t, err, "list sessions")
		for _, r := range page {
			got = append(got, recUTC(r))
		}
		if next == "" {
			break
		}
		f.After = next
		claim(t, s, newRecord(key("rt-1", "DEFAULT", fmt.Sprintf("late%d", n)), "node-a", at(time.Hour)))
	}
	same(t, got, want, "pages with concurrent claims")
}

func testListSessionsFilters(t *testing.T, s Store) {
	ctx := t.Context()
	var all []session.Record
	i := 0
	for _, rt := range []string{"rt-1", "rt-2"} {
		for _, ep := range []string{"DEFAULT", "prod"} {
			for _, user := range []string{"u1", "u2", ""} {
				r := newRecord(key(rt, ep, fmt.Sprintf("f%02d", i)), "node-a", at(time.Duration(i)*time.Second))
				r.UserID = user
				r = claim(t, s, r)
				switch i % 3 {
				case 1:
					check(t, s.UpdateSession(ctx, r.ID, r.Lease, func(r *session.Record) { r.State = session.StateIdle }), "idle")
				case 2:
					check(t, s.EndSession(ctx, r.ID, r.Lease, session.EndStopped, "", at(time.Hour)), "end")
				}
				all = append(all, getRec(t, s, r.ID))
				i++
			}
		}
	}
	newestFirst(all)
	mid := all[len(all)/2].CreatedAt
	filters := []session.Filter{
		{},
		{RuntimeID: "rt-2"},
		{Endpoint: "prod"},
		{RuntimeID: "rt-1", Endpoint: "prod"},
		{UserID: "u1"},
		{State: session.StateStarting},
		{State: session.StateIdle},
		{State: session.StateTerminated},
		{CreatedAfter: mid},
		{CreatedBefore: mid},
		{CreatedAfter: at(2 * time.Second), CreatedBefore: mid},
		{RuntimeID: "rt-1", UserID: "u2", State: session.StateTerminated},
		{RuntimeID: "nope"},
	}
	for _, f := range filters {
		var want []session.Record
		for _, r := range all {
			if matches(f, r) {
				want = append(want, r)
			}
		}
		got := listAllSessions(t, s, f, 2)
		same(t, got, want, fmt.Sprintf("filter %+v", f))
	}
}

// matches is the reference reading of session.Filter: bounds are exclusive.
func matches(f session.Filter, r session.Record) bool {
	return (f.RuntimeID == "" || r.RuntimeID == f.RuntimeID) &&
		(f.Endpoint == "" || r.Endpoint == f.Endpoint) &&
		(f.UserID == "" || r.UserID == f.UserID) &&
		(f.State == "" || r.State == f.State) &&
		(f.CreatedAfter.IsZero() || r.CreatedAt.After(f.CreatedAfter)) &&
		(f.CreatedBefore.IsZero() || r.CreatedAt.Before(f.CreatedBefore))
}

func testSessionsOutliveRuntime(t *testing.T, s Store) {
	ctx := t.Context()
	rt, _ := createRuntime(t, s, "alpha", at(0))
	rec := claim(t, s, newRecord(key(rt.ID, "DEFAULT", "s1"), "node-a", at(time.Second)))
	check(t, s.EndSession(ctx, rec.ID, rec.Lease, session.EndStopped, "", at(time.Minute)), "end")
	ended := getRec(t, s, rec.ID)
	check(t, s.DeleteRuntime(ctx, rt.ID), "delete runtime")
	same(t, getRec(t, s, rec.ID), ended, "session after its runtime was deleted")
	got := listAllSessions(t, s, session.Filter{RuntimeID: rt.ID}, 0)
	same(t, got, []session.Record{ended}, "listing after the runtime was deleted")
}

// testRuntimeQuota: past maxRuntimes, a create fails and writes nothing;
// a delete makes room again.
func testRuntimeQuota(t *testing.T, s Store) {
	ctx := t.Context()
	var rts []registry.Runtime
	for i := range 3 {
		rt, v := newRuntime(fmt.Sprintf("q%d", i), at(0))
		check(t, s.CreateRuntime(ctx, rt, v, 3), "create runtime under the quota")
		rts = append(rts, rt)
	}
	over, v := newRuntime("over", at(0))
	wantErr(t, s.CreateRuntime(ctx, over, v, 3), errdefs.ErrResourceExhausted, "create past the quota")
	_, err := s.GetRuntime(ctx, over.ID)
	wantErr(t, err, errdefs.ErrNotFound, "get the runtime refused by the quota")
	_, err = s.GetEndpoint(ctx, over.ID, "DEFAULT")
	wantErr(t, err, errdefs.ErrNotFound, "get the refused runtime's DEFAULT")

	check(t, s.DeleteRuntime(ctx, rts[0].ID), "delete a runtime")
	check(t, s.CreateRuntime(ctx, over, v, 3), "create once a runtime was deleted")
	unlimited, v := newRuntime("unlimited", at(0))
	check(t, s.CreateRuntime(ctx, unlimited, v, 0), "create with no quota")
}

// testUpdateRuntimeKeepsVersions: each update keeps the newest versions and
// every version an endpoint points at; the rest go.
func testUpdateRuntimeKeepsVersions(t *testing.T, s Store) {
	ctx := t.Context()
	const keep = 3
	rt, _ := createRuntime(t, s, "alpha", at(0))
	for i := 2; i <= 4; i++ {
		rt, _ = updateRuntime(t, s, rt, at(time.Duration(i)*time.Minute))
	}
	check(t, s.PutEndpoint(ctx, registry.Endpoint{RuntimeID: rt.ID, Name: "pinned", LiveVersion: 2, TargetVersion: 2}), "pin version 2")
	check(t, s.PutEndpoint(ctx, registry.Endpoint{RuntimeID: rt.ID, Name: "moving", LiveVersion: 3, TargetVersion: 4}), "an endpoint between 3 and 4")
	for i := 5; i <= 10; i++ {
		v := newVersion(rt.ID, i, at(time.Duration(i)*time.Minute))
		rt.LatestVersion = i
		check(t, s.UpdateRuntime(ctx, rt, v, keep), fmt.Sprintf("update to version %d keeping %d", i, keep))
	}
	vs, _, err := s.ListVersions(ctx, rt.ID, registry.Page{})
	check(t, err, "list versions")
	var got []int
	for _, v := range vs {
		got = append(got, v.Version)
	}
	if want := []int{2, 3, 4, 8, 9, 10}; !slices.Equal(got, want) {
		t.Fatalf("versions kept %v, want %v: the newest %d and those endpoints point at", got, want, keep)
	}
	_, err = s.GetVersion(ctx, rt.ID, 1)
	wantErr(t, err, errdefs.ErrNotFound, "get a pruned version")
	wantDefault(t, s, rt.ID, 10)
}
