package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/codestore"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// Registry resolves runtimes and qualifiers, and owns their naming rules.
type Registry struct {
	store   Store
	rules   Rulebook
	code    *codestore.Store // nil: code is never snapshotted
	images  Images           // nil: image runtimes are refused
	region  string
	account string
	log     *slog.Logger
	ttl     time.Duration

	// mu guards cache.
	mu    sync.Mutex
	cache map[cacheKey]cacheEntry

	watchers watchers
}

type cacheKey struct{ ref, qualifier string }

type cacheEntry struct {
	res Resolved
	at  time.Time
}

// Resolved is what a new session needs to know about its runtime.
type Resolved struct {
	Runtime  Runtime
	Endpoint Endpoint
	Version  Version
}

// Options configure a Registry.
type Options struct {
	// Rules check every runtime's settings.
	Rules Rulebook
	// Code keeps versions' code snapshots; nil leaves code where it lies.
	Code *codestore.Store
	// Images pulls the images versions run; nil refuses image runtimes.
	Images Images
	// Region and Account go into ARNs.
	Region, Account string
	Logger          *slog.Logger
}

// New returns a registry over store.
func New(store Store, opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Registry{store: store, rules: opts.Rules, code: opts.Code, images: opts.Images, region: opts.Region, account: opts.Account,
		log: opts.Logger, ttl: time.Second, cache: map[cacheKey]cacheEntry{}}
}

// Images pulls images for versions to run.
type Images interface {
	// Pull fetches ref unless it is already here and returns the digest
	// it resolved to, the one a version pins.
	Pull(ctx context.Context, ref string) (digest string, err error)
}

// pullImage pulls a version's image and pins its digest in s.
func (r *Registry) pullImage(ctx context.Context, s *Settings) error {
	if r.images == nil {
		return errors.New("this berth keeps no image store")
	}
	ref := s.Image
	if s.ImageDigest != "" {
		// Already pinned (a config runtime seen before): fetch exactly that.
		p, err := image.Pinned(s.Image, s.ImageDigest)
		if err != nil {
			return err
		}
		ref = p
	}
	digest, err := r.images.Pull(ctx, ref)
	if err != nil {
		return err
	}
	s.ImageDigest = digest
	return nil
}

// lastImage returns the digest the runtime's latest version pinned for
// image, if that image is still here (a pull of the pinned digest needs
// no registry then).
func (r *Registry) lastImage(ctx context.Context, id, image string) (string, error) {
	rt, err := r.store.GetRuntime(ctx, id)
	if err != nil {
		return "", err
	}
	v, err := r.store.GetVersion(ctx, id, rt.LatestVersion)
	if err != nil {
		return "", err
	}
	if v.Settings.Image != image || v.Settings.ImageDigest == "" {
		return "", errors.New("the runtime ran no such image before")
	}
	s := v.Settings
	if err := r.pullImage(ctx, &s); err != nil {
		return "", err
	}
	return s.ImageDigest, nil
}

// Version reads one version of a runtime.
func (r *Registry) Version(ctx context.Context, runtimeID string, version int) (Version, error) {
	return r.store.GetVersion(ctx, runtimeID, version)
}

// RuntimeARN builds a runtime's ARN.
func (r *Registry) RuntimeARN(id string) string {
	return fmt.Sprintf("arn:aws:bedrock-agentcore:%s:%s:runtime/%s", r.region, r.account, id)
}

// EndpointARN builds an endpoint's ARN.
func (r *Registry) EndpointARN(runtimeID, name string) string {
	return fmt.Sprintf("arn:aws:bedrock-agentcore:%s:%s:runtime/%s/runtime-endpoint/%s", r.region, r.account, runtimeID, name)
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// StableID derives a runtime ID ({name}-{10 alnum}) from its name, so a
// runtime declared in the config file keeps its ID across restarts.
func StableID(name string) string {
	sum := sha256.Sum256([]byte("berth-runtime\x00" + name))
	return name + "-" + encodeID(sum[:10])
}

// RandomID makes a fresh runtime ID for a control-plane create.
func RandomID(name string) string {
	var b [10]byte
	rand.Read(b[:])
	return name + "-" + encodeID(b[:])
}

// NameOf is the name of the runtime whose ID is id: the ID less its
// "-{10 alnum}" suffix.
func NameOf(id string) string {
	if i := len(id) - 11; i > 0 && id[i] == '-' {
		return id[:i]
	}
	return id
}

func encodeID(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = idAlphabet[int(c)%len(idAlphabet)]
	}
	return string(out)
}

// CollectCode removes the code snapshots no version refers to.
func (r *Registry) CollectCode(ctx context.Context) error {
	if r.code == nil {
		return nil
	}
	keep := map[string]bool{}
	err := r.eachVersion(ctx, func(v Version) {
		if v.Settings.CodeDigest != "" {
			keep[v.Settings.CodeDigest] = true
		}
	})
	if err != nil {
		return err
	}
	n, err := r.code.Keep(keep)
	if n > 0 {
		r.log.Info("code snapshots collected", "removed", n)
	}
	return err
}

// ImageUsers maps each image digest a version pins to the IDs of the
// runtimes pinning it.
func (r *Registry) ImageUsers(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := r.eachVersion(ctx, func(v Version) {
		if d := v.Settings.ImageDigest; d != "" && !slices.Contains(out[d], v.RuntimeID) {
			out[d] = append(out[d], v.RuntimeID)
		}
	})
	return out, err
}

// eachVersion calls fn with every version of every runtime.
func (r *Registry) eachVersion(ctx context.Context, fn func(Version)) error {
	ids, err := r.RuntimeIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		tok := ""
		for {
			vs, next, err := r.store.ListVersions(ctx, id, Page{MaxResults: 100, NextToken: tok})
			if errors.Is(err, errdefs.ErrNotFound) {
				break // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("list versions of %s: %w", id, err)
			}
			for _, v := range vs {
				fn(v)
			}
			if next == "" {
				break
			}
			tok = next
		}
	}
	return nil
}

// RuntimeIDs lists every runtime's ID.
func (r *Registry) RuntimeIDs(ctx context.Context) ([]string, error) {
	var ids []string
	tok := ""
	for {
		page, next, err := r.store.ListRuntimes(ctx, Page{MaxResults: 100, NextToken: tok})
		if err != nil {
			return nil, fmt.Errorf("list runtimes: %w", err)
		}
		for _, rt := range page {
			ids = append(ids, rt.ID)
		}
		if next == "" {
			return ids, nil
		}
		tok = next
	}
}

// RuntimeRef extracts the runtime ID or name from an ARN, an ID or a name.
func RuntimeRef(ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		if i := strings.Index(ref, ":runtime/"); i >= 0 {
			ref = ref[i+len(":runtime/"):]
			if j := strings.IndexByte(ref, '/'); j >= 0 {
				ref = ref[:j]
			}
		}
	}
	return ref
}

// Lookup finds a runtime by ARN, ID or name. An ARN of another region,
// account or service names nothing here.
func (r *Registry) Lookup(ctx context.Context, ref string) (Runtime, error) {
	if strings.HasPrefix(ref, "arn:") {
		f := strings.SplitN(ref, ":", 6)
		if len(f) < 6 || !strings.HasPrefix(f[1], "aws") || f[2] != "bedrock-agentcore" || f[3] != r.region || f[4] != r.account {
			return Runtime{}, fmt.Errorf("runtime %q: %w", ref, errdefs.ErrNotFound)
		}
	}
	id := RuntimeRef(ref)
	rt, err := r.store.GetRuntime(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) {
		rt, err = r.store.GetRuntimeByName(ctx, id)
	}
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return Runtime{}, fmt.Errorf("runtime %q: %w", ref, errdefs.ErrNotFound)
		}
		return Runtime{}, fmt.Errorf("look up runtime %q: %w", ref, err)
	}
	return rt, nil
}

// Resolve maps a runtime reference and qualifier to the version a new
// session runs, behind a short cache.
func (r *Registry) Resolve(ctx context.Context, ref, qualifier string) (Resolved, error) {
	if qualifier == "" {
		qualifier = DefaultEndpoint
	}
	k := cacheKey{ref, qualifier}
	now := time.Now()
	r.mu.Lock()
	if e, ok := r.cache[k]; ok && now.Sub(e.at) < r.ttl {
		r.mu.Unlock()
		return e.res, nil
	}
	r.mu.Unlock()

	rt, err := r.Lookup(ctx, ref)
	if err != nil {
		return Resolved{}, err
	}
	if rt.Status == api.StatusDeleting {
		return Resolved{}, fmt.Errorf("runtime %q is being deleted: %w", ref, errdefs.ErrNotFound)
	}
	ep, err := r.store.GetEndpoint(ctx, rt.ID, qualifier)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return Resolved{}, fmt.Errorf("endpoint %q of runtime %s: %w", qualifier, rt.ID, errdefs.ErrNotFound)
		}
		return Resolved{}, fmt.Errorf("get endpoint: %w", err)
	}
	v, err := r.store.GetVersion(ctx, rt.ID, ep.LiveVersion)
	if err != nil {
		return Resolved{}, fmt.Errorf("get version %d of %s: %w", ep.LiveVersion, rt.ID, err)
	}
	res := Resolved{Runtime: rt, Endpoint: ep, Version: v}
	r.mu.Lock()
	r.cache[k] = cacheEntry{res: res, at: now}
	r.mu.Unlock()
	return res, nil
}

// Invalidate drops cached resolutions; call it after any write.
func (r *Registry) Invalidate() {
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
}

// Reconcile makes the store match the config file's runtimes: new ones are
// created, changed ones get a new version, and config runtimes no longer in
// the file are deleted. Runtimes created through the API are left alone.
func (r *Registry) Reconcile(ctx context.Context, declared []Declared) ([]Runtime, error) {
	defer r.Invalidate()
	now := time.Now().UTC()
	keep := map[string]bool{}
	var out []Runtime
	for _, d := range declared {
		id := StableID(d.Name)
		if d.PinCode && r.code != nil && d.CodeDigest == "" {
			// Snapshot the code as it is now: a changed directory makes a
			// new version, and sessions of the old one keep its code.
			digest, dir, err := r.code.Snapshot(d.Workdir, r.rules.DataDir)
			if err != nil {
				return nil, fmt.Errorf("runtime %s: pin code: %w", d.Name, err)
			}
			d.Artifact.CodeLocation = d.Workdir
			d.Workdir, d.CodeDigest = dir, digest
		}
		if d.Image != "" {
			// Pull now, so the first session does not wait for it. The
			// tag is resolved afresh at every start: a moved tag makes a
			// new version, and sessions of the old one keep its image.
			r.log.Info("pulling image", "runtime", d.Name, "image", d.Image)
			d.ImageDigest = ""
			if err := r.pullImage(ctx, &d.Settings); err != nil {
				// A registry that is down must not keep berth down: the
				// image the runtime ran before, if still here, will do.
				prev, perr := r.lastImage(ctx, StableID(d.Name), d.Image)
				if perr != nil {
					return nil, fmt.Errorf("runtime %s: image %s: %w", d.Name, d.Image, err)
				}
				r.log.Warn("image pull failed; the runtime keeps the image it had", "runtime", d.Name,
					"image", d.Image, "digest", prev, "err", err)
				d.ImageDigest = prev
			}
			d.Artifact.ContainerURI = d.Image
		}
		keep[id] = true
		rt, err := r.store.GetRuntime(ctx, id)
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			if other, err := r.store.GetRuntimeByName(ctx, d.Name); err == nil {
				return nil, fmt.Errorf("runtime %q from the config file: the name is taken by runtime %s created through the API: %w", d.Name, other.ID, errdefs.ErrConflict)
			}
			rt = Runtime{ID: id, Name: d.Name, ARN: r.RuntimeARN(id), Description: d.Description,
				Status: api.StatusReady, LatestVersion: 1, Source: SourceConfig, CreatedAt: now, UpdatedAt: now}
			// The operator's own runtimes are not held to the quota.
			if err := r.store.CreateRuntime(ctx, rt, Version{RuntimeID: id, Version: 1, Settings: d.Settings, CreatedAt: now}, 0); err != nil {
				return nil, fmt.Errorf("create runtime %s: %w", d.Name, err)
			}
			r.log.Info("runtime created from config", "runtime_id", id)
			r.changed(ctx, Change{Kind: RuntimeCreated, RuntimeID: id})
		case err != nil:
			return nil, fmt.Errorf("get runtime %s: %w", d.Name, err)
		default:
			latest, err := r.store.GetVersion(ctx, id, rt.LatestVersion)
			if err != nil {
				return nil, fmt.Errorf("get version of %s: %w", d.Name, err)
			}
			if reflect.DeepEqual(normalize(latest.Settings), normalize(d.Settings)) && rt.Description == d.Description {
				break
			}
			rt.LatestVersion++
			rt.Description = d.Description
			rt.UpdatedAt = now
			if err := r.store.UpdateRuntime(ctx, rt, Version{RuntimeID: id, Version: rt.LatestVersion, Settings: d.Settings, CreatedAt: now}, r.rules.maxVersions()); err != nil {
				return nil, fmt.Errorf("update runtime %s: %w", d.Name, err)
			}
			r.log.Info("runtime updated from config", "runtime_id", id, "version", rt.LatestVersion)
			r.changed(ctx, Change{Kind: RuntimeUpdated, RuntimeID: id})
		}
		out = append(out, rt)
	}
	// Drop config runtimes that left the file.
	tok := ""
	for {
		page, next, err := r.store.ListRuntimes(ctx, Page{MaxResults: 100, NextToken: tok})
		if err != nil {
			return nil, fmt.Errorf("list runtimes: %w", err)
		}
		for _, rt := range page {
			if rt.Source == SourceConfig && !keep[rt.ID] {
				if err := r.store.DeleteRuntime(ctx, rt.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
					return nil, fmt.Errorf("delete runtime %s: %w", rt.ID, err)
				}
				r.log.Info("runtime removed: no longer in config", "runtime_id", rt.ID)
				r.changed(ctx, Change{Kind: RuntimeDeleted, RuntimeID: rt.ID})
			}
		}
		if next == "" {
			break
		}
		tok = next
	}
	return out, nil
}

// normalize makes empty and nil collections compare equal.
func normalize(c Settings) Settings {
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.HeaderAllowlist) == 0 {
		c.HeaderAllowlist = nil
	}
	if len(c.Mounts) == 0 {
		c.Mounts = nil
	}
	if len(c.Artifact.EntryPoint) == 0 {
		c.Artifact.EntryPoint = nil
	}
	return c
}
