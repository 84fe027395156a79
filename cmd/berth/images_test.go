package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/image/imagetest"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestImagesCommands: pull with progress, list with the runtimes pinning
// each image, rm refusing a pinned one, prune removing the rest.
func TestImagesCommands(t *testing.T) {
	var notRoot error
	if os.Geteuid() != 0 {
		notRoot = errors.New("unpacking an image keeps its files' owners, which needs root")
	}
	testenv.Require(t, testenv.Root, notRoot)
	reg := imagetest.NewRegistry(t, nil)
	img := func(name string) v1.Image {
		return imagetest.Image(t, "linux/amd64", v1.Config{Cmd: []string{"/" + name}},
			imagetest.Layer(t, imagetest.File(name, strings.Repeat(name, 100_000), 0o755)))
	}
	pinned := reg.Push(t, "team/agent:v1", img("agent"))
	loose := reg.Push(t, "team/tool:v1", img("tool"))

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Runtimes = []config.Runtime{{Name: "imaged", Settings: registry.Settings{Image: reg.Ref("team/agent:v1")}}}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	t.Setenv("BERTH_ENDPOINT", d.URL())

	out, errOut, err := berth(t, "images", "pull", reg.Ref("team/tool:v1"))
	if err != nil || !strings.HasPrefix(out, loose) || !strings.Contains(errOut, "downloading") || !strings.Contains(errOut, "done") {
		t.Fatalf("pull: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	list := func() []api.Image {
		t.Helper()
		out, _, err := berth(t, "images", "ls", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var l api.ImageList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return l.Images
	}
	imgs := list()
	byDigest := map[string]api.Image{}
	for _, i := range imgs {
		byDigest[i.Digest] = i
	}
	if p, l := byDigest[pinned], byDigest[loose]; len(imgs) != 2 || !slices.Equal(p.Runtimes, []string{registry.StableID("imaged")}) ||
		len(l.Runtimes) != 0 || l.Size == 0 || l.Unpacked == 0 || l.Refs[0] != reg.Ref("team/tool:v1") {
		t.Fatalf("ls: %+v", imgs)
	}
	if out, _, _ := berth(t, "images", "ls"); !strings.Contains(out, registry.StableID("imaged")) || !strings.Contains(out, reg.Ref("team/tool:v1")) {
		t.Errorf("ls table:\n%s", out)
	}

	_, _, err = berth(t, "images", "rm", reg.Ref("team/agent:v1"))
	if err == nil || !strings.Contains(err.Error(), "ConflictException") || !strings.Contains(err.Error(), registry.StableID("imaged")) {
		t.Errorf("rm of a pinned image: %v; want a conflict naming the runtime", err)
	}
	out, _, err = berth(t, "images", "prune")
	if err != nil || !strings.Contains(out, "removed "+loose) || strings.Contains(out, pinned) {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	if imgs := list(); len(imgs) != 1 || imgs[0].Digest != pinned {
		t.Errorf("after prune: %+v; want only the pinned image", imgs)
	}
	if _, _, err := berth(t, "images", "rm", loose); err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("rm of a pruned image: %v", err)
	}
}
