package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/sandbox"
)

func sec(n int) Duration { return Duration(time.Duration(n) * time.Second) }

func TestLifecycleDefaultsAndRanges(t *testing.T) {
	for _, tc := range []struct {
		name         string
		src          Source
		idle, max    Duration
		wantI, wantM Duration
		field        string // a refusal names it
	}{
		{"both left out", SourceAPI, 0, 0, sec(900), sec(28800), ""},
		{"only max, under 900: idle follows it", SourceAPI, 0, sec(600), sec(600), sec(600), ""},
		{"only max, over 900", SourceAPI, 0, sec(7200), sec(900), sec(7200), ""},
		{"only idle", SourceAPI, sec(60), 0, sec(60), sec(28800), ""},
		{"idle under 60", SourceAPI, sec(59), 0, 0, 0, "lifecycleConfiguration.idleRuntimeSessionTimeout"},
		{"max over 28800", SourceAPI, 0, sec(28801), 0, 0, "lifecycleConfiguration.maxLifetime"},
		{"idle above max", SourceAPI, sec(1000), sec(600), 0, 0, "lifecycleConfiguration.idleRuntimeSessionTimeout"},
		{"the operator may go below 60 s", SourceConfig, Duration(time.Second), Duration(time.Minute), Duration(time.Second), Duration(time.Minute), ""},
		{"the operator's idle above max", SourceConfig, sec(120), sec(60), 0, 0, "idle_timeout"},
		{"negative", SourceConfig, -1, 0, 0, 0, "idle_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idle, maxLife := tc.idle, tc.max
			err := validateLifecycle(tc.src, &idle, &maxLife)
			if tc.field != "" {
				wantField(t, err, tc.field)
				return
			}
			if err != nil || idle != tc.wantI || maxLife != tc.wantM {
				t.Fatalf("got %v %v %v, want %v %v", idle.D(), maxLife.D(), err, tc.wantI.D(), tc.wantM.D())
			}
		})
	}
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var fe *errdefs.FieldError
	if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want an invalid-argument error on %s", err, field)
	}
}

func TestAllowlistRules(t *testing.T) {
	var twenty []string
	for i := range 21 {
		twenty = append(twenty, "X-H"+string(rune('a'+i)))
	}
	for _, tc := range []struct {
		names []string
		ok    bool
		jwt   bool
	}{
		{twenty[:20], true, false},
		{twenty, false, false},
		{[]string{"X-Amzn-Bedrock-AgentCore-Runtime-Custom-Ok", "Authorization", "X-Tenant-Id"}, true, true},
		{[]string{"Authorization"}, false, false},
		{[]string{"WorkloadAccessToken"}, false, true},
		{[]string{"Proxy-Authorization"}, false, true},
		{[]string{"X-Real-IP"}, false, false},
		{[]string{"Access-Control-Allow-Origin"}, false, false},
		{[]string{"Host"}, false, false},
		{[]string{"Cookie"}, false, false},
		{[]string{"Origin"}, false, false},
		{[]string{"Content-Type"}, false, false},
		{[]string{"Content-Md5"}, false, false},
		{[]string{"X-Forwarded-For"}, false, false},
		{[]string{"Sec-WebSocket-Key"}, false, false},
		{[]string{"X-Amz-Date"}, false, false},
		{[]string{"X-Amzn-Trace-Id"}, false, false},
		{[]string{"X-Tenant-Id", "x-tenant-id"}, false, false},
		{[]string{"bad header"}, false, false},
	} {
		if err := ValidateAllowlist(tc.names, tc.jwt); (err == nil) != tc.ok {
			t.Errorf("%v: got %v, want ok=%t", tc.names, err, tc.ok)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1000": 1000, "1K": 1000, "1Ki": 1024, "512Mi": 512 << 20, "1G": 1e9, "2GB": 2e9, "1.5Gi": 3 << 29} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%s: got %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1", "1Pi", "1e9"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The same settings pass or fail depending on who asks.
func TestRulebookKnowsWhoIsAsking(t *testing.T) {
	rb := Rulebook{
		DefaultLimits: Limits{Memory: 2 << 30, Pids: 512},
		Ceilings:      Limits{Memory: 4 << 30, CPU: 2000},
		APISandbox:    BackendLinux,
		APINetwork:    sandbox.NetworkEgress,
		APIWarmPool:   4,
	}
	base := func() Settings { return Settings{Command: []string{"agent"}} }
	for _, tc := range []struct {
		name   string
		mut    func(*Settings)
		config string // "" accepted; else the field the operator's error names
		api    string // the same for an API caller
	}{
		{"plain", func(*Settings) {}, "", ""},
		{"process backend", func(s *Settings) { s.Sandbox = BackendProcess }, "", "berthSettings.sandbox"},
		{"unknown backend", func(s *Settings) { s.Sandbox = "docker" }, "sandbox", "berthSettings.sandbox"},
		{"host network", func(s *Settings) { s.Network = sandbox.NetworkHost }, "", "berthSettings.network"},
		{"mounts", func(s *Settings) { s.Mounts = []sandbox.Mount{{Source: "/data", Target: "/data"}} }, "", "berthSettings.mounts"},
		{"relative mount", func(s *Settings) { s.Mounts = []sandbox.Mount{{Source: "data", Target: "/data"}} }, "mounts[0]", "berthSettings.mounts[0]"},
		{"memory within the ceiling", func(s *Settings) { s.Memory = 3 << 30 }, "", ""},
		{"memory above the ceiling", func(s *Settings) { s.Memory = 8 << 30 }, "", "berthSettings.limits.memoryBytes"},
		{"pids above the default, no ceiling", func(s *Settings) { s.Pids = 4096 }, "", "berthSettings.limits.pids"},
		{"negative cpu", func(s *Settings) { s.CPU = -1 }, "cpu", "berthSettings.limits.cpu"},
		{"51 env vars", func(s *Settings) {
			s.Env = map[string]string{}
			for i := range 51 {
				s.Env["K"+strings.Repeat("x", i)] = "v"
			}
		}, "", "environmentVariables"},
		{"env key with =", func(s *Settings) { s.Env = map[string]string{"A=B": "v"} }, "env", "environmentVariables"},
		{"protocol", func(s *Settings) { s.Protocol = "grpc" }, "protocol", "protocolConfiguration.serverProtocol"},
		{"concurrency", func(s *Settings) { s.Sessions.Concurrency = "sometimes" }, "concurrency", "berthSettings.sessions.concurrency"},
		{"user cap without binding", func(s *Settings) { s.Sessions.MaxSessionsPerUser = 2 }, "max_sessions_per_user", "berthSettings.sessions.maxSessionsPerUser"},
		{"suspend without durability", func(s *Settings) { s.Sessions.SuspendAfter = sec(60) }, "suspend_after", "berthSettings.sessions.suspendAfterSeconds"},
		{"warm pool above the API ceiling", func(s *Settings) { s.Sessions.WarmPool = 8 }, "", "berthSettings.sessions.warmPool"},
		{"warm pool above any ceiling", func(s *Settings) { s.Sessions.WarmPool = 5000 }, "warm_pool", "berthSettings.sessions.warmPool"},
		{"restricted header", func(s *Settings) { s.HeaderAllowlist = []string{"Host"} }, "header_allowlist", "requestHeaderConfiguration.requestHeaderAllowlist"},
		{"Authorization without a JWT authorizer", func(s *Settings) { s.HeaderAllowlist = []string{"Authorization"} }, "header_allowlist", "requestHeaderConfiguration.requestHeaderAllowlist"},
		{"Authorization with a JWT authorizer", func(s *Settings) { s.HeaderAllowlist = []string{"Authorization"}; s.Authorizer.JWT = jwt() }, "", ""},
		{"invokers", func(s *Settings) { s.Invokers = []string{"alice", "bob"} }, "", ""},
		{"invoker twice", func(s *Settings) { s.Invokers = []string{"alice", "alice"} }, "invokers", "berthSettings.invokers"},
		{"invoker not a name", func(s *Settings) { s.Invokers = []string{"a b"} }, "invokers", "berthSettings.invokers"},
		{"invokers and a JWT authorizer", func(s *Settings) { s.Invokers = []string{"alice"}; s.Authorizer.JWT = jwt() }, "invokers", "berthSettings.invokers"},
		{"JWT authorizer", func(s *Settings) { s.Authorizer.JWT = jwt() }, "", ""},
		{"JWT over http", func(s *Settings) {
			s.Authorizer.JWT = jwt()
			s.Authorizer.JWT.DiscoveryURL = "http://idp.example/.well-known/openid-configuration"
		},
			"authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT over http on loopback", func(s *Settings) {
			s.Authorizer.JWT = jwt()
			s.Authorizer.JWT.DiscoveryURL = "http://127.0.0.1:9/.well-known/openid-configuration"
		}, "", ""},
		{"JWT not a discovery URL", func(s *Settings) {
			s.Authorizer.JWT = jwt()
			s.Authorizer.JWT.DiscoveryURL = "https://idp.example/keys"
		},
			"authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT without checks", func(s *Settings) { s.Authorizer.JWT = &auth.JWTAuthorizer{DiscoveryURL: jwt().DiscoveryURL} },
			"authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT bad scope", func(s *Settings) { s.Authorizer.JWT = jwt(); s.Authorizer.JWT.AllowedScopes = []string{"a b"} },
			"authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT claim EQUALS on a list", func(s *Settings) {
			s.Authorizer.JWT = jwt()
			s.Authorizer.JWT.CustomClaims = []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchEquals, Value: "x"}}
		}, "authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT claim CONTAINS_ANY without values", func(s *Settings) {
			s.Authorizer.JWT = jwt()
			s.Authorizer.JWT.CustomClaims = []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContainsAny}}
		}, "authorizer.jwt", "authorizerConfiguration.customJWTAuthorizer"},
		{"JWT claims", func(s *Settings) {
			s.Authorizer.JWT = jwt()
			s.Authorizer.JWT.CustomClaims = []auth.CustomClaim{
				{Name: "tier", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "gold"},
				{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContains, Value: "eng"},
				{Name: "cognito:groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContainsAny, Values: []string{"a", "b"}},
			}
		}, "", ""},
	} {
		for _, who := range []struct {
			src   Source
			field string
		}{{SourceConfig, tc.config}, {SourceAPI, tc.api}} {
			t.Run(tc.name+"/"+string(who.src), func(t *testing.T) {
				s := base()
				tc.mut(&s)
				err := rb.Validate(who.src, &s)
				if who.field != "" {
					wantField(t, err, who.field)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func jwt() *auth.JWTAuthorizer {
	return &auth.JWTAuthorizer{DiscoveryURL: "https://idp.example/.well-known/openid-configuration", AllowedClients: []string{"web"}}
}

// Defaults land in one place, and API runtimes get the operator's
// placement whatever they asked.
func TestRulebookFillsDefaults(t *testing.T) {
	rb := Rulebook{DefaultLimits: Limits{Memory: 2 << 30, Pids: 512, CPU: 2000, Disk: 1 << 30},
		APISandbox: BackendLinux, APINetwork: sandbox.NetworkEgress, APIWarmPool: 4}
	s := Settings{Command: []string{"agent"}, Limits: Limits{Memory: 1 << 30},
		Sessions: SessionPolicy{Concurrency: ConcurrencyQueue, Durability: DurabilityState}}
	if err := rb.Validate(SourceAPI, &s); err != nil {
		t.Fatal(err)
	}
	want := Limits{Memory: 1 << 30, Pids: 512, CPU: 2000, Disk: 1 << 30}
	if s.Limits != want || s.Sandbox != BackendLinux || s.Network != sandbox.NetworkEgress || s.Protocol != ProtocolHTTP ||
		s.Sessions.QueueSize != DefaultQueueSize || s.Sessions.QueueTimeout.D() != DefaultQueueTimeout ||
		s.Sessions.StateMaxBytes != DefaultStateMaxBytes || s.IdleTimeout != sec(900) || s.MaxLifetime != sec(28800) {
		t.Fatalf("defaults: %+v", s)
	}
	cfg := Settings{Command: []string{"agent"}, Protocol: "mcp"}
	if err := rb.Validate(SourceConfig, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Sandbox != "" || cfg.Network != "" || cfg.Protocol != ProtocolMCP || cfg.Sessions.Concurrency != ConcurrencyAllow {
		t.Fatalf("the operator's runtime: %+v", cfg)
	}
}

func TestTagsAreLabelsOnly(t *testing.T) {
	for _, tc := range []struct {
		tags map[string]string
		ok   bool
	}{
		{map[string]string{"team": "berth", "env": "prod"}, true},
		{map[string]string{"berth:sandbox": "process"}, false},
		{map[string]string{"Berth:Network": "host"}, false},
		{map[string]string{"bad key!": "x"}, false},
		{map[string]string{"k": strings.Repeat("v", 257)}, false},
		{map[string]string{strings.Repeat("k", 129): "v"}, false},
	} {
		err := ValidateTags("tags", tc.tags)
		if tc.ok != (err == nil) {
			t.Errorf("%v: %v", tc.tags, err)
		}
		if err != nil {
			wantField(t, err, "tags")
		}
	}
}

// TestImageRules: who may run an image where, and what an image runtime
// may not say.
func TestImageRules(t *testing.T) {
	const ref = "registry.example:5000/team/agent:v3"
	for _, tc := range []struct {
		name  string
		src   Source
		rb    Rulebook
		s     Settings
		field string // a refusal names it
	}{
		{"the operator's image on linux", SourceConfig, Rulebook{}, Settings{Image: ref, Sandbox: BackendLinux}, ""},
		{"an entrypoint override", SourceConfig, Rulebook{}, Settings{Image: ref, Command: []string{"/bin/agent", "--debug"}}, ""},
		{"an API image from a listed registry", SourceAPI, Rulebook{APIRegistries: []string{"registry.example:5000"}}, Settings{Image: ref}, ""},
		{"an API image when any registry is allowed", SourceAPI, Rulebook{APIRegistries: []string{"*"}}, Settings{Image: ref}, ""},
		{"an API image with no registry listed", SourceAPI, Rulebook{}, Settings{Image: ref},
			"agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"an API image from loopback, not listed", SourceAPI, Rulebook{APIRegistries: []string{"registry.example:5000"}},
			Settings{Image: "127.0.0.1:5000/team/agent:v3"}, "agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"an API image from the listed host on another port", SourceAPI, Rulebook{APIRegistries: []string{"registry.example:5000"}},
			Settings{Image: "registry.example:6000/team/agent:v3"}, "agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"the operator's image on process", SourceConfig, Rulebook{}, Settings{Image: ref, Sandbox: BackendProcess}, "image"},
		{"an API image where API runtimes run on process", SourceAPI, Rulebook{APISandbox: BackendProcess}, Settings{Image: ref},
			"agentRuntimeArtifact.containerConfiguration.containerUri"},
		{"an image with a workdir", SourceConfig, Rulebook{}, Settings{Image: ref, Workdir: "/srv/agent"}, "image"},
		{"not a reference", SourceConfig, Rulebook{}, Settings{Image: "Team/Agent:v3"}, "image"},
		{"an empty command", SourceConfig, Rulebook{}, Settings{Image: ref, Command: []string{""}}, "command"},
		{"a bad pinned digest", SourceConfig, Rulebook{}, Settings{Image: ref, ImageDigest: "sha256:nothex"}, "image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			err := tc.rb.Validate(tc.src, &s)
			if tc.field != "" {
				wantField(t, err, tc.field)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}
