// Package sandboxtest is the conformance suite every sandbox backend runs,
// plus the test agent it drives. A backend's test calls
//
//	sandboxtest.Run(t, func(t *testing.T) sandbox.Backend {
//		return mybackend.New(sandboxtest.Root(t), logger)
//	})
//
// and gets subtests that start real agent processes and check the contract
// in package sandbox: reachability, environment, isolation of scratch dirs,
// log capture, exit reporting, teardown of the whole process tree (with
// grandchildren that left the agent's process group), Reap of leftovers,
// Reap after a berth process was SIGKILLed (with BerthMain in TestMain),
// Attach from a second backend instance, parallel starts and goroutine
// hygiene.
//
// The suite finds a sandbox's processes from the host through /proc, by a
// token it puts in Spec.Env (SANDBOXTEST_TOKEN), so a backend must pass
// Spec.Env to the agent unchanged; PIDs reported from inside a sandbox are
// never trusted. Process-tree checks skip, saying so, where there is no
// procfs, and for a backend whose agents run in the test process
// (Options.InProcess).
//
// The agent (testagent/) is driven by the JSON payload of each invocation;
// see its package doc for the ops. BuildAgent compiles it.
package sandboxtest

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

//go:embed testagent/main.go
var agentSource []byte

var (
	buildOnce sync.Once
	agentPath string
	buildErr  error
)

// BuildAgent compiles the test agent (static, standard library only) and
// returns the path of the binary. It builds at most once per test process;
// the binary is cached under the user cache dir, keyed by the agent's
// source and the toolchain, so other test binaries and later runs reuse it.
// The cache is outside /tmp on purpose: a backend that gives sandboxes a
// private /tmp must still be able to exec it.
func BuildAgent(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { agentPath, buildErr = buildAgent() })
	if buildErr != nil {
		t.Fatalf("build test agent: %v", buildErr)
	}
	return agentPath
}

func buildAgent() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	h.Write(agentSource)
	key := hex.EncodeToString(h.Sum(nil))[:16]

	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "berth-sandboxtest", key)
	bin := filepath.Join(dir, "testagent")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}

	// Build from the embedded source in a throwaway module, so the build
	// needs neither the repository's go.mod nor the caller's working dir.
	src, err := os.MkdirTemp(dir, "src-")
	if err != nil {
		return "", fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), agentSource, 0o644); err != nil {
		return "", fmt.Errorf("write agent source: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module testagent\n\ngo 1.26\n"), 0o644); err != nil {
		return "", fmt.Errorf("write go.mod: %w", err)
	}
	out := filepath.Join(src, "testagent")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, msg)
	}
	// Rename is atomic, so concurrent test processes never see half a file.
	if err := os.Rename(out, bin); err != nil {
		return "", fmt.Errorf("install agent binary: %w", err)
	}
	return bin, nil
}

// goTool finds the go command: on PATH (go test puts GOROOT/bin first),
// else under $GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

var (
	// rootsMu guards roots.
	rootsMu sync.Mutex
	roots   = map[testing.TB]string{}
)

// Root returns the backend root directory for t: the same path every time
// it is called with the same t, removed when t ends. Backend factories
// passed to Run use it so that two backend instances made in one subtest
// share a root, which is how the Reap subtest simulates a restarted berth.
func Root(t testing.TB) string {
	t.Helper()
	rootsMu.Lock()
	defer rootsMu.Unlock()
	if dir, ok := roots[t]; ok {
		return dir
	}
	dir := filepath.Join(t.TempDir(), "root")
	roots[t] = dir
	t.Cleanup(func() {
		rootsMu.Lock()
		delete(roots, t)
		rootsMu.Unlock()
	})
	return dir
}

// installAgent places the agent binary in dir as "testagent", by hard link
// when it can and by copy otherwise, so specs can name it relative to Dir.
func installAgent(bin, dir string) error {
	dst := filepath.Join(dir, "testagent")
	if err := os.Link(bin, dst); err == nil {
		return nil
	} else if errors.Is(err, fs.ErrExist) {
		return err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read agent binary: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return fmt.Errorf("copy agent binary: %w", err)
	}
	return nil
}

// spawnEscapees has the agent start two sleepers that ignore SIGTERM and
// leave its process group: one in a session of its own, one orphaned by a
// double fork. It waits until both run and returns the tags that name them
// in their command lines.
func (b *box) spawnEscapees(prefix string) []string {
	b.t.Helper()
	var tags []string
	for _, detach := range []string{"setsid", "double-fork"} {
		tag := prefix + "-" + detach + "-" + b.token
		b.mustInvoke(map[string]any{"op": "spawn", "tag": tag, "ignore_term": true, "detach": detach})
		tags = append(tags, tag)
	}
	requireTagged(b.t, tags...)
	return tags
}
