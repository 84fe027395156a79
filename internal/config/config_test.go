package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/registry"
)

func load(t *testing.T, yaml string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(p)
}

// issueExample is the config file from the issue that asked for one.
const issueExample = `
listen: 127.0.0.1:8787
data_dir: ./.berth
runtimes:
  - name: tutorial
    command: ["./bin/tutorial-agent", "--flag"]
    workdir: ./examples/tutorial
    env: {LOG_LEVEL: info}
    sandbox: process
    idle_timeout: 15m
    max_lifetime: 8h
    header_allowlist: [X-Tenant-Id]
    memory: 512Mi
    cpu: 0.5
`

func TestLoadIssueExample(t *testing.T) {
	c, err := load(t, issueExample)
	if err != nil {
		t.Fatal(err)
	}
	rt := c.Runtimes[0]
	if rt.IdleTimeout.D() != 15*time.Minute || rt.MaxLifetime.D() != 8*time.Hour {
		t.Fatalf("lifetimes %v %v", rt.IdleTimeout.D(), rt.MaxLifetime.D())
	}
	if !filepath.IsAbs(rt.Workdir) || !strings.HasSuffix(rt.Workdir, "examples/tutorial") || !filepath.IsAbs(c.DataDir) {
		t.Fatalf("paths not resolved against the file: %q %q", rt.Workdir, c.DataDir)
	}
	if rt.Memory != 512<<20 || rt.CPU != 500 || rt.Env["LOG_LEVEL"] != "info" || rt.Sessions.Concurrency != registry.ConcurrencyAllow {
		t.Fatalf("limits/env: %+v", rt)
	}
	if c.Region != DefaultRegion || c.Account != DefaultAccount || c.MaxPayloadBytes != 100_000_000 {
		t.Fatalf("defaults: %+v", c)
	}
}

const base = "runtimes:\n  - name: rt\n    command: [agent]\n"

// badConfigs are refused with an error containing want.
var badConfigs = []struct{ yaml, want string }{
	{"runtimes:\n  - name: 9bad\n    command: [a]\n", "runtimes[0] (9bad).name"},
	{"runtimes:\n  - name: ok\n", "runtimes[0] (ok).command"},
	{base + "    sandbox: docker\n", "sandbox: \"docker\""},
	{base + "    network: wide\n", "network"},
	{base + "    idle_timeout: 2h\n    max_lifetime: 1h\n", "idle_timeout"},
	{base + "    idle_timeout: soon\n", `line 4: "soon" is not a duration`},
	{base + "    max_lifetime: !!float x\n", `line 4: "x" is not a number of seconds`},
	{base + "    memory: lots\n", `line 4: "lots" is not a size`},
	{base + "    cpu: lots\n", `line 4: "lots" is not a CPU amount`},
	{"limits:\n  pids: 5\n  disk: 1Pi\n", `line 3: "1Pi" is not a size`},
	// YAML errors the decoder gives no line.
	{base + "    memory: *lots\n", "line 4: yaml: unknown anchor 'lots' referenced"},
	{"listen: a\nregion: \x01\n", "line 2: yaml: control characters are not allowed"},
	{"listen: a\nregion: \xff\n", "line 2: yaml: invalid leading UTF-8 octet"},
	{"runtimes:  - name: rt\n", "line 1: yaml: block sequence entries are not allowed"},
	{"'ping_fail", "line 1: yaml: found unexpected end of stream"},
	{base + "    header_allowlist: [Host]\n", "header_allowlist: \"Host\" is a restricted header"},
	{base + "    header_allowlist: [X-Amz-Date]\n", "x-amz-*"},
	{base + "    header_allowlist: [X-Amzn-Trace-Id]\n", "x-amzn-*"},
	{base + "    mounts: [{source: rel, target: /x}]\n", "mounts[0]"},
	{base + "  - name: rt\n    command: [b]\n", "duplicate runtime name"},
	{"account: 12\n", "account"},
	{"ping_failures: 0\n", "ping_failures"},
	{"unknown_key: 1\n", "unknown_key"},
	{base + "    comand: [typo]\n", "comand"},
	{base + "    header_allowlist: [Authorization]\n", "only on a runtime with a JWT authorizer"},
	{base + "    invokers: [a b]\n", "invokers"},
	{base + "    authorizer: {jwt: {discovery_url: https://idp.example/.well-known/openid-configuration}}\n", "authorizer.jwt: configure at least one check"},
	{"listen: 0.0.0.0:8787\n", "auth:\n    mode: sigv4\n    credentials_file: ./berth-credentials"},
	{"listen: :8787\n", "no auth section"},
	{"auth: {mode: open}\n", "auth.mode"},
	{"auth: {mode: sigv4}\n", "auth.credentials_file"},
	{"auth: {credentials_file: c, admins: [\"a b\"]}\n", "auth.admins"},
	{"tls: {cert_file: c.pem}\n", "tls: set both"},
}

func TestBadConfigNamesTheField(t *testing.T) {
	for _, tc := range badConfigs {
		_, err := load(t, tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
}

// Without an auth section a loopback listen serves everyone; any other
// listen needs the section or --insecure-no-auth.
func TestSecureByDefault(t *testing.T) {
	c, err := load(t, "listen: 127.0.0.1:8787\n")
	if err != nil || c.AuthMode() != "none" {
		t.Fatalf("loopback: %v %v", c.AuthMode(), err)
	}
	c, err = load(t, "listen: \"[::1]:8787\"\nauth: {credentials_file: ./keys, admins: [ops]}\ntls: {cert_file: c.pem, key_file: k.pem}\n")
	if err != nil || c.AuthMode() != "sigv4" || !filepath.IsAbs(c.Auth.CredentialsFile) || !filepath.IsAbs(c.TLS.CertFile) {
		t.Fatalf("auth section: %+v %+v %v", c.Auth, c.TLS, err)
	}
	c = Default()
	c.Listen = "0.0.0.0:8787"
	if err := c.Validate(); err == nil {
		t.Fatal("a public listen without auth passed")
	}
	c.InsecureNoAuth = true
	if err := c.Validate(); err != nil {
		t.Fatalf("--insecure-no-auth: %v", err)
	}
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "localhost:1": true, "[::1]:1": true, "127.3.4.5:1": true,
		":8787": false, "0.0.0.0:1": false, "10.0.0.1:1": false, "[::]:1": false, "example.com:1": false} {
		if LoopbackListen(addr) != want {
			t.Errorf("LoopbackListen(%q) = %v", addr, !want)
		}
	}
}
