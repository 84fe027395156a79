//go:build linux

package linux_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

// conformanceBackend builds a backend over sandboxtest.Root(t); the cgroup
// parent is derived from that root so the Reap subtest's two instances share it.
func conformanceBackend(t *testing.T) sandbox.Backend {
	root := sandboxtest.Root(t)
	sum := sha256.Sum256([]byte(root))
	return newBackend(t, func(c *linux.Config) {
		c.RootDir = root
		c.CgroupParent = "berth-conf-" + hex.EncodeToString(sum[:4])
	})
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
