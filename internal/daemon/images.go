package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/server"
)

// Images no version pins are collected every imageGCEvery, once pulled
// more than imageGrace ago: a create or update may have pulled one it is
// about to pin. A prune (the operator's own call) spares nothing unpinned.
const (
	imageGCEvery = time.Hour
	imageGrace   = time.Hour
	pruneGrace   = 0
)

// images serves the image API and collects unused images: the image
// store, with the registry's knowledge of which versions pin what.
type images struct {
	s   *image.Store
	reg *registry.Registry
	log *slog.Logger
}

var _ server.Images = images{}

// Pull for the registry: a create, update or config runtime's start,
// with its progress in the log.
func (i images) pullForVersion(ctx context.Context, ref string) (string, error) {
	var last image.Phase
	img, err := i.s.Pull(ctx, ref, func(p image.Progress) {
		if p.Phase != last {
			last = p.Phase
			i.log.Info("image pull", "ref", ref, "phase", p.Phase, "bytes", p.Total, "platform", p.Platform, "emulated", p.Emulated)
		}
	})
	return img.Digest, err
}

type registryPuller struct{ i images }

func (p registryPuller) Pull(ctx context.Context, ref string) (string, error) {
	return p.i.pullForVersion(ctx, ref)
}

func (i images) List(ctx context.Context) ([]api.Image, error) {
	users, err := i.reg.ImageUsers(ctx)
	if err != nil {
		return nil, err
	}
	imgs, err := i.s.List()
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, imageOut(img, users))
	}
	return out, nil
}

func imageOut(img image.Image, users map[string][]string) api.Image {
	return api.Image{Digest: img.Digest, Refs: img.Refs, Platform: img.Platform, Emulated: img.Emulated,
		Size: img.Size, Unpacked: img.Unpacked, PulledAt: img.PulledAt, Runtimes: append([]string{}, users[img.Digest]...)}
}

func (i images) Pull(ctx context.Context, ref string, progress func(api.ImagePullEvent)) (api.Image, error) {
	img, err := i.s.Pull(ctx, ref, func(p image.Progress) {
		progress(api.ImagePullEvent{Phase: string(p.Phase), Done: p.Done, Total: p.Total, Platform: p.Platform, Emulated: p.Emulated})
	})
	if err != nil {
		return api.Image{}, err
	}
	users, err := i.reg.ImageUsers(ctx)
	if err != nil {
		return api.Image{}, err
	}
	return imageOut(img, users), nil
}

// Remove removes an image by digest, digest prefix or a reference it was
// pulled by, unless a version pins it.
func (i images) Remove(ctx context.Context, ref string) (api.ImagePrune, error) {
	imgs, err := i.s.List()
	if err != nil {
		return api.ImagePrune{}, err
	}
	full, _ := image.ParseRef(ref)
	var found []image.Image
	for _, img := range imgs {
		if img.Digest == ref || (len(ref) >= 12 && strings.HasPrefix(strings.TrimPrefix(img.Digest, "sha256:"), strings.TrimPrefix(ref, "sha256:"))) ||
			slices.Contains(img.Refs, ref) || (full != "" && slices.Contains(img.Refs, full)) {
			found = append(found, img)
		}
	}
	switch len(found) {
	case 0:
		return api.ImagePrune{}, fmt.Errorf("no image %q here: %w", ref, errdefs.ErrNotFound)
	case 1:
	default:
		return api.ImagePrune{}, fmt.Errorf("%q names %d images; give a digest: %w", ref, len(found), errdefs.ErrInvalidArgument)
	}
	users, err := i.reg.ImageUsers(ctx)
	if err != nil {
		return api.ImagePrune{}, err
	}
	d := found[0].Digest
	if u := users[d]; len(u) > 0 {
		return api.ImagePrune{}, fmt.Errorf("image %s is pinned by runtime %s; delete or update them first: %w",
			d, strings.Join(u, ", "), errdefs.ErrConflict)
	}
	c, err := i.s.Remove(d)
	return pruneOut(c), err
}

func (i images) Prune(ctx context.Context) (api.ImagePrune, error) {
	c, err := i.collect(ctx, pruneGrace)
	return pruneOut(c), err
}

// collect removes every image no version pins, pulled more than grace ago.
func (i images) collect(ctx context.Context, grace time.Duration) (image.Collected, error) {
	users, err := i.reg.ImageUsers(ctx)
	if err != nil {
		return image.Collected{}, fmt.Errorf("collect images: %w", err)
	}
	keep := make(map[string]bool, len(users))
	for d := range users {
		keep[d] = true
	}
	return i.s.Keep(keep, time.Now().Add(-grace))
}

// collectEvery collects unused images until ctx ends.
func (i images) collectEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := i.collect(ctx, imageGrace); err != nil {
				i.log.Warn("collect images", "err", err)
			}
		}
	}
}

func pruneOut(c image.Collected) api.ImagePrune {
	return api.ImagePrune{Removed: append([]string{}, c.Images...), Blobs: c.Blobs, Bytes: c.Bytes}
}
