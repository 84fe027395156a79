package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/testenv"
)

// storageMount is where the runtimes the SDKs create mount session storage.
const storageMount = "/mnt/data"

// storageStep is one call of a storage plan: an invocation with Payload,
// or with Stop a StopRuntimeSession.
type storageStep struct {
	Name    string         `json:"name"`
	Session string         `json:"session"`
	Payload map[string]any `json:"payload,omitempty"`
	Stop    bool           `json:"stop,omitempty"`
}

// storagePlan is what the SDK scripts read: the runtime to create through
// the control plane, then the steps to run against it, in order.
type storagePlan struct {
	Name       string        `json:"name"`
	Prefix     string        `json:"prefix"`
	EntryPoint []string      `json:"entryPoint"`
	MountPath  string        `json:"mountPath"`
	Steps      []storageStep `json:"steps"`
}

// storageReport is what an SDK made of the plan.
type storageReport struct {
	ARN                      string                        `json:"arn"`
	Status                   string                        `json:"status"`
	FilesystemConfigurations []api.FilesystemConfiguration `json:"filesystemConfigurations"`
	Steps                    map[string]struct {
		Result  map[string]any `json:"result"`
		Error   string         `json:"error"`
		Status  int            `json:"status"`
		Message string         `json:"message"`
	} `json:"steps"`
}

// storageBerth serves API runtimes with session storage: the test agent
// is the code in a directory under the code root. It returns that
// directory.
func storageBerth(t *testing.T) (*berth, string) {
	t.Helper()
	testenv.Require(t, testenv.Linux, linux.Available())
	testenv.Require(t, testenv.Root, storage.Available())
	bin, err := os.ReadFile(sandboxtest.BuildAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	codeRoot := t.TempDir()
	dir := filepath.Join(codeRoot, "agent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testagent"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	b := startBerth(t, nil, func(c *config.Config) {
		c.CodeRoots = []string{codeRoot}
		c.SessionStorageMaxBytes = 32 << 20
	})
	return b, dir
}

// storageSteps: a session writes under the mount path, is stopped, and
// reads its file back in a new sandbox; another session cannot see it.
func storageSteps() []storageStep {
	file := storageMount + "/notes.txt"
	read := map[string]any{"op": "read", "path": file}
	one, two := newSessionID(), newSessionID()
	return []storageStep{
		{Name: "first read", Session: one, Payload: read},
		{Name: "write", Session: one, Payload: map[string]any{"op": "write", "path": file, "data": "kept"}},
		{Name: "stop", Session: one, Stop: true},
		{Name: "read after stop", Session: one, Payload: read},
		{Name: "echo after stop", Session: one, Payload: map[string]any{"op": "echo"}},
		{Name: "other session", Session: two, Payload: read},
	}
}

// runStorageClient runs an SDK script over plan and decodes its report.
func runStorageClient(t *testing.T, b *berth, plan storagePlan, name string, args ...string) storageReport {
	t.Helper()
	in, _ := json.Marshal(plan)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, append(args, b.d.URL())...)
	cmd.Env = clientEnv()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(name), err, stderr.String())
	}
	t.Logf("%s: %s", filepath.Base(args[len(args)-1]), time.Since(start).Round(time.Millisecond))
	var got storageReport
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	return got
}

// checkStorage checks an SDK's report against its plan.
func checkStorage(t *testing.T, plan storagePlan, got storageReport) {
	t.Helper()
	if !strings.Contains(got.ARN, ":runtime/"+plan.Name+"-") || got.Status != "READY" {
		t.Fatalf("created %q, status %q; want a READY runtime named %s", got.ARN, got.Status, plan.Name)
	}
	want := []api.FilesystemConfiguration{{SessionStorage: &api.SessionStorage{MountPath: plan.MountPath}}}
	if !reflect.DeepEqual(got.FilesystemConfigurations, want) {
		t.Errorf("GetAgentRuntime echoed filesystemConfigurations %+v, want %+v", got.FilesystemConfigurations, want)
	}
	for _, s := range plan.Steps {
		r, ok := got.Steps[s.Name]
		if !ok {
			t.Errorf("%s: no outcome", s.Name)
			continue
		}
		// The agent answers 404 for a missing file; berth relays it as
		// AgentCore does, with the agent's message.
		missing := r.Error == string(api.ErrRuntimeClient) && r.Status == 424 && strings.Contains(r.Message, "no such file")
		switch s.Name {
		case "first read":
			if !missing {
				t.Errorf("a new session's storage holds the file: %+v", r)
			}
		case "write":
			if r.Error != "" || r.Result["ok"] != true {
				t.Errorf("write under %s: %+v", plan.MountPath, r)
			}
		case "stop":
			if r.Error != "" || r.Result["runtimeSessionId"] != s.Session {
				t.Errorf("StopRuntimeSession: %+v", r)
			}
		case "read after stop":
			if r.Error != "" || r.Result["data"] != "kept" {
				t.Errorf("after StopRuntimeSession the session's storage holds %+v, want the file it wrote", r)
			}
		case "echo after stop":
			// The agent counts its calls: 2 (the read, then this) shows
			// the read came from a fresh sandbox, not the stopped one.
			if r.Error != "" || r.Result["count"] != 2.0 {
				t.Errorf("the session after a stop: %+v, want a fresh agent on its second call", r)
			}
		case "other session":
			if !missing {
				t.Errorf("another session sees the file: %+v", r)
			}
		default:
			t.Fatalf("unchecked step %q", s.Name)
		}
	}
}

// TestSessionStorageBoto3: a runtime created through boto3's control
// plane with filesystemConfigurations gets per-session storage that
// survives StopRuntimeSession, driven through boto3's data plane.
func TestSessionStorageBoto3(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	b, dir := storageBerth(t)
	plan := storagePlan{Name: "storedboto", Prefix: dir, EntryPoint: []string{"testagent"}, MountPath: storageMount, Steps: storageSteps()}
	script := filepath.Join(repoRoot(t), "internal", "compat", "testdata", "storage_client.py")
	checkStorage(t, plan, runStorageClient(t, b, plan, python, script))
}

// TestSessionStorageJSv3 does the same through the AWS SDK for
// JavaScript v3: @aws-sdk/client-bedrock-agentcore-control and
// @aws-sdk/client-bedrock-agentcore.
func TestSessionStorageJSv3(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	// AWS's bedrock-agentcore package depends on both clients, so the
	// TypeScript agent's install holds them.
	project := npmProject(t, tsAgentDir, "agent.js")
	b, dir := storageBerth(t)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "compat", "testdata", "storage-client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	scriptDir := t.TempDir()
	script := filepath.Join(scriptDir, "storage-client.mjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(project, "node_modules"), filepath.Join(scriptDir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	plan := storagePlan{Name: "storedjs", Prefix: dir, EntryPoint: []string{"testagent"}, MountPath: storageMount, Steps: storageSteps()}
	checkStorage(t, plan, runStorageClient(t, b, plan, node, script))
}
