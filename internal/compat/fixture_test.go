package compat_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/testenv"
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

// requireNode states that t needs node 20+ and npm: these tests exercise
// code that only exists as npm packages, and fastify 5 (under AWS's
// TypeScript SDK) needs node 20.
func requireNode(t *testing.T) (node string) {
	t.Helper()
	node, err := exec.LookPath("node")
	testenv.Require(t, testenv.Node, err)
	_, err = exec.LookPath("npm")
	testenv.Require(t, testenv.Node, err)
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	ver := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(ver, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 20 {
		testenv.Require(t, testenv.Node, fmt.Errorf("node is %s; fastify 5 under AWS's TypeScript SDK needs 20 or later", ver))
	}
	return node
}

// npmInstalls serialises installs within this test binary; installs from
// other processes are made safe by the atomic rename in installNPM.
var npmInstalls sync.Mutex

// npmProject installs the npm project in the repository directory rel:
// package.json and package-lock.json (installed exactly as locked) and the
// source files named. It returns a directory holding all of them and
// node_modules, ready to run as an agent's code directory on any sandbox
// backend. Installs land in the user cache under a key made of those files
// and the node version, so a rerun costs a stat and a clean machine pays
// one `npm ci`.
func npmProject(t *testing.T, rel string, files ...string) string {
	t.Helper()
	npmInstalls.Lock()
	defer npmInstalls.Unlock()

	src := filepath.Join(repoRoot(t), rel)
	names := append([]string{"package.json", "package-lock.json"}, files...)
	h := sha256.New()
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("read npm project %s: %v", rel, err)
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
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
	if fi, err := os.Stat(filepath.Join(final, "node_modules")); err == nil && fi.IsDir() {
		return final
	}
	if err := installNPM(t, src, names, root, final); err != nil {
		t.Fatalf("install npm project %s: %v", rel, err)
	}
	return final
}

// installNPM runs `npm ci` on a copy of the project in a staging dir and
// renames it into place, so a half-finished install is never used.
func installNPM(t *testing.T, src string, names []string, root, final string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(root, ".install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage) // a no-op once renamed
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stage, name), b, 0o644); err != nil {
			return err
		}
	}
	// Readable like any code dir (MkdirTemp makes it 0700), which a
	// sandbox with a user namespace needs.
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
	return &berth{d: d, client: bedrockagentcore.New(bedrockagentcore.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(d.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDBERTHCOMPAT", "secret", ""),
		Retryer:      aws.NopRetryer{},
	})}
}

func (b *berth) arn(t *testing.T, name string) string {
	t.Helper()
	for _, rt := range b.d.Runtimes() {
		if rt.Name == name {
			return rt.ARN
		}
	}
	t.Fatalf("no runtime %q", name)
	return ""
}

// live reports the live session with this ID, if any, as berth's
// session API shows it.
func (b *berth) live(sessionID string) (api.Session, bool) {
	cl := &client.Client{Endpoint: b.d.URL()}
	list, err := cl.ListSessions(context.Background(), client.SessionFilter{State: "live", Limit: 1000})
	if err != nil {
		panic(fmt.Sprintf("list sessions: %v", err))
	}
	for _, s := range list.Sessions {
		if s.SessionID == sessionID {
			return s, true
		}
	}
	return api.Session{}, false
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
