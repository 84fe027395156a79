package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/google/uuid"
)

// Fuzz targets for what berth reads from the network before any agent
// sees it. Each asserts properties, not only "no panic".

// FuzzSessionID: the session header is accepted exactly when it is an
// AgentCore session ID (33-256 characters of [a-zA-Z0-9][a-zA-Z0-9-_]*),
// is passed on unchanged, and a refusal never echoes it.
func FuzzSessionID(f *testing.F) {
	for _, n := range []int{0, 1, 32, 33, 36, 256, 257} {
		f.Add(strings.Repeat("s", n), false)
	}
	f.Add("berth-0123456789abcdef0123456789abcdef", true)
	f.Add("-berth-0123456789abcdef0123456789abcde", false)
	f.Add("berth/0123456789abcdef0123456789abcdef", false)
	f.Add(uuid.NewString(), false)
	f.Fuzz(func(t *testing.T, id string, generate bool) {
		valid := len(id) >= api.MinSessionIDLen && len(id) <= api.MaxSessionIDLen
		for i, c := range []byte(id) {
			alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
			valid = valid && (alnum || i > 0 && (c == '-' || c == '_'))
		}
		if api.ValidSessionID(id) != valid {
			t.Fatalf("ValidSessionID(%q) = %t", id, !valid)
		}
		r := newRequest("POST", "/runtimes/x/invocations", nil)
		r.Header[api.HeaderSessionID] = []string{id}
		got, err := sessionID(r, generate)
		switch {
		case id == "" && generate:
			if err != nil || !api.ValidSessionID(got) {
				t.Fatalf("generated %q, %v", got, err)
			}
		case valid:
			if err != nil || got != id {
				t.Fatalf("accepted as %q, %v", got, err)
			}
		default:
			wantValidation(t, err, "runtimeSessionId")
			if len(id) >= 8 && strings.Contains(err.Error(), id) {
				t.Fatalf("the refusal echoes the ID: %v", err)
			}
		}
	})
}

// FuzzForwardHeaders: whatever a caller sends, the agent gets only the
// passthrough set, the custom prefix and the runtime's allowlist, with the
// caller's values, never an X-Amz-* header, and one fresh request ID. An
// allow-listed or custom value over 4 KB, or more than 20 custom headers,
// refuses the call, naming the header.
func FuzzForwardHeaders(f *testing.F) {
	f.Add("Authorization: AWS4-HMAC-SHA256 x\r\nX-Amz-Date: 20250101T000000Z\r\nX-Tenant-Id: t\r\n", "X-Tenant-Id", false)
	f.Add("Content-Type: application/json\r\nAccept: */*\r\nTraceparent: 00-1-2-01\r\nMcp-Session-Id: m\r\n", "", false)
	f.Add(api.HeaderCustomPrefix+"A: 1\r\n"+api.HeaderCustomPrefix+"A: 2\r\nCookie: c\r\n", "Authorization,x-tenant-id", true)
	f.Add("X-Tenant-Id: "+strings.Repeat("v", 4097)+"\r\n", "x-tenant-id", false)
	f.Add(api.HeaderRequestID+": mine\r\n"+api.HeaderSessionID+": "+strings.Repeat("s", 40)+"\r\n", "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Ok", false)
	f.Fuzz(func(t *testing.T, headers, allow string, jwt bool) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("POST /runtimes/x/invocations HTTP/1.1\r\nHost: localhost\r\n" + headers + "\r\n")))
		if err != nil {
			return // berth's HTTP server answers 400 before any handler
		}
		var allowlist []string
		if allow != "" {
			allowlist = strings.Split(allow, ",")
		}
		out, err := forwardHeaders(r, allowlist, jwt)
		if registry.ValidateAllowlist(allowlist, jwt) != nil {
			return // no runtime has such an allowlist; it only must not panic
		}
		allowed := map[string]string{} // canonical name → as listed
		for _, a := range allowlist {
			allowed[http.CanonicalHeaderKey(a)] = a
		}
		custom, long := 0, map[string]bool{} // custom headers; headers with a value over 4 KB
		for k, v := range r.Header {
			if strings.HasPrefix(k, api.HeaderCustomPrefix) {
				custom++
			}
			for _, s := range v {
				long[k] = long[k] || len(s) > maxForwardedValue
			}
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.typ != api.ErrValidation || len(ae.fields) != 1 || out != nil {
				t.Fatalf("refusal %v", err)
			}
			name := ae.fields[0].Name
			k := http.CanonicalHeaderKey(name)
			switch {
			case name == api.HeaderCustomPrefix+"*" && custom > maxCustomHeaders:
			case long[k] && (allowed[k] == name || strings.HasPrefix(k, api.HeaderCustomPrefix) && k == name):
			default:
				t.Fatalf("refused on %s (%d custom headers): %v", name, custom, err)
			}
			return
		}
		if custom > maxCustomHeaders {
			t.Fatalf("forwarded %d custom headers", custom)
		}
		for k, v := range out {
			switch {
			case k == api.HeaderRequestID:
				if len(v) != 1 || uuid.Validate(v[0]) != nil || v[0] == r.Header.Get(api.HeaderRequestID) {
					t.Fatalf("request ID %q", v)
				}
				continue
			case k == "Content-Type" && r.Header["Content-Type"] == nil:
				// An agent always learns the body's type; JSON unless told.
				if len(v) != 1 || v[0] != "application/json" {
					t.Fatalf("Content-Type %q for a call that sent none", v)
				}
				continue
			case strings.HasPrefix(strings.ToLower(k), "x-amz-"):
				t.Fatalf("forwarded %s", k)
			case !strings.HasPrefix(k, api.HeaderCustomPrefix) && !contains(passthrough, k) && allowed[k] == "":
				t.Fatalf("forwarded %s, which is neither passed through, custom nor allow-listed", k)
			case strings.Join(v, "\x00") != strings.Join(r.Header[k], "\x00"):
				t.Fatalf("%s: forwarded %q, sent %q", k, v, r.Header[k])
			case long[k] && (allowed[k] != "" || strings.HasPrefix(k, api.HeaderCustomPrefix)):
				t.Fatalf("forwarded a value of %s over 4 KB", k)
			}
		}
		if _, ok := out["Authorization"]; ok && !jwt {
			t.Fatal("forwarded Authorization to a runtime without a JWT authorizer")
		}
		for k := range r.Header {
			if k == "Authorization" && !jwt {
				continue
			}
			if (contains(passthrough, k) || strings.HasPrefix(k, api.HeaderCustomPrefix) || allowed[k] != "") && k != api.HeaderRequestID {
				if _, ok := out[k]; !ok {
					t.Fatalf("dropped %s", k)
				}
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FuzzRuntimePath: a runtime reference arrives as a path segment, escaped
// or not. Whatever it is, berth answers with an AgentCore error or the
// runtime it names, never a 5xx, and the control plane and the data plane
// agree on which runtime (if any) a segment names.
func FuzzRuntimePath(f *testing.F) {
	h := newHarness(f)
	for _, ref := range []string{h.rt.ARN, h.rt.ID, h.rt.Name, h.rt.ARN + "/runtime-endpoint/DEFAULT", "ghost", "",
		"arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/" + h.rt.Name} {
		f.Add(url.PathEscape(ref))
		f.Add(ref)
	}
	f.Add("..%2F..")
	f.Add("%zz")
	f.Add("a?qualifier=prod")
	f.Fuzz(func(t *testing.T, seg string) {
		get, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET /runtimes/" + seg + "/ HTTP/1.1\r\nHost: localhost\r\n\r\n")))
		if err != nil {
			return
		}
		inv, err := http.ReadRequest(bufio.NewReader(strings.NewReader("POST /runtimes/" + seg + "/invocations HTTP/1.1\r\nHost: localhost\r\n" +
			api.HeaderSessionID + ": " + strings.Repeat("f", 40) + "\r\nContent-Length: 2\r\n\r\n{}")))
		if err != nil {
			return
		}
		gw, iw := h.do(get), h.do(inv)
		for _, w := range []*httptest.ResponseRecorder{gw, iw} {
			switch {
			case w.Code >= 300 && w.Code < 400:
				return // the mux's redirect to a clean path
			case w.Code >= 400:
				if e := readError(t, w); e.typ == api.ErrInternalServer {
					t.Fatalf("%q: %+v", seg, e)
				}
			}
		}
		if gw.Code == 200 {
			var rt api.AgentRuntime
			if err := json.Unmarshal(gw.Body.Bytes(), &rt); err != nil || rt.AgentRuntimeID != h.rt.ID {
				t.Fatalf("%q named %+v", seg, rt)
			}
		}
		// A raw /, ? or # makes the paths other routes, or none.
		if (gw.Code == 200) != (iw.Code == 200) && !strings.ContainsAny(seg, "/?#") {
			t.Fatalf("%q: GetAgentRuntime answered %d %s, InvokeAgentRuntime %d %s", seg, gw.Code, gw.Body, iw.Code, iw.Body)
		}
	})
}

// fuzzAgentDir is a code directory fuzz seeds can name: the same path in
// every fuzz worker.
func fuzzAgentDir(f *testing.F) string {
	dir := filepath.Join(os.TempDir(), "berth-fuzz-agent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte("x"), 0o644); err != nil {
		f.Fatal(err)
	}
	return dir
}

// FuzzControlBody: a CreateAgentRuntime body goes through the whole
// pipeline (decode, translation, the registry's rulebook, the store).
// Every refusal is an invalid argument or a validation error that names a
// member (or says the JSON did not parse), or a conflict over a taken
// name; what is accepted is a runtime the operator's rules would accept
// as they are, on the operator's sandbox.
func FuzzControlBody(f *testing.F) {
	h := newHarness(f)
	ctl := registry.NewControl(h.reg)
	dir := fuzzAgentDir(f)
	for _, tc := range decodeCases {
		if len(tc.body) < 4096 {
			f.Add(tc.body)
		}
	}
	for _, tc := range specRefusals {
		f.Add(tc.body)
	}
	f.Add(fullBody)
	good := api.RuntimeInput{AgentRuntimeName: "fuzzed", AgentRuntimeArtifact: api.LocalCode(dir, "PYTHON_3_12", "main.py"),
		LifecycleConfiguration: &api.Lifecycle{IdleRuntimeSessionTimeout: ptr(60), MaxLifetime: ptr(120)},
		BerthSettings:          &api.BerthSettings{Limits: &api.Limits{CPU: 0.5}, Sessions: &api.SessionPolicy{Concurrency: "queue", WarmPool: 1}}}
	for _, mut := range []func(*api.RuntimeInput){
		func(*api.RuntimeInput) {},
		func(in *api.RuntimeInput) {
			in.AgentRuntimeArtifact = api.LocalCode(dir, "NODE_22", "opentelemetry-instrument", "main.py")
		},
		func(in *api.RuntimeInput) { in.BerthSettings.Sandbox = "process" },
		func(in *api.RuntimeInput) { in.EnvironmentVariables = map[string]string{"K": "v"} },
		func(in *api.RuntimeInput) { in.Tags = map[string]string{"berth:sandbox": "process"} },
	} {
		in := good
		in.BerthSettings = &api.BerthSettings{Limits: good.BerthSettings.Limits, Sessions: good.BerthSettings.Sessions}
		mut(&in)
		b, _ := json.Marshal(in)
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, body string) {
		spec, err := createSpec(newRequest("PUT", "/runtimes/", strings.NewReader(body)))
		var rt registry.Runtime
		var v registry.Version
		if err == nil {
			rt, v, err = ctl.CreateRuntime(t.Context(), spec)
		}
		if err != nil {
			var ae *apiError
			isAPI := errors.As(err, &ae)
			switch {
			case errors.Is(err, errdefs.ErrConflict) && !isAPI:
				if _, lerr := h.reg.Lookup(t.Context(), spec.Name); lerr != nil {
					t.Fatalf("conflict over %q, which is free: %v", spec.Name, err)
				}
			case !errors.Is(err, errdefs.ErrInvalidArgument) && !(isAPI && ae.typ == api.ErrValidation):
				t.Fatalf("refused with %v, not a validation error", err)
			default:
				if c := classify(err); len(c.fields) != 1 && c.reason != "CannotParse" {
					t.Fatalf("%v names no member", err)
				}
			}
			return
		}
		s := v.Settings
		if rt.Source != registry.SourceAPI || s.Sandbox != testRules.APISandbox || len(s.Mounts) != 0 || s.Network != "" {
			t.Fatalf("accepted %s with %+v", body, s)
		}
		again := s
		if err := testRules.Validate(registry.SourceConfig, &again); err != nil {
			t.Fatalf("an API runtime the operator could not declare: %v", err)
		}
		a, _ := json.Marshal(s)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("validation is not idempotent:\n%s\n%s", a, b)
		}
	})
}
