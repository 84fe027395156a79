// Package sandbox defines the contract every sandbox backend meets: start an
// agent process tree for one session, let berth dial its HTTP port, report
// how it ended, and tear everything down without leaving orphans.
//
// Backends never import the session manager, the server or the store.
package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// NetworkMode says what network a sandbox sees.
type NetworkMode string

const (
	// NetworkHost shares the host network (the process backend's only mode).
	NetworkHost NetworkMode = "host"
	// NetworkNone gives the sandbox loopback only.
	NetworkNone NetworkMode = "none"
	// NetworkEgress lets the sandbox reach outside networks but not other
	// sandboxes or berth's listeners.
	NetworkEgress NetworkMode = "egress"
)

// Limits caps a sandbox's resources. Zero means unlimited.
type Limits struct {
	MemoryBytes int64
	// CPUMillis is the CPU quota in thousandths of a core (1000 = one core).
	CPUMillis int64
	Pids      int64
	// DiskBytes caps the writable areas (scratch dir and /tmp).
	DiskBytes int64
}

// Mount is an extra bind mount into the sandbox. The tags are the config
// file's and the store's names for it.
type Mount struct {
	Source   string `json:"source" yaml:"source"`
	Target   string `json:"target" yaml:"target"`
	ReadOnly bool   `json:"read_only,omitempty" yaml:"read_only"`
}

// Spec describes one sandbox to start.
type Spec struct {
	// Name is deterministic, from Name(runtimeID, sessionID); backends use it
	// for directories, cgroups and leftover discovery.
	Name      string
	RuntimeID string
	SessionID string

	// Command is argv; a relative Command[0] containing a slash resolves
	// against Dir.
	Command []string
	// Dir is the agent's working directory (the runtime's code). Empty means
	// the sandbox's own scratch directory.
	Dir string
	// Env is extra KEY=VALUE pairs. Backends add PORT, HOME and TMPDIR.
	Env []string
	// Port is the port the agent listens on where the sandbox has a
	// network of its own (Capabilities.PrivateNetwork): its protocol's
	// standard port. 0 means DefaultPort. A sandbox sharing the host's
	// network gets a free port instead; PORT says which either way.
	Port int
	// Output receives the agent's stdout and stderr: the write end of a
	// pipe whose other end the caller reads, so the agent never holds a
	// file of berth's. The backend hands it to the agent and keeps no copy
	// once Start returns; the caller closes its own. Nil discards.
	Output *os.File `json:"-"`

	Limits  Limits
	Network NetworkMode
	Mounts  []Mount

	// Image, when set, runs the agent in an image's root filesystem rather
	// than the host's: Command, Dir and Env are then paths and values
	// inside the image. Backends without Capabilities.Images refuse it.
	Image *Image
}

// Image is an unpacked container image for a sandbox to run.
type Image struct {
	// Rootfs is the image's unpacked root on the host, never written: each
	// sandbox writes to a layer of its own on top, thrown away with it.
	Rootfs string
	// UID, GID and Groups are who the agent runs as; Home is its $HOME
	// unless Env sets one.
	UID, GID uint32
	Groups   []uint32
	Home     string
}

// OpenOutput returns where the agent's stdout and stderr go: Output, or
// /dev/null when it is nil. done closes what OpenOutput opened, never
// Output, once the agent holds its own descriptor.
func (s Spec) OpenOutput() (f *os.File, done func(), err error) {
	if s.Output != nil {
		return s.Output, func() {}, nil
	}
	f, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	return f, func() { f.Close() }, nil
}

// ExitStatus says how a sandbox's agent ended.
type ExitStatus struct {
	// Code is the exit code, or -1 when killed by a signal.
	Code int
	// Signal names the signal that killed the agent, if any.
	Signal string
	// OOMKilled is true when the memory limit killed the agent.
	OOMKilled bool
	// Unknown is true when the agent ended but how could not be learned:
	// in a reattached sandbox whose agent was not this process's child.
	// Code is then -1.
	Unknown bool
}

func (s ExitStatus) String() string {
	switch {
	case s.Unknown:
		return "exit status unknown (sandbox reattached)"
	case s.OOMKilled:
		return "killed: out of memory (memory limit exceeded)"
	case s.Signal != "":
		return "killed by signal " + s.Signal
	default:
		return "exit code " + strconv.Itoa(s.Code)
	}
}

// Handle is a started sandbox. The ping loop, timers and proxy run against
// the handle, never against a PID.
type Handle interface {
	// ID is persistable: it names the sandbox in the store and in logs.
	ID() string
	// Addr is the host:port to put in URLs sent to the agent.
	Addr() string
	// DialContext opens a connection to the agent's HTTP port, whichever
	// network namespace it lives in.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// Done is closed once the agent's process tree has exited.
	Done() <-chan struct{}
	// Exit reports how the agent ended; valid after Done is closed.
	Exit() ExitStatus
	// Stop sends SIGTERM, waits up to grace, then SIGKILLs the whole tree,
	// and removes every resource the sandbox held except its log file. It
	// is idempotent and safe to call concurrently.
	Stop(ctx context.Context, grace time.Duration) error
	// Exec runs a command inside the sandbox, beside the agent (see
	// ExecSpec), and returns how it ended once it has exited and its output
	// is written. Whatever the command left running then is killed: a
	// command's processes end with it. When ctx ends first, the command's
	// whole process tree is killed (processes that left its process group
	// or session included), the agent never, and the error wraps
	// context.Cause(ctx). Commands may run concurrently with each other and
	// with calls to the agent. Exec fails once the agent has exited.
	Exec(ctx context.Context, spec ExecSpec) (ExecStatus, error)
}

// ExecSpec is a command to run inside a live sandbox: a fresh process with
// the agent's filesystem, environment, working directory, network and
// limits (and, where the backend sets them, its seccomp filter and
// capabilities), as the sandbox's root user (the agent's own user where the
// backend has no users of its own), with no stdin.
type ExecSpec struct {
	// Argv is the command; a bare Argv[0] is looked up in the agent's PATH.
	Argv []string
	// Stdout and Stderr receive the command's output as it is produced,
	// each from a goroutine of its own (one writer for both must be safe
	// for that). After a write error the rest of that stream is discarded;
	// the command runs on until it ends or the caller cancels ctx.
	Stdout, Stderr io.Writer
	// Started, if set, is called once the command runs, before any of its
	// output is written.
	Started func()
}

// ExecStatus says how a command ended.
type ExecStatus struct {
	// Code is the exit code as a shell reports it: 128+n after death by
	// signal n.
	Code int
	// Signal names the signal that killed the command, if any.
	Signal string
}

// Stats is a sandbox's live resource use.
type Stats struct {
	MemoryBytes int64
	CPUUsage    time.Duration
	Pids        int64
}

// StatsReporter is implemented by handles that can report live resource use.
type StatsReporter interface {
	Stats() (Stats, error)
}

// Capabilities is what a backend can do. Callers choose by capability,
// never by a backend's name.
type Capabilities struct {
	// DefaultNetwork is the mode a spec with an empty Network gets.
	DefaultNetwork NetworkMode
	// Networks lists the modes Start accepts.
	Networks []NetworkMode
	// PrivateNetwork is true when a sandbox in any mode but host has a
	// network namespace of its own, so its agent may bind a fixed port
	// such as 8080 without clashing with other sessions.
	PrivateNetwork bool
	// HostPaths is true when the agent sees the host's filesystem as berth
	// does, at the same paths, so a host directory or socket reaches it
	// without a Mount. When false, only Spec.Mounts reliably expose one.
	HostPaths bool
	// Mounts is true when Start honours Spec.Mounts.
	Mounts bool
	// Images is true when Start runs Spec.Image.
	Images bool
}

// SharesHostNetwork reports whether a sandbox in mode shares the host's
// network, so its agent must listen on $PORT rather than a fixed port.
func (c Capabilities) SharesHostNetwork(mode NetworkMode) bool {
	if mode == "" {
		mode = c.DefaultNetwork
	}
	return mode == NetworkHost || !c.PrivateNetwork
}

// DefaultPort is the agent's port in a private network when Spec.Port is
// 0: AgentCore's HTTP contract.
const DefaultPort = 8080

// Backend starts sandboxes.
type Backend interface {
	// Name is the backend's config name: "process" or "linux". It names the
	// backend in config, records and logs; behaviour follows Capabilities.
	Name() string
	// Capabilities says what this backend can do.
	Capabilities() Capabilities
	// Start creates the sandbox and starts its agent. It returns once the
	// agent process runs; health is the caller's concern.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Attach takes charge again of a sandbox that an earlier backend
	// instance over the same state (a berth process since restarted)
	// started, by its handle ID. The new handle serves, reports and stops
	// the sandbox like the one Start returned. It fails with ErrNotFound
	// when the sandbox no longer runs.
	Attach(ctx context.Context, id string) (Handle, error)
	// Reap removes whatever a previous berth process left behind: processes,
	// directories, cgroups, mounts. It runs at start, before any Start, and
	// after any Attach: it spares only the sandboxes this instance holds.
	Reap(ctx context.Context) error
}

// HiddenPaths are host paths no isolating sandbox shows its agent: host
// daemons' sockets, and secrets the sandbox's uid 0 could read as their
// owner when no user namespace is in use. The registry refuses code and
// mounts that would reach into them.
var HiddenPaths = []string{"/run", "/var/run", "/root", "/etc/shadow", "/etc/gshadow", "/etc/ssh"}

var (
	// ErrUnsupported means a backend cannot run here or cannot honour a spec.
	ErrUnsupported = errors.New("unsupported by this sandbox backend")
	// ErrNotFound means Attach found no running sandbox by that ID.
	ErrNotFound = errors.New("sandbox not found")
)

// Name derives a sandbox's name from its runtime and session. It is the one
// function that makes sandbox names, so every backend finds leftovers the
// same way.
func Name(runtimeID, sessionID string) string {
	sum := sha256.Sum256([]byte(runtimeID + "\x00" + sessionID))
	return namePrefix + hex.EncodeToString(sum[:nameBytes])
}

const (
	namePrefix = "b"
	nameBytes  = 8
)

// ValidName reports whether name is one Name could have made. Backends
// refuse other names, and never reap what does not look like one.
func ValidName(name string) bool {
	hexPart, ok := strings.CutPrefix(name, namePrefix)
	if !ok || len(hexPart) != 2*nameBytes {
		return false
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
