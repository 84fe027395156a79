package compat_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/session"
)

// repoRoot is the module root, found from the package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working dir: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working dir")
		}
		dir = parent
	}
}

// requireNode skips when node or npm is missing: these tests exercise code
// that only exists as npm packages.
func requireNode(t *testing.T) (node string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the AgentCore TypeScript SDK and AWS SDK for JS v3 tests need node 20+ and npm")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: the AgentCore TypeScript SDK and AWS SDK for JS v3 tests need node 20+ and npm")
	}
	return node
}

// npmInstalls serialises installs within this test binary; installs from
// other processes are made safe by the atomic rename in installNPM.
var npmInstalls sync.Mutex

// npmModules installs the npm project in the repository directory rel (its
// package.json and package-lock.json, exactly as locked) and returns its
// node_modules directory. Installs land in the user cache under a key made
// of both files and the node version, so a rerun costs a stat; a clean
// machine pays one `npm ci`.
func npmModules(t *testing.T, rel string) string {
	t.Helper()
	npmInstalls.Lock()
	defer npmInstalls.Unlock()

	src := filepath.Join(repoRoot(t), rel)
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("read npm project %s: %v", rel, err)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	ver, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	h.Write(ver)
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	root := filepath.Join(base, "berth", "npm")
	final := filepath.Join(root, filepath.Base(rel)+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	modules := filepath.Join(final, "node_modules")
	if fi, err := os.Stat(modules); err == nil && fi.IsDir() {
		return modules
	}
	if err := installNPM(t, src, root, final); err != nil {
		t.Fatalf("install npm project %s: %v", rel, err)
	}
	return modules
}

// installNPM runs `npm ci` on a copy of the project in a staging dir and
// renames it into place, so a half-finished install is never used.
func installNPM(t *testing.T, src, root, final string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(root, ".install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage) // a no-op once renamed
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stage, name), b, 0o644); err != nil {
			return err
		}
	}
	// Not writable by "other" is fine: sandboxes run as uid 0 without a user
	// namespace here. Make it traversable for the user-namespace case too.
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// --ignore-scripts: nothing in these trees needs an install script, and
	// none should run on a test machine.
	cmd := exec.CommandContext(ctx, "npm", "ci", "--prefer-offline", "--no-audit", "--no-fund",
		"--ignore-scripts", "--loglevel=error")
	cmd.Dir = stage
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return errors.New("npm ci: " + err.Error() + "\n" + out.String())
	}
	t.Logf("npm ci %s: %s", filepath.Base(src), time.Since(start).Round(time.Millisecond))
	if err := os.Rename(stage, final); err != nil {
		if _, statErr := os.Stat(filepath.Join(final, "node_modules")); statErr == nil {
			return nil // another process installed it first
		}
		return err
	}
	return nil
}

// stageNodeProject copies the npm project at rel (its sources, not its
// node_modules) into a fresh directory and links node_modules to the cached
// install. Mounts makes that install visible inside linux sandboxes, which
// hide the host's /root (where the user cache usually is).
func stageNodeProject(t *testing.T, rel string, files ...string) (dir string, mounts []config.Mount) {
	t.Helper()
	modules := npmModules(t, rel)
	src := filepath.Join(repoRoot(t), rel)
	dir = t.TempDir()
	for _, name := range append([]string{"package.json"}, files...) {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatalf("stage %s: %v", name, err)
		}
	}
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatalf("link node_modules: %v", err)
	}
	// The sandbox reads the code dir through a bind mount; 0700 from
	// t.TempDir would do for uid 0, but keep it readable like real code.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", dir, err)
	}
	cached := filepath.Dir(modules)
	return dir, []config.Mount{{Source: cached, Target: cached, ReadOnly: true}}
}

// buildTutorial builds examples/tutorial, berth's Go twin of the tutorial agent.
func buildTutorial(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tutorial")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/tutorial")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build examples/tutorial: %v\n%s", err, out)
	}
	return bin
}

// berth is a real berth server on loopback.
type berth struct {
	t      *testing.T
	d      *daemon.Daemon
	client *bedrockagentcore.Client
}

// startBerth starts berth with runtimes and fast health checks; mutate
// adjusts the config further.
func startBerth(t *testing.T, runtimes []config.Runtime, mutate ...func(*config.Config)) *berth {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	// node starts in a few hundred ms; leave room for a loaded machine.
	cfg.StartTimeout = config.Duration(20 * time.Second)
	cfg.PingInterval = config.Duration(200 * time.Millisecond)
	cfg.StopGrace = config.Duration(2 * time.Second)
	cfg.Runtimes = runtimes
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start berth: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("close berth: %v", err)
		}
	})
	return &berth{t: t, d: d, client: bedrockagentcore.New(bedrockagentcore.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(d.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDBERTHCOMPAT", "secret", ""),
		Retryer:      aws.NopRetryer{},
	})}
}

func (b *berth) arn(name string) string {
	for _, rt := range b.d.Runtimes() {
		if rt.Name == name {
			return rt.ARN
		}
	}
	b.t.Fatalf("no runtime %q", name)
	return ""
}

// live reports the live session with this ID, if any.
func (b *berth) live(sessionID string) (session.Info, bool) {
	for _, in := range b.d.Sessions().Live() {
		if in.SessionID == sessionID {
			return in, true
		}
	}
	return session.Info{}, false
}

// clientEnv is an environment for SDK client processes that finds no real
// AWS configuration or credentials, only dummies.
func clientEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID=AKIDBERTHCOMPAT",
		"AWS_SECRET_ACCESS_KEY=secret",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE="+os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE="+os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	)
	return append(env, extra...)
}
