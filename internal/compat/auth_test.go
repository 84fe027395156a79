package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// boto3 and the AWS SDK for JavaScript v3 against a berth that verifies
// SigV4: real keys are served; a wrong secret, an unknown key, a clock ten
// minutes slow and a principal outside a runtime's invokers get the error
// each SDK raises from AWS; WebSocket URLs each SDK presigns open a socket,
// and altered ones do not.

// compatWSAgentArg makes this test binary a WebSocket agent that greets.
const compatWSAgentArg = "berth-compat-ws-agent"

func init() {
	if len(os.Args) > 1 && os.Args[1] == compatWSAgentArg {
		a := app.New(app.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
		a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) { return map[string]string{"ok": "yes"}, nil })
		a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
			return conn.WriteJSON(ctx, map[string]string{"hello": app.RequestFrom(ctx).SessionID})
		})
		if err := a.Run(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// authBerth serves echo (anyone), private (alice only) and ws (a
// WebSocket agent) with authentication on.
func authBerth(t *testing.T) (*berth, map[string]auth.Key) {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "credentials")
	keys := map[string]auth.Key{}
	for _, n := range []string{"ops", "alice", "bob"} {
		k, err := auth.CreateProfile(creds, n)
		if err != nil {
			t.Fatal(err)
		}
		keys[n] = k
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent := sandboxtest.BuildAgent(t)
	b := startBerth(t, []config.Runtime{
		{Name: "echo", Settings: registry.Settings{Command: []string{agent}, Sandbox: registry.BackendProcess}},
		{Name: "private", Settings: registry.Settings{Command: []string{agent}, Sandbox: registry.BackendProcess, Invokers: []string{"alice"}}},
		{Name: "ws", Settings: registry.Settings{Command: []string{exe, compatWSAgentArg}, Sandbox: registry.BackendProcess}},
	}, func(c *config.Config) {
		c.Auth = &config.Auth{CredentialsFile: creds, Admins: []string{"ops"}}
	})
	return b, keys
}

type sdkOutcome struct {
	OK           bool   `json:"ok"`
	Code         string `json:"code"`
	Status       int    `json:"status"`
	Message      string `json:"message"`
	PayloadBytes int    `json:"payload_bytes"`
	URL          string `json:"url"`
}

type sdkCase struct {
	Name        string `json:"name"`
	AccessKey   string `json:"access_key"`
	SecretKey   string `json:"secret_key"`
	ARN         string `json:"arn"`
	SkewSeconds int    `json:"skew_seconds,omitempty"`
	Retries     bool   `json:"retries,omitempty"`
	Pad         int    `json:"pad,omitempty"`
	Presign     bool   `json:"presign,omitempty"`
	SessionID   string `json:"session_id,omitempty"`
}

func cases(b *berth, t *testing.T, keys map[string]auth.Key, sid string) []sdkCase {
	alice, bob := keys["alice"], keys["bob"]
	stranger := auth.NewKey("stranger")
	echo, private, ws := b.arn(t, "echo"), b.arn(t, "private"), b.arn(t, "ws")
	return []sdkCase{
		{Name: "right keys", AccessKey: alice.AccessKeyID, SecretKey: alice.SecretAccessKey, ARN: echo},
		{Name: "wrong secret", AccessKey: alice.AccessKeyID, SecretKey: bob.SecretAccessKey, ARN: echo},
		{Name: "unknown key", AccessKey: stranger.AccessKeyID, SecretKey: stranger.SecretAccessKey, ARN: echo},
		{Name: "clock 10 minutes slow", AccessKey: alice.AccessKeyID, SecretKey: alice.SecretAccessKey, ARN: echo, SkewSeconds: -600},
		{Name: "not an invoker", AccessKey: bob.AccessKeyID, SecretKey: bob.SecretAccessKey, ARN: private},
		{Name: "an invoker", AccessKey: alice.AccessKeyID, SecretKey: alice.SecretAccessKey, ARN: private},
		{Name: "3 MB payload", AccessKey: alice.AccessKeyID, SecretKey: alice.SecretAccessKey, ARN: echo, Pad: 3 << 20},
		{Name: "presign", AccessKey: alice.AccessKeyID, SecretKey: alice.SecretAccessKey, ARN: ws, Presign: true, SessionID: sid},
	}
}

// runSDK runs a client script on cases and decodes its report.
func runSDK(t *testing.T, cs []sdkCase, name string, args ...string) map[string]sdkOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, _ := json.Marshal(cs)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = clientEnv()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(name), err, stderr.String())
	}
	var out map[string]sdkOutcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("decode report: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	return out
}

// checkSDK checks what an SDK raised for each case, and logs the table.
func checkSDK(t *testing.T, sdk string, b *berth, sid string, got map[string]sdkOutcome) {
	t.Helper()
	for _, want := range []struct {
		name, code, says string
	}{
		{"right keys", "", ""},
		{"an invoker", "", ""},
		{"3 MB payload", "", ""},
		{"wrong secret", "InvalidSignatureException", "does not match"},
		{"unknown key", "UnrecognizedClientException", "security token included in the request is invalid"},
		{"clock 10 minutes slow", "InvalidSignatureException", "Signature expired"},
		{"not an invoker", "AccessDeniedException", "not among the runtime's invokers"},
	} {
		o := got[want.name]
		t.Logf("%s, %s: ok=%v %s %d %q", sdk, want.name, o.OK, o.Code, o.Status, o.Message)
		switch {
		case want.code == "" && !o.OK:
			t.Errorf("%s: refused: %+v", want.name, o)
		case want.code != "" && (o.OK || o.Code != want.code || o.Status != 403 || !strings.Contains(o.Message, want.says)):
			t.Errorf("%s: %+v, want %s (403) saying %q", want.name, o, want.code, want.says)
		}
	}
	if o := got["3 MB payload"]; o.OK && o.PayloadBytes < 3<<20 {
		t.Errorf("the agent got %d bytes of a 3 MB payload", o.PayloadBytes)
	}

	// The presigned URL opens the socket; altered, it does not.
	u := got["presign"].URL
	if u == "" {
		t.Fatalf("no presigned URL: %+v", got["presign"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("%s's presigned URL: %v", sdk, err)
	}
	_, data, err := c.Read(ctx)
	c.CloseNow()
	if err != nil || !strings.Contains(string(data), sid) {
		t.Fatalf("hello over %s's presigned socket: %s %v", sdk, data, err)
	}
	altered := strings.Replace(u, sid, "another-"+uuid.NewString(), 1)
	c, resp, err := websocket.Dial(ctx, altered, nil)
	if err == nil {
		c.CloseNow()
		t.Fatalf("an altered presigned URL connected")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden || resp.Header.Get(api.HeaderErrorType) != "InvalidSignatureException" {
		t.Fatalf("an altered presigned URL: %v %v", resp, err)
	}
}

func TestAuthBoto3(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	b, keys := authBerth(t)
	sid := "boto3-" + uuid.NewString()
	got := runSDK(t, cases(b, t, keys, sid), python, filepath.Join(repoRoot(t), "internal", "compat", "testdata", "auth_client.py"), b.d.URL())
	checkSDK(t, "boto3", b, sid, got)
}

func TestAuthJSv3(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	project := npmProject(t, "examples/clients")
	// The script runs beside the project's node_modules.
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "compat", "testdata", "auth-client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "auth-client.mjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(project, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	b, keys := authBerth(t)
	sid := "jsv3-" + uuid.NewString()
	cs := cases(b, t, keys, sid)
	alice := keys["alice"]
	// With retries on, JS v3 reads berth's Date header after a clock-skew
	// error and signs the retry with its clock corrected, as with AWS.
	cs = append(cs, sdkCase{Name: "clock 10 minutes slow, with retries", AccessKey: alice.AccessKeyID, SecretKey: alice.SecretAccessKey,
		ARN: b.arn(t, "echo"), SkewSeconds: -600, Retries: true})
	got := runSDK(t, cs, node, script, b.d.URL())
	checkSDK(t, "JS v3", b, sid, got)
	if o := got["clock 10 minutes slow, with retries"]; !o.OK {
		t.Errorf("JS v3 did not correct its clock from berth's answer: %+v", o)
	}
}
