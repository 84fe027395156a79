package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

// exports reads `export K=V` lines.
func exports(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 {
			t.Fatalf("not an export line: %q", line)
		}
		m[k] = v
	}
	return m
}

// berth credentials create writes a key the server takes, and the client
// commands sign with it from the environment, as an AWS SDK would.
func TestCredentialsCreateAndASigningCLI(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "berth-credentials")
	out, errOut, err := berth(t, "credentials", "create", "alice", "--file", file, "--endpoint", "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	env := exports(t, out)
	if !strings.HasPrefix(env["AWS_ACCESS_KEY_ID"], "BKIA") || len(env["AWS_SECRET_ACCESS_KEY"]) != 40 || env["AWS_REGION"] != config.DefaultRegion ||
		env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"] != "http://127.0.0.1:1" || !strings.Contains(errOut, "alice added") {
		t.Fatalf("exports %v, stderr %q", env, errOut)
	}
	if _, _, err := berth(t, "credentials", "create", "alice", "--file", file); err == nil {
		t.Fatal("a second alice was created")
	}

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Auth = &config.Auth{CredentialsFile: file, Admins: []string{"alice"}}
	cfg.Runtimes = []config.Runtime{{Name: "echo", Settings: registry.Settings{Command: []string{sandboxtest.BuildAgent(t)}}}}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })

	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // invoke's remembered sessions
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("BERTH_ENDPOINT", d.URL())
	t.Setenv("AWS_REGION", env["AWS_REGION"])
	t.Setenv("AWS_ACCESS_KEY_ID", env["AWS_ACCESS_KEY_ID"])
	t.Setenv("AWS_SECRET_ACCESS_KEY", env["AWS_SECRET_ACCESS_KEY"])
	if out, _, err := berth(t, "invoke", "--runtime", "echo", `{"op":"echo"}`); err != nil || !strings.Contains(out, `"count":1`) {
		t.Fatalf("signed invoke: %v %q", err, out)
	}
	if out, _, err := berth(t, "runtimes", "list"); err != nil || !strings.Contains(out, "echo") {
		t.Fatalf("signed runtimes list: %v %q", err, out)
	}
	if out, _, err := berth(t, "sessions", "list"); err != nil || !strings.Contains(out, "sigv4:alice") {
		t.Fatalf("signed sessions list: %v %q", err, out)
	}
	// A payload from standard input streams as UNSIGNED-PAYLOAD.
	root := newRoot()
	root.SetIn(strings.NewReader(`{"op":"echo"}`))
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"invoke", "--runtime", "echo", "-"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("signed invoke from stdin: %v", err)
	}

	t.Setenv("AWS_SECRET_ACCESS_KEY", strings.Repeat("x", 40))
	if _, _, err := berth(t, "invoke", "--runtime", "echo", `{"op":"echo"}`); err == nil || !strings.Contains(err.Error(), "InvalidSignatureException") {
		t.Fatalf("a wrong secret: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, _, err := berth(t, "invoke", "--runtime", "echo", `{"op":"echo"}`); err == nil || !strings.Contains(err.Error(), "MissingAuthenticationTokenException") {
		t.Fatalf("no credentials: %v", err)
	}
}

// A listen other machines can reach needs an auth section; the refusal
// shows what to add.
func TestServeRefusesAPublicListenWithoutAuth(t *testing.T) {
	_, _, err := berth(t, "serve", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "auth:\n    mode: sigv4\n    credentials_file:") {
		t.Fatalf("serve on 0.0.0.0 without auth: %v", err)
	}
}

// --init-credentials turns authentication on with a fresh admin key, once.
func TestInitCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	key, err := initAuth(&cfg)
	if err != nil || key == nil || cfg.AuthMode() != auth.ModeSigV4 || cfg.Auth.Admins[0] != key.Name {
		t.Fatalf("key %+v, auth %+v, %v", key, cfg.Auth, err)
	}
	k, err := auth.OpenKeyring(cfg.Auth.CredentialsFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := k.Lookup(key.AccessKeyID); !ok || got != *key {
		t.Fatalf("the file holds %+v", got)
	}
	again := config.Default()
	again.DataDir = cfg.DataDir
	if key, err := initAuth(&again); err != nil || key != nil || again.Auth.CredentialsFile != cfg.Auth.CredentialsFile {
		t.Fatalf("second start: %+v %v", key, err)
	}
}
