//go:build linux

package linux_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/image/imagetest"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

// conformanceConfig sets up a backend over root; the cgroup parent is
// derived from root, so every instance over one root shares it (the Reap
// and Attach subtests, and the stand-in berth of ReapAfterBerthKilled).
func conformanceConfig(root string) func(*linux.Config) {
	sum := sha256.Sum256([]byte(root))
	return func(c *linux.Config) {
		c.RootDir = root
		c.CgroupParent = "berth-conf-" + hex.EncodeToString(sum[:4])
		c.EgressRange = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 215, sum[4], 0}), 24)
	}
}

// conformanceBackend builds a backend over sandboxtest.Root(t).
func conformanceBackend(t *testing.T) sandbox.Backend {
	return newBackend(t, conformanceConfig(sandboxtest.Root(t)))
}

// standInBackend is conformanceBackend for BerthMain, in a process that
// the suite kills.
func standInBackend(root, _ string) (sandbox.Backend, error) {
	var cfg linux.Config
	conformanceConfig(root)(&cfg)
	return linux.New(cfg)
}

func TestConformanceOwnNetwork(t *testing.T) {
	requireLinux(t)
	sandboxtest.RunWithOptions(t, sandboxtest.Options{
		Network:   sandbox.NetworkNone,
		FixedPort: 8080,
		AdjustSpec: func(s *sandbox.Spec) {
			s.Limits = sandbox.Limits{MemoryBytes: 256 << 20, Pids: 128, DiskBytes: 64 << 20}
		},
	}, conformanceBackend)
}

func TestConformanceHostNetwork(t *testing.T) {
	requireLinux(t)
	sandboxtest.RunWithOptions(t, sandboxtest.Options{Network: sandbox.NetworkHost}, conformanceBackend)
}

func TestConformanceEgress(t *testing.T) {
	requireLinux(t)
	requireEgressTools(t)
	sandboxtest.RunWithOptions(t, sandboxtest.Options{
		Network:   sandbox.NetworkEgress,
		FixedPort: 8080,
		AdjustSpec: func(s *sandbox.Spec) {
			s.Limits = sandbox.Limits{MemoryBytes: 256 << 20, Pids: 128, DiskBytes: 64 << 20}
		},
	}, conformanceBackend)
}

// TestConformanceImage runs the suite with every sandbox in an image's
// root: one holding the suite's code directory and agent at the same
// paths, so its specs run unchanged.
func TestConformanceImage(t *testing.T) {
	requireLinux(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	var mu sync.Mutex
	laid := map[string]bool{}
	// lay copies host path p (a file or a tree) into the image once.
	lay := func(p string) {
		mu.Lock()
		defer mu.Unlock()
		if p == "" || laid[p] {
			return
		}
		laid[p] = true
		var err error
		if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
			err = os.CopyFS(filepath.Join(rootfs, p), os.DirFS(p))
		} else if data, rerr := os.ReadFile(p); rerr == nil {
			if err = os.MkdirAll(filepath.Join(rootfs, filepath.Dir(p)), 0o755); err == nil {
				err = os.WriteFile(filepath.Join(rootfs, p), data, 0o755)
			}
		} else if !errors.Is(rerr, fs.ErrNotExist) { // a missing one stays missing
			err = rerr
		}
		if err != nil {
			t.Fatalf("lay out the image: %v", err)
		}
	}
	// The suite's commands run bash, sleep, setsid, id and touch: the image has them,
	// with the libraries they need.
	for _, tool := range []string{"bash", "sleep", "setsid", "id", "touch"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("the image's %s: %v", tool, err)
		}
		lay(p)
		for _, lib := range imagetest.Libraries(t, p) {
			lay(lib)
		}
	}
	sandboxtest.RunWithOptions(t, sandboxtest.Options{
		Network:   sandbox.NetworkNone,
		FixedPort: 8080,
		AdjustSpec: func(s *sandbox.Spec) {
			lay(s.Dir)
			if len(s.Command) > 0 && filepath.IsAbs(s.Command[0]) {
				lay(s.Command[0])
			}
			s.Image = &sandbox.Image{Rootfs: rootfs}
			s.Limits = sandbox.Limits{MemoryBytes: 256 << 20, Pids: 128, DiskBytes: 64 << 20}
		},
	}, conformanceBackend)
}
