package linux

import (
	"log/slog"
	"net/netip"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Config configures the backend.
type Config struct {
	// RootDir holds one small directory per sandbox (its state file and the
	// empty mount point its root is assembled on). Put it under berth's data
	// directory. Sandboxes never see it.
	RootDir string
	// CgroupParent names the cgroup every sandbox's cgroups go under. A
	// relative name nests under berth's own cgroup in each hierarchy (the
	// delegation pattern); an absolute one starts at the hierarchy root.
	// Default "berth".
	CgroupParent string
	// HidePaths are host paths every sandbox sees as empty: berth's data
	// directory, secrets. RootDir, /run, /root, /etc/shadow, /etc/gshadow
	// and /etc/ssh are always hidden; /tmp is always replaced.
	HidePaths []string
	// DefaultNetwork applies when a Spec leaves Network empty. Default none.
	DefaultNetwork sandbox.NetworkMode
	// UserNamespace maps root inside each sandbox to its own unprivileged
	// host uid/gid range (UIDBase + k*65536, size 65536). Stronger, but the
	// agent's code, binary and bind-mount sources must then be readable by
	// "other" on the host. Default off: see docs/isolation.md.
	UserNamespace bool
	// UIDBase is the first host uid used for user namespaces. Default 100000.
	UIDBase uint32
	// WarmInits is how many started init steps the backend keeps ready for
	// each network mode it has been asked for (see pool.go): a Start then
	// skips fork, exec, namespace creation and most mounts. Default 2;
	// negative turns the pool off.
	WarmInits int
	// EgressRange is the private IPv4 range egress sandboxes take their /30
	// subnets from. Default 10.213.0.0/16. Give each berth on a host its own.
	EgressRange netip.Prefix
	// EgressDeny lists destinations egress sandboxes may not reach, on top
	// of the host itself, other sandboxes and 169.254.0.0/16 (cloud
	// metadata), which are always denied. Add your LAN ranges here.
	EgressDeny []netip.Prefix
	// EgressDNS are the resolvers written into egress sandboxes'
	// /etc/resolv.conf. Default: the host's nameservers a sandbox can reach
	// (not loopback, not the host's own addresses).
	EgressDNS []netip.Addr
	// Logger receives lifecycle logs. Default slog.Default().
	Logger *slog.Logger
}

// capabilities describes the backend; the same on every build.
func capabilities(def sandbox.NetworkMode) sandbox.Capabilities {
	if def == "" {
		def = sandbox.NetworkNone
	}
	return sandbox.Capabilities{
		DefaultNetwork: def,
		Networks:       []sandbox.NetworkMode{sandbox.NetworkNone, sandbox.NetworkHost, sandbox.NetworkEgress},
		PrivateNetwork: true,
		Mounts:         true,
		Images:         true,
	}
}
