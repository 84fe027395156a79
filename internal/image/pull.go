package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Phase is where a pull is.
type Phase string

// The phases of a pull, in order.
const (
	PhaseResolving   Phase = "resolving"
	PhaseDownloading Phase = "downloading"
	PhaseUnpacking   Phase = "unpacking"
	PhaseDone        Phase = "done"
)

// Progress reports a pull as it goes. Done and Total count the bytes of
// the blobs it downloads (those already here are not counted).
type Progress struct {
	Ref         string
	Digest      string
	Platform    string
	Emulated    bool
	Phase       Phase
	Done, Total int64
}

// pull is one pull in flight; others asking for the same digest wait for it.
type pull struct {
	done chan struct{}
	img  Image
	err  error
}

// downloadJobs is how many blobs one pull fetches at once.
const downloadJobs = 3

// Pull fetches ref ("registry:5000/team/agent:v3" or a digest reference)
// unless the image is already here, unpacks it and returns its record.
// progress, if set, hears how it goes (from several goroutines, never at
// once). Concurrent pulls of one image share the work.
//
// Errors wrap errdefs classes: ErrNotFound for an unknown repository or
// tag, ErrPermissionDenied when the registry refuses the credentials,
// ErrInvalidArgument for an image berth cannot run (no platform this host
// runs, over the cap, a bad layer, a blob that fails its digest), and
// ErrUnavailable when the registry cannot be reached.
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
	img, err := s.pull(ctx, ref, progress)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
	if os.Geteuid() != 0 {
		return Image{}, fmt.Errorf("berth runs as uid %d: images need berth to run as root (unpacked files keep their owners, and only the linux sandbox runs images): %w",
			os.Geteuid(), errdefs.ErrInvalidArgument)
	}
	report := newReporter(ref, progress)
	r, err := s.reference(ref)
	if err != nil {
		return Image{}, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	if d, ok := r.(name.Digest); ok {
		if img, err := s.Get(d.DigestStr()); err == nil {
			report.final(img)
			return s.addRef(img, ref)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	report.set(func(p *Progress) { p.Phase = PhaseResolving })
	desc, err := remote.Get(r, s.remoteOptions(ctx)...)
	if err != nil {
		return Image{}, s.classify(r, err)
	}
	digest := desc.Digest.String()

	s.mu.Lock()
	if p := s.pulls[digest]; p != nil {
		s.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return Image{}, ctx.Err()
		}
		if p.err != nil {
			return Image{}, p.err
		}
		report.final(p.img)
		return s.addRef(p.img, ref)
	}
	if img, err := s.Get(digest); err == nil {
		s.mu.Unlock()
		report.final(img)
		return s.addRef(img, ref)
	}
	p := &pull{done: make(chan struct{})}
	s.pulls[digest] = p
	s.mu.Unlock()

	var wrote []string
	p.img, p.err = s.fetch(ctx, r, desc, report, &wrote)
	if p.err != nil {
		s.forget(wrote)
	}
	if p.err == nil {
		p.img, p.err = s.addRef(p.img, ref)
	}
	s.mu.Lock()
	delete(s.pulls, digest)
	s.mu.Unlock()
	close(p.done)
	if p.err == nil {
		report.final(p.img)
	}
	return p.img, p.err
}

// addRef records that img was pulled as ref, just now: a collection
// spares what was pulled lately, since a caller may be about to pin it.
func (s *Store) addRef(img Image, ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, err := s.Get(img.Digest); err == nil {
		img = cur
	}
	img.Refs = append([]string{ref}, slices.DeleteFunc(img.Refs, func(r string) bool { return r == ref })...)
	img.PulledAt = time.Now().UTC()
	if err := s.writeRecord(img); err != nil {
		return Image{}, err
	}
	return img, nil
}

func (s *Store) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(s.keychain),
		remote.WithTransport(s.tr),
		remote.WithUserAgent("berth"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
}

func mustPlatform(s string) v1.Platform {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	return *p
}

// classify wraps a registry error in the class it deserves, saying what
// the registry meant.
func (s *Store) classify(r name.Reference, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		// By the distribution spec's error codes, which every registry
		// sends; HTTP statuses are the HTTP edge's business.
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("no image %s in registry %s: %v: %w", r.Identifier(), r.Context().RegistryStr(), te, errdefs.ErrNotFound)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("registry %s refused the credentials: %v: %w", r.Context().RegistryStr(), te, errdefs.ErrPermissionDenied)
			}
		}
		return fmt.Errorf("registry %s: %v: %w", r.Context().RegistryStr(), te, errdefs.ErrUnavailable)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("cannot reach registry %s: %v: %w", r.Context().RegistryStr(), err, errdefs.ErrUnavailable)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
}

// fetch downloads and unpacks the image desc describes.
// Every blob it stores is added to wrote.
func (s *Store) fetch(ctx context.Context, r name.Reference, desc *remote.Descriptor, report *reporter, wrote *[]string) (Image, error) {
	s.gc.RLock()
	defer s.gc.RUnlock()
	digest := desc.Digest.String()
	img := Image{Digest: digest, Blobs: []string{digest}}
	var remoteImg v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return Image{}, s.classify(r, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return Image{}, s.classify(r, err)
		}
		m, err := s.choose(r, im)
		if err != nil {
			return Image{}, err
		}
		img.Platform = m.Platform.String()
		if remoteImg, err = idx.Image(m.Digest); err != nil {
			return Image{}, s.classify(r, err)
		}
		if err := s.writeBytes(desc.Digest, desc.Manifest, wrote); err != nil {
			return Image{}, err
		}
	case desc.MediaType.IsImage():
		var err error
		if remoteImg, err = desc.Image(); err != nil {
			return Image{}, s.classify(r, err)
		}
	default:
		return Image{}, fmt.Errorf("%s is a %s, not an image berth can run (OCI or Docker v2 manifest or index): %w",
			r, desc.MediaType, errdefs.ErrInvalidArgument)
	}

	manifest, err := remoteImg.Manifest()
	if err != nil {
		return Image{}, s.classify(r, err)
	}
	rawManifest, err := remoteImg.RawManifest()
	if err != nil {
		return Image{}, s.classify(r, err)
	}
	mdigest, err := remoteImg.Digest()
	if err != nil {
		return Image{}, s.classify(r, err)
	}
	rawConfig, err := remoteImg.RawConfigFile()
	if err != nil {
		return Image{}, s.classify(r, err)
	}
	cf, err := remoteImg.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("decode image config: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if img.Platform == "" {
		p := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if err := s.runnable(r, p, nil); err != nil {
			return Image{}, err
		}
		img.Platform = p.String()
	}
	img.Emulated = !s.native(img.Platform)
	img.Manifest = mdigest.String()
	report.set(func(p *Progress) { p.Digest, p.Platform, p.Emulated = digest, img.Platform, img.Emulated })

	img.Size = manifest.Config.Size
	for _, l := range manifest.Layers {
		img.Size += l.Size
	}
	if img.Size > s.maxBytes {
		return Image{}, fmt.Errorf("image %s is %s, over this berth's max_image_bytes of %s: %w",
			r, HumanBytes(img.Size), HumanBytes(s.maxBytes), errdefs.ErrInvalidArgument)
	}
	if mdigest.String() != digest {
		img.Blobs = append(img.Blobs, mdigest.String())
	}
	if err := s.writeBytes(mdigest, rawManifest, wrote); err != nil {
		return Image{}, err
	}
	if err := s.writeBytes(manifest.Config.Digest, rawConfig, wrote); err != nil {
		return Image{}, err
	}
	img.Blobs = append(img.Blobs, manifest.Config.Digest.String())
	for _, l := range manifest.Layers {
		img.Blobs = append(img.Blobs, l.Digest.String())
	}

	if err := s.download(ctx, r, remoteImg, manifest, report, wrote); err != nil {
		return Image{}, err
	}
	report.set(func(p *Progress) { p.Phase = PhaseUnpacking })
	local, err := partial.CompressedToImage(&localImage{s: s, manifest: rawManifest, config: rawConfig, mediaType: manifest.MediaType})
	if err != nil {
		return Image{}, fmt.Errorf("open downloaded image: %w", err)
	}
	tmp, err := os.MkdirTemp(s.path("tmp"), "rootfs-")
	if err != nil {
		return Image{}, fmt.Errorf("unpack: %w", err)
	}
	published := false
	defer func() {
		if !published {
			os.RemoveAll(tmp)
		}
	}()
	rc := mutate.Extract(local)
	img.Unpacked, err = unpack(rc, tmp, unpackFactor*s.maxBytes)
	rc.Close()
	if err != nil {
		return Image{}, fmt.Errorf("unpack %s: %w", r, err)
	}
	c := cf.Config
	img.Config = Config{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
	for p := range c.ExposedPorts {
		img.Config.ExposedPorts = append(img.Config.ExposedPorts, p)
	}
	slices.Sort(img.Config.ExposedPorts)
	if err := resolveUser(tmp, &img.Config); err != nil {
		return Image{}, fmt.Errorf("image %s: %w", r, err)
	}
	// No fsync: syncing the unpacked root doubled a pull's time (it
	// flushes the whole filesystem). A berth crash loses nothing (the
	// record is written after the root is complete); a host crash may,
	// and `berth images rm` then a pull mends it.
	hex, _ := hexOf(digest)
	if err := os.Rename(tmp, s.path("rootfs", hex)); err != nil {
		return Image{}, fmt.Errorf("unpack: %w", err)
	}
	published = true
	img.PulledAt = time.Now().UTC()
	s.mu.Lock()
	err = s.writeRecord(img)
	s.mu.Unlock()
	if err != nil {
		os.RemoveAll(s.path("rootfs", hex))
		return Image{}, err
	}
	s.log.Info("image pulled", "ref", r.Name(), "digest", digest, "platform", img.Platform, "emulated", img.Emulated,
		"size", img.Size, "unpacked", img.Unpacked)
	return img, nil
}

// forget removes the blobs a failed pull stored that no image holds. It
// takes s.gc exclusively, so no other pull is between finding a blob here
// and using it.
func (s *Store) forget(blobs []string) {
	s.gc.Lock()
	defer s.gc.Unlock()
	held := map[string]bool{}
	imgs, err := s.List()
	if err != nil {
		return
	}
	for _, img := range imgs {
		for _, b := range img.Blobs {
			held[b] = true
		}
	}
	for _, b := range blobs {
		if h, err := v1.NewHash(b); err == nil && !held[b] {
			_ = os.Remove(s.blobPath(h))
		}
	}
}

// native reports whether platform runs here without emulation.
func (s *Store) native(platform string) bool {
	host := mustPlatform(s.platform)
	p, err := v1.ParsePlatform(platform)
	return err == nil && p.OS == host.OS && p.Architecture == host.Architecture &&
		(p.Variant == "" || host.Variant == "" || p.Variant == host.Variant)
}

// runnable says why p cannot run here, or nil: natively, or under
// emulation. others lists the index's platforms for the message.
func (s *Store) runnable(r name.Reference, p v1.Platform, others []string) error {
	if p.OS != "linux" {
		return fmt.Errorf("image %s is for %s; berth runs linux images: %w", r, p.String(), errdefs.ErrInvalidArgument)
	}
	if s.native(p.String()) {
		return nil
	}
	err := s.emulates(p.String())
	if err == nil {
		return nil
	}
	has := p.String()
	if len(others) > 0 {
		has = strings.Join(others, ", ")
	}
	return fmt.Errorf("image %s has no %s variant (it has %s), and this host cannot emulate one: %v: %w",
		r, s.platform, has, err, errdefs.ErrInvalidArgument)
}

// choose picks from an index the manifest this host runs: its own
// platform if there, else the first it can emulate.
func (s *Store) choose(r name.Reference, im *v1.IndexManifest) (v1.Descriptor, error) {
	var all []string
	var cands []v1.Descriptor
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" || !m.MediaType.IsImage() {
			continue // attestations, other systems
		}
		all = append(all, m.Platform.String())
		cands = append(cands, m)
	}
	for _, m := range cands {
		if s.native(m.Platform.String()) {
			return m, nil
		}
	}
	var why error
	for _, m := range cands {
		if why = s.runnable(r, *m.Platform, all); why == nil {
			s.log.Info("image has no variant for this host's platform; running it under emulation",
				"ref", r.Name(), "host", s.platform, "platform", m.Platform.String())
			return m, nil
		}
	}
	if why == nil {
		why = fmt.Errorf("index %s lists no linux image: %w", r, errdefs.ErrInvalidArgument)
	}
	return v1.Descriptor{}, why
}

// download fetches the layers not yet here, a few at once.
func (s *Store) download(ctx context.Context, r name.Reference, img v1.Image, m *v1.Manifest, report *reporter, wrote *[]string) error {
	var missing []v1.Descriptor
	var total int64
	for _, l := range m.Layers {
		if _, err := os.Stat(s.blobPath(l.Digest)); err == nil || slices.ContainsFunc(missing, func(d v1.Descriptor) bool { return d.Digest == l.Digest }) {
			continue
		}
		missing = append(missing, l)
		total += l.Size
	}
	report.set(func(p *Progress) { p.Phase, p.Total = PhaseDownloading, total })
	for _, d := range missing {
		*wrote = append(*wrote, d.Digest.String())
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan v1.Descriptor)
	var wg sync.WaitGroup
	for range min(downloadJobs, len(missing)) {
		wg.Go(func() {
			for d := range jobs {
				if err := s.downloadLayer(img, d, report); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, d := range missing {
		select {
		case jobs <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return s.classify(r, err)
	}
	return nil
}

func (s *Store) downloadLayer(img v1.Image, d v1.Descriptor, report *reporter) error {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	// go-containerregistry's reader checks the size and digest at the end.
	return s.writeBlob(d.Digest, rc, func(n int64) { report.add(n) })
}

func (s *Store) blobPath(h v1.Hash) string { return s.path("blobs", h.Algorithm, h.Hex) }

// writeBytes stores a blob held in memory, checking its digest, and adds
// it to wrote.
func (s *Store) writeBytes(h v1.Hash, data []byte, wrote *[]string) error {
	*wrote = append(*wrote, h.String())
	got, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if got != h {
		return fmt.Errorf("blob %s has digest %s: %w", h, got, errdefs.ErrInvalidArgument)
	}
	return s.writeBlob(h, io.NopCloser(bytes.NewReader(data)), nil)
}

// writeBlob stores rc as blob h, through a temporary file renamed only
// once the content is complete (and, from a registry, verified).
func (s *Store) writeBlob(h v1.Hash, rc io.ReadCloser, counted func(int64)) error {
	defer rc.Close()
	if h.Algorithm != "sha256" {
		return fmt.Errorf("blob %s: only sha256 digests are supported: %w", h, errdefs.ErrInvalidArgument)
	}
	if _, err := hexOf(h.String()); err != nil {
		return err
	}
	final := s.blobPath(h)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-")
	if err != nil {
		return fmt.Errorf("store blob: %w", err)
	}
	var w io.Writer = f
	if counted != nil {
		w = countingWriter{f, counted}
	}
	_, err = io.Copy(w, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), final)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("blob %s: %w", h, err)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n func(int64)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n(int64(n))
	return n, err
}

// localImage is a downloaded image read back from the blob store.
type localImage struct {
	s                *Store
	manifest, config []byte
	mediaType        types.MediaType
}

func (li *localImage) RawConfigFile() ([]byte, error)      { return li.config, nil }
func (li *localImage) MediaType() (types.MediaType, error) { return li.mediaType, nil }
func (li *localImage) RawManifest() ([]byte, error)        { return li.manifest, nil }
func (li *localImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := v1.ParseManifest(bytes.NewReader(li.manifest))
	if err != nil {
		return nil, err
	}
	for _, d := range m.Layers {
		if d.Digest == h {
			return &localLayer{path: li.s.blobPath(h), desc: d}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in the manifest", h)
}

type localLayer struct {
	path string
	desc v1.Descriptor
}

func (l *localLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *localLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *localLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *localLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

// reporter throttles progress to one report every 100 ms, and serialises
// reports from concurrent downloads.
type reporter struct {
	fn   func(Progress)
	mu   sync.Mutex
	p    Progress
	last time.Time
}

func newReporter(ref string, fn func(Progress)) *reporter {
	return &reporter{fn: fn, p: Progress{Ref: ref}}
}

func (r *reporter) set(f func(*Progress)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.p)
	r.emit(true)
}

func (r *reporter) add(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.Done += n
	r.emit(r.p.Done == r.p.Total)
}

// emit reports the current state; callers hold r.mu.
func (r *reporter) emit(force bool) {
	if r.fn == nil || (!force && time.Since(r.last) < 100*time.Millisecond) {
		return
	}
	r.last = time.Now()
	r.fn(r.p)
}

func (r *reporter) final(img Image) {
	r.set(func(p *Progress) {
		p.Digest, p.Platform, p.Emulated, p.Phase = img.Digest, img.Platform, img.Emulated, PhaseDone
	})
}

// HumanBytes writes a size the way errors and listings show it.
func HumanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
