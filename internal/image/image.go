// Package image pulls OCI and Docker v2 images with go-containerregistry
// and keeps them under berth's data dir for the linux sandbox to run: each
// blob (index, manifest, config, layer) once, content-addressed, and each
// image's root filesystem unpacked once, read-only, which every sandbox of
// the image runs under a writable layer of its own.
//
// On disk, under Options.Dir:
//
//	blobs/sha256/<hex>  verified blobs, as the registry served them
//	rootfs/<hex>/       the unpacked root of image sha256:<hex>
//	meta/<hex>.json     what berth knows of the image; written last, so
//	                    its presence means the image is complete
//	tmp/                downloads and unpacks in progress (cleared by Open)
//
// An image is named by the digest its reference resolved to (an index's,
// for a multi-platform image): the digest a runtime version pins.
//
// It is a leaf: it never imports the session manager, the server or the
// store.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berth-dev/berth/internal/errdefs"
)

// DefaultMaxBytes is AgentCore's limit on an image's size.
const DefaultMaxBytes = 2_000_000_000

// unpackFactor bounds an unpacked root against its image's cap: layers
// compress, but a layer that inflates a thousandfold is an attack.
const unpackFactor = 4

// Options configure a Store.
type Options struct {
	// Dir holds the store's blobs, roots and records.
	Dir string
	// MaxBytes caps an image's size as its registry holds it (config and
	// compressed layers); its unpacked root may be unpackFactor times that.
	// Default DefaultMaxBytes.
	MaxBytes int64
	// Insecure lists registries (host or host:port) that may be reached
	// over plain HTTP. Loopback registries always may; others never.
	Insecure []string
	// DockerConfig is the directory holding Docker's config.json, whose
	// credentials and credential helpers (credHelpers, credsStore) pulls
	// use. Empty: $DOCKER_CONFIG, else ~/.docker.
	DockerConfig string
	// Keychain, when set, replaces DockerConfig's credentials.
	Keychain authn.Keychain
	// Transport is the HTTP transport under the registry client. Default
	// a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Platform is what this host runs natively ("linux/amd64"); default
	// the host's. Emulates reports whether it runs another platform under
	// emulation; default: a qemu-user binfmt_misc handler is registered
	// for it (see Emulation).
	Platform string
	Emulates func(platform string) error
	Logger   *slog.Logger
}

// Store keeps pulled images.
type Store struct {
	dir      string
	maxBytes int64
	keychain authn.Keychain
	insecure []string
	tr       http.RoundTripper
	platform string
	emulates func(string) error
	log      *slog.Logger

	// gc is held shared by every pull and exclusively by removals, so a
	// collection never takes a blob a pull is about to use.
	gc sync.RWMutex
	// mu guards pulls and every write of a record.
	mu    sync.Mutex
	pulls map[string]*pull // in flight, by image digest
}

// Image is what berth knows of one pulled image.
type Image struct {
	// Digest is what the reference resolved to; versions pin it.
	Digest string `json:"digest"`
	// Refs are the references it was pulled by, newest first.
	Refs []string `json:"refs"`
	// Manifest is the platform's manifest: Digest itself, or the entry
	// chosen from Digest's index.
	Manifest string `json:"manifest"`
	Platform string `json:"platform"`
	// Emulated is set when the host runs Platform under emulation.
	Emulated bool   `json:"emulated,omitempty"`
	Config   Config `json:"config"`
	// Size is the image's size in its registry: config and compressed
	// layers. Unpacked is its root's size on disk.
	Size     int64 `json:"size"`
	Unpacked int64 `json:"unpacked"`
	// Blobs are every blob the image holds here.
	Blobs []string `json:"blobs"`
	// PulledAt is when it was last pulled, or found here by a pull.
	PulledAt time.Time `json:"pulled_at"`
}

// Config is how the image says its process runs, as a container runtime
// reads it.
type Config struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// User is the config's user ("app", "1000:1000", ...); UID, GID,
	// Groups and Home are what it names in the image's /etc/passwd and
	// /etc/group.
	User         string   `json:"user,omitempty"`
	UID          uint32   `json:"uid"`
	GID          uint32   `json:"gid"`
	Groups       []uint32 `json:"groups,omitempty"`
	Home         string   `json:"home,omitempty"`
	ExposedPorts []string `json:"exposed_ports,omitempty"`
}

// Argv is the command the image runs: Entrypoint followed by Cmd.
func (c Config) Argv() []string {
	return append(slices.Clone(c.Entrypoint), c.Cmd...)
}

// Open returns the store in opts.Dir, clearing what an interrupted pull
// left behind.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open image store: Dir is required")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Platform == "" {
		opts.Platform = HostPlatform()
	}
	if opts.Emulates == nil {
		opts.Emulates = Emulation
	}
	kc := opts.Keychain
	if kc == nil {
		kc = dockerKeychain(opts.DockerConfig)
	}
	tr := opts.Transport
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	s := &Store{
		dir: opts.Dir, maxBytes: opts.MaxBytes, keychain: kc, insecure: opts.Insecure,
		platform: opts.Platform, emulates: opts.Emulates, log: opts.Logger.With("component", "images"),
		pulls: map[string]*pull{},
	}
	s.tr = &plainHTTPGuard{next: tr, allowed: s.plainHTTP}
	// Unpacked roots may hold set-user-ID programs of the image's: only
	// root may reach into the store.
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("open image store: clear tmp: %w", err)
	}
	for _, d := range []string{"blobs/sha256", "rootfs", "meta", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	// A root without a record is an unpack that never finished.
	roots, _ := os.ReadDir(s.path("rootfs"))
	for _, r := range roots {
		if _, err := os.Stat(s.path("meta", r.Name()+".json")); errors.Is(err, fs.ErrNotExist) {
			_ = os.RemoveAll(s.path("rootfs", r.Name()))
		}
	}
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// hexOf returns the hex part of a sha256 digest, or an error for anything
// else (a digest names files here, so it must be exactly that).
func hexOf(digest string) (string, error) {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a sha256 digest: %w", digest, errdefs.ErrInvalidArgument)
	}
	return hex, nil
}

// Rootfs is the directory holding an image's unpacked root.
func (s *Store) Rootfs(digest string) (string, error) {
	hex, err := hexOf(digest)
	if err != nil {
		return "", err
	}
	return s.path("rootfs", hex), nil
}

// Get returns the record of a pulled image, or errdefs.ErrNotFound.
func (s *Store) Get(digest string) (Image, error) {
	hex, err := hexOf(digest)
	if err != nil {
		return Image{}, err
	}
	data, err := os.ReadFile(s.path("meta", hex+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("image %s is not here: %w", digest, errdefs.ErrNotFound)
	}
	if err != nil {
		return Image{}, fmt.Errorf("read image record: %w", err)
	}
	var img Image
	if err := json.Unmarshal(data, &img); err != nil {
		return Image{}, fmt.Errorf("decode image record %s: %w", digest, err)
	}
	return img, nil
}

// List returns every pulled image, newest first.
func (s *Store) List() ([]Image, error) {
	entries, err := os.ReadDir(s.path("meta"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for _, e := range entries {
		hex, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		img, err := s.Get("sha256:" + hex)
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b Image) int { return b.PulledAt.Compare(a.PulledAt) })
	return out, nil
}

// writeRecord writes img's record atomically. Callers hold s.mu.
func (s *Store) writeRecord(img Image) error {
	hex, err := hexOf(img.Digest)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image record: %w", err)
	}
	tmp, err := os.CreateTemp(s.path("tmp"), "meta-")
	if err != nil {
		return fmt.Errorf("write image record: %w", err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path("meta", hex+".json"))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write image record: %w", err)
	}
	return nil
}

// ParseRef checks an image reference ("registry:5000/team/agent:v3",
// "team/agent@sha256:...") and returns it in full form.
func ParseRef(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%q is not an image reference: %w", ref, errdefs.ErrInvalidArgument)
	}
	return r.Name(), nil
}

// Registry names the registry ref pulls from, as host[:port]
// ("index.docker.io" for Docker Hub's short names).
func Registry(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%q is not an image reference: %w", ref, errdefs.ErrInvalidArgument)
	}
	return r.Context().RegistryStr(), nil
}

// Pinned returns ref with its tag replaced by digest: the reference a
// version pulls, whatever the tag points at later.
func Pinned(ref, digest string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%q is not an image reference: %w", ref, errdefs.ErrInvalidArgument)
	}
	if _, err := hexOf(digest); err != nil {
		return "", err
	}
	return r.Context().Digest(digest).Name(), nil
}
