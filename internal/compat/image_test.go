package compat_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/image/imagetest"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
)

// hostPython is the Debian interpreter the Python image is built from.
const hostPython = "/usr/bin/python3.11"

// pythonImage is examples/python-stdlib as a container image built from
// the host's own python3: the interpreter and the shared libraries ldd
// names, its standard library, and the agent, in layers; run as a user
// of its own.
func pythonImage(t *testing.T) v1.Image {
	t.Helper()
	if _, err := os.Stat(hostPython); err != nil {
		testenv.Require(t, testenv.Python3, err)
	}
	stdlib := "/usr/lib/python3.11"
	dynload, _ := filepath.Glob(filepath.Join(stdlib, "lib-dynload", "*.so"))
	skip := func(rel string, d fs.DirEntry) bool {
		switch rel {
		case "lib-dynload", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data":
			return true
		}
		return d.Name() == "__pycache__"
	}
	runtime := append(imagetest.HostFiles(t, append([]string{hostPython}, dynload...)...),
		imagetest.Symlink("usr/bin/python3", "python3.11"))
	runtime = append(runtime, imagetest.Tree(t, stdlib, stdlib, skip)...)
	agent, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "python-stdlib", "agent.py"))
	if err != nil {
		t.Fatal(err)
	}
	app := imagetest.Layer(t,
		imagetest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n", 0o644),
		imagetest.File("etc/group", "root:x:0:\nagent:x:1000:\n", 0o644),
		imagetest.Entry{Path: "home/agent", Type: '5', Mode: 0o755, UID: 1000, GID: 1000},
		imagetest.File("app/agent.py", string(agent), 0o644),
	)
	return imagetest.Image(t, "linux/amd64", v1.Config{
		Entrypoint: []string{"python3"},
		Cmd:        []string{"/app/agent.py"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"},
		WorkingDir: "/app",
		User:       "agent",
	}, imagetest.Layer(t, runtime...), app)
}

// createScript creates a runtime from a container image through boto3's
// control plane, waits for it to be READY and prints its ARN.
const createScript = `
import sys, boto3
ctl = boto3.client("bedrock-agentcore-control", endpoint_url=sys.argv[1])
out = ctl.create_agent_runtime(
    agentRuntimeName=sys.argv[2],
    agentRuntimeArtifact={"containerConfiguration": {"containerUri": sys.argv[3]}},
    roleArn="arn:aws:iam::123456789012:role/AgentRuntimeRole",
    networkConfiguration={"networkMode": "PUBLIC"},
)
got = ctl.get_agent_runtime(agentRuntimeId=out["agentRuntimeId"])
assert got["status"] == "READY", got["status"]
assert got["agentRuntimeArtifact"]["containerConfiguration"]["containerUri"] == sys.argv[3], got["agentRuntimeArtifact"]
print(out["agentRuntimeArn"])
`

// TestPythonImageTutorial: the Python standard-library agent, built into
// an image from the host's python3, deployed through boto3's control
// plane (containerConfiguration), serves the tutorial's four steps
// through boto3.
func TestPythonImageTutorial(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	testenv.Require(t, testenv.Linux, linux.Available())
	reg := imagetest.NewRegistry(t, nil)
	ref := reg.Ref("team/pyagent:v1")
	reg.Push(t, "team/pyagent:v1", pythonImage(t))
	b := startBerth(t, nil, func(cfg *config.Config) { cfg.APIRuntimes.Registries = []string{reg.Host} })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", createScript, b.d.URL(), "pyimage", ref)
	cmd.Env = clientEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("create through boto3: %v\n%s", err, stderr.String())
	}
	arn := strings.TrimSpace(stdout.String())
	if !strings.Contains(arn, ":runtime/pyimage-") {
		t.Fatalf("create printed %q", arn)
	}
	script := filepath.Join(repoRoot(t), "examples", "clients", "tutorial_client.py")
	r := runClient(t, clientEnv(), python, script, "--json", "--endpoint-url", b.d.URL(), "--arn", arn)
	checkTutorial(t, b, r, b.d.URL())
}

// TestTypeScriptImage: the agent on AWS's bedrock-agentcore npm package,
// built into an image (node from the host with the libraries ldd names,
// then node_modules and the agent) and declared with image: in the config
// file, serves sessions of its own, each in its own sandbox and layer.
func TestTypeScriptImage(t *testing.T) {
	t.Parallel()
	testenv.Require(t, testenv.Linux, linux.Available())
	node := requireNode(t)
	node, err := filepath.EvalSymlinks(node)
	if err != nil {
		t.Fatal(err)
	}
	dir := npmProject(t, tsAgentDir, "agent.js")
	runtime := imagetest.HostFiles(t, node)
	if node != "/usr/bin/node" {
		runtime = append(runtime, imagetest.Symlink("usr/bin/node", node))
	}
	reg := imagetest.NewRegistry(t, nil)
	img := imagetest.Image(t, "linux/amd64", v1.Config{
		Entrypoint: []string{"node", "agent.js"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		WorkingDir: "/app",
	}, imagetest.Layer(t, runtime...),
		imagetest.Layer(t, imagetest.Tree(t, dir, "/app", nil)...))
	reg.Push(t, "team/tsagent:v1", img)
	b := startBerth(t, []config.Runtime{{Name: "tsimage", Settings: registry.Settings{
		Image: reg.Ref("team/tsagent:v1"), Sandbox: registry.BackendLinux, Env: map[string]string{"LOG_LEVEL": "warn"}}}})

	one, two := newSessionID(), newSessionID()
	a := b.tsInvoke(t, "tsimage", one, map[string]any{"prompt": "hello"})
	again := b.tsInvoke(t, "tsimage", one, map[string]any{"prompt": "again"})
	other := b.tsInvoke(t, "tsimage", two, map[string]any{"prompt": "hello"})
	if a.Instance == "" || again.Instance != a.Instance || again.Invocations != a.Invocations+1 {
		t.Errorf("one session, two calls: %+v then %+v; want one agent counting on", a, again)
	}
	if other.Instance == a.Instance || other.Invocations != 1 {
		t.Errorf("a second session shares the first one's agent: %+v", other)
	}
}
