//go:build linux

package linux_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"testing"

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
