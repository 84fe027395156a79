package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore/types"
	ctl "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/auth/authtest"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/coder/websocket"
)

// Authentication end to end: a berth with auth.mode sigv4 and a
// credentials file, called by the AWS SDK for Go v2 with real keys, wrong
// ones and a skewed clock; presigned WebSocket URLs; runtimes with a JWT
// authorizer backed by an OIDC issuer on loopback; and a bound session
// another principal tries to read, replay and stop.

// authAgentArg makes this test binary run as the auth test agent: on its
// socket it says which credentials reached it.
const authAgentArg = "berth-auth-test-agent"

func init() {
	if len(os.Args) > 1 && os.Args[1] == authAgentArg {
		os.Exit(runAuthAgent())
	}
}

// authHello is what the auth test agent sends first on a socket.
type authHello struct {
	Authorization string `json:"authorization"`
	Subprotocols  string `json:"subprotocols"`
	WorkloadToken string `json:"workload_token"`
}

func runAuthAgent() int {
	a := app.New(app.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
		return map[string]int{"bytes": len(payload)}, nil
	})
	a.WebSocket(func(ctx context.Context, conn *app.WSConn) error {
		h := app.RequestFrom(ctx).Headers
		return conn.WriteJSON(ctx, authHello{Authorization: h.Get("Authorization"),
			Subprotocols: h.Get("Sec-Websocket-Protocol"), WorkloadToken: h.Get(api.HeaderWorkloadAccessToken)})
	})
	if err := a.Run(); err != nil {
		return 1
	}
	return 0
}

// authEnv is a berth with authentication on: principals ops (an admin),
// alice, bob and webapp (who may act for users), and runtimes beside
// newEnv's: private (alice only), bound (bind_user), jwt (a JWT
// authorizer, Authorization allow-listed), jwtquiet (the same, not
// allow-listed) and wsjwt (the auth agent behind a JWT authorizer).
type authEnv struct {
	*env
	keys   map[string]auth.Key
	issuer *authtest.Issuer
	creds  string
}

func newAuthEnv(t *testing.T, mutate ...func(*config.Config)) *authEnv {
	t.Helper()
	a := &authEnv{keys: map[string]auth.Key{}, issuer: authtest.NewIssuer(t), creds: filepath.Join(t.TempDir(), "credentials")}
	for _, n := range []string{"ops", "alice", "bob", "webapp"} {
		k, err := auth.CreateProfile(a.creds, n)
		if err != nil {
			t.Fatal(err)
		}
		a.keys[n] = k
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	jwt := func() registry.Authorizer {
		return registry.Authorizer{JWT: &auth.JWTAuthorizer{DiscoveryURL: a.issuer.DiscoveryURL(), AllowedClients: []string{"web"}}}
	}
	a.env = newEnv(t, append([]func(*config.Config){func(c *config.Config) {
		c.Auth = &config.Auth{CredentialsFile: a.creds, Admins: []string{"ops"}, ActAsUser: []string{"webapp"}}
		agent := c.Runtimes[0].Command[0]
		rt := func(name string, s registry.Settings) config.Runtime {
			if len(s.Command) == 0 {
				s.Command = []string{agent}
			}
			s.Sandbox = registry.BackendProcess
			return config.Runtime{Name: name, Settings: s}
		}
		c.Runtimes = append(c.Runtimes,
			rt("private", registry.Settings{Invokers: []string{"alice"}}),
			rt("bound", registry.Settings{Sessions: registry.SessionPolicy{BindUser: true}}),
			rt("jwt", registry.Settings{Authorizer: jwt(), HeaderAllowlist: []string{"Authorization"}}),
			rt("jwtquiet", registry.Settings{Authorizer: jwt()}),
			rt("wsjwt", registry.Settings{Command: []string{exe, authAgentArg}, Authorizer: jwt(), HeaderAllowlist: []string{"Authorization"}}),
			rt("wssig", registry.Settings{Command: []string{exe, authAgentArg}}),
		)
	}}, mutate...)...)
	return a
}

// sdk is a Go SDK client signing as principal name.
func (a *authEnv) sdk(name string, opts ...func(*bedrockagentcore.Options)) *bedrockagentcore.Client {
	k := a.keys[name]
	return bedrockagentcore.New(bedrockagentcore.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(a.d.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""),
		Retryer:      aws.NopRetryer{},
	}, opts...)
}

// call invokes runtime in session sid through c and decodes the agent's
// answer into out (if not nil).
func (a *authEnv) call(c *bedrockagentcore.Client, runtime, sid, user string, payload []byte, out any) error {
	in := &bedrockagentcore.InvokeAgentRuntimeInput{AgentRuntimeArn: aws.String(a.arn(runtime)),
		ContentType: aws.String("application/json"), Payload: payload}
	if sid != "" {
		in.RuntimeSessionId = aws.String(sid)
	}
	if user != "" {
		in.RuntimeUserId = aws.String(user)
	}
	res, err := c.InvokeAgentRuntime(context.Background(), in)
	if err != nil {
		return err
	}
	defer res.Response.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, res.Response)
		return err
	}
	return json.NewDecoder(res.Response).Decode(out)
}

// skewed signs as the SDK would with a clock off by d.
type skewed struct{ d time.Duration }

func (s skewed) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, hash, service, region string, t time.Time, o ...func(*v4.SignerOptions)) error {
	return v4.NewSigner().SignHTTP(ctx, creds, r, hash, service, region, t.Add(s.d), o...)
}

// The Go SDK with real keys is served; a wrong secret, an unknown key and a
// clock ten minutes off get AWS's error types, and a principal outside a
// runtime's invokers AccessDeniedException.
func TestSigV4WithTheGoSDK(t *testing.T) {
	a := newAuthEnv(t)
	echo := []byte(`{"op":"echo"}`)
	var r echoReply
	if err := a.call(a.sdk("alice"), "echo", newSessionID(), "", echo, &r); err != nil {
		t.Fatalf("alice: %v", err)
	}
	if r.header("Authorization") != "" || r.header(api.HeaderWorkloadAccessToken) != "" {
		t.Errorf("the agent saw a signature or a workload token without a user: %v", r.Headers)
	}
	wrong := a.keys["alice"]
	wrong.SecretAccessKey = a.keys["bob"].SecretAccessKey
	a.keys["wrong"], a.keys["stranger"] = wrong, auth.NewKey("stranger")
	for _, tc := range []struct {
		name, who string
		opts      []func(*bedrockagentcore.Options)
		code      string
		message   string
	}{
		{"wrong secret", "wrong", nil, "InvalidSignatureException", "does not match"},
		{"unknown key", "stranger", nil, "UnrecognizedClientException", "security token included in the request is invalid"},
		{"clock 10 minutes slow", "alice", []func(*bedrockagentcore.Options){func(o *bedrockagentcore.Options) { o.HTTPSignerV4 = skewed{-10 * time.Minute} }},
			"InvalidSignatureException", "Signature expired"},
		{"clock 10 minutes fast", "alice", []func(*bedrockagentcore.Options){func(o *bedrockagentcore.Options) { o.HTTPSignerV4 = skewed{10 * time.Minute} }},
			"InvalidSignatureException", "Signature not yet current"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.call(a.sdk(tc.who, tc.opts...), "echo", newSessionID(), "", echo, nil)
			wantAPIError(t, err, tc.code, 403)
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message %v does not say %q", err, tc.message)
			}
		})
	}
	t.Run("not an invoker", func(t *testing.T) {
		err := a.call(a.sdk("bob"), "private", newSessionID(), "", echo, nil)
		var ade *types.AccessDeniedException
		if !errors.As(err, &ade) {
			t.Fatalf("bob on alice's runtime: %v, want *types.AccessDeniedException", err)
		}
		if err := a.call(a.sdk("alice"), "private", newSessionID(), "", echo, nil); err != nil {
			t.Fatalf("alice on her runtime: %v", err)
		}
	})
	t.Run("a user only for those allowed", func(t *testing.T) {
		wantAPIError(t, a.call(a.sdk("alice"), "echo", newSessionID(), "u-1", echo, nil), "AccessDeniedException", 403)
		var r echoReply
		if err := a.call(a.sdk("webapp"), "echo", newSessionID(), "u-1", echo, &r); err != nil {
			t.Fatalf("webapp for u-1: %v", err)
		}
		if r.header(api.HeaderUserID) != "u-1" || !strings.HasPrefix(r.header(api.HeaderWorkloadAccessToken), "berth-wat-v1.") {
			t.Errorf("agent saw user %q, workload token %q", r.header(api.HeaderUserID), r.header(api.HeaderWorkloadAccessToken))
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		c := bedrockagentcore.New(bedrockagentcore.Options{Region: "us-east-1", BaseEndpoint: aws.String(a.d.URL()), Retryer: aws.NopRetryer{}})
		wantAPIError(t, a.call(c, "echo", newSessionID(), "", echo, nil), "MissingAuthenticationTokenException", 403)
	})
	t.Run("payload of 5 MB", func(t *testing.T) {
		// The Go SDK sends no payload hash: berth reads the body whole
		// (spooling it past 1 MiB) before anything goes on.
		big := map[string]string{"op": "echo", "pad": strings.Repeat("x", 5<<20)}
		body, _ := json.Marshal(big)
		var r echoReply
		if err := a.call(a.sdk("alice"), "echo", newSessionID(), "", body, &r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Payload, body) {
			t.Errorf("agent got %d bytes, sent %d", len(r.Payload), len(body))
		}
		if ents, _ := os.ReadDir(filepath.Join(a.d.DataDir(), "spool")); len(ents) != 0 {
			t.Errorf("%d spooled bodies left behind", len(ents))
		}
	})
}

// The control plane's writes, berth's session API and /metrics are an
// admin's; anyone signed in may read runtimes, without env values.
func TestAdminsAndEveryoneElse(t *testing.T) {
	a := newAuthEnv(t, func(c *config.Config) {
		c.Runtimes[0].Env["API_KEY"] = "sk-secret-value"
	})
	cp := func(name string) *ctl.Client {
		k := a.keys[name]
		return ctl.New(ctl.Options{Region: "us-east-1", BaseEndpoint: aws.String(a.d.URL()),
			Credentials: credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""), Retryer: aws.NopRetryer{}})
	}
	ctx := context.Background()
	id := strings.TrimPrefix(a.arn("echo"), "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/")
	got, err := cp("alice").GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got.EnvironmentVariables["API_KEY"]; !ok || strings.Contains(v, "sk-secret") {
		t.Errorf("alice sees API_KEY=%q (present %v); want the name, not the value", v, ok)
	}
	got, err = cp("ops").GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil || got.EnvironmentVariables["API_KEY"] != "sk-secret-value" {
		t.Errorf("ops sees %v, %v", got, err)
	}
	_, err = cp("alice").DeleteAgentRuntime(ctx, &ctl.DeleteAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	wantAPIError(t, err, "AccessDeniedException", 403)
	if _, err := cp("alice").ListAgentRuntimes(ctx, &ctl.ListAgentRuntimesInput{}); err != nil {
		t.Errorf("alice lists runtimes: %v", err)
	}

	// /metrics and the console: admins only.
	for _, path := range []string{"/metrics", "/console", "/console/static/console.js"} {
		for who, want := range map[string]int{"ops": 200, "alice": 403} {
			resp, err := signingClient(a.keys[who]).Get(a.d.URL() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s on %s: %d, want %d", who, path, resp.StatusCode, want)
			}
		}
		resp, err := http.Get(a.d.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get(api.HeaderErrorType) != "MissingAuthenticationTokenException" {
			t.Errorf("unsigned %s: %d %s", path, resp.StatusCode, resp.Header.Get(api.HeaderErrorType))
		}
	}
}

// signingClient signs as k, the way cmd/berth's transport does.
func signingClient(k auth.Key) *http.Client {
	return &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		var body []byte
		if r.GetBody != nil {
			rc, _ := r.GetBody()
			body, _ = io.ReadAll(rc)
		}
		sum := sha256hex(body)
		r.Header.Set("X-Amz-Content-Sha256", sum)
		err := v4.NewSigner().SignHTTP(r.Context(), aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey},
			r, sum, auth.Service, "us-east-1", time.Now())
		if err != nil {
			return nil, err
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The probe's scenario: bob, a caller like alice, meets alice's bound
// session. He can neither read it (listing, state, log), nor replay it
// with her user ID, nor stop it; alice can do all three, and so can an
// admin.
func TestAnotherPrincipalsBoundSession(t *testing.T) {
	a := newAuthEnv(t)
	sid := newSessionID()
	echo := []byte(`{"op":"echo"}`)
	if err := a.call(a.sdk("alice"), "bound", sid, "", echo, nil); err != nil {
		t.Fatal(err)
	}
	cl := func(who string) *client.Client {
		return &client.Client{Endpoint: a.d.URL(), HTTPClient: signingClient(a.keys[who])}
	}
	ctx := context.Background()
	list, err := cl("alice").ListSessions(ctx, client.SessionFilter{})
	if err != nil || len(list.Sessions) != 1 || list.Sessions[0].UserID != "sigv4:alice" {
		t.Fatalf("alice's listing: %+v, %v", list, err)
	}
	rec := list.Sessions[0]
	if rec.SessionID == sid || strings.Contains(rec.SessionID, sid[8:len(sid)-8]) {
		t.Errorf("a non-admin listing shows the raw session ID %q", rec.SessionID)
	}

	t.Run("bob cannot read it", func(t *testing.T) {
		list, err := cl("bob").ListSessions(ctx, client.SessionFilter{})
		if err != nil || len(list.Sessions) != 0 {
			t.Errorf("bob's listing: %+v, %v", list, err)
		}
		list, err = cl("bob").ListSessions(ctx, client.SessionFilter{User: "sigv4:alice"})
		if err != nil || len(list.Sessions) != 0 {
			t.Errorf("bob's listing of alice's: %+v, %v", list, err)
		}
		if _, err := cl("bob").GetSession(ctx, rec.ID); !isType(err, api.ErrResourceNotFound) {
			t.Errorf("bob shows alice's session: %v", err)
		}
		if _, err := cl("bob").GetSession(ctx, sid); !isType(err, api.ErrResourceNotFound) {
			t.Errorf("bob shows alice's session by its runtime session ID: %v", err)
		}
		list, err = cl("bob").ListSessions(ctx, client.SessionFilter{Session: sid})
		if err != nil || len(list.Sessions) != 0 {
			t.Errorf("bob's listing of alice's session ID: %+v, %v", list, err)
		}
		if _, err := cl("bob").SessionLogs(ctx, rec.ID, 0, false); !isType(err, api.ErrResourceNotFound) {
			t.Errorf("bob reads alice's log: %v", err)
		}
	})
	t.Run("bob cannot replay it", func(t *testing.T) {
		wantAPIError(t, a.call(a.sdk("bob"), "bound", sid, "", echo, nil), "AccessDeniedException", 403)
		wantAPIError(t, a.call(a.sdk("bob"), "bound", sid, "alice", echo, nil), "AccessDeniedException", 403)
		wantAPIError(t, a.call(a.sdk("bob"), "bound", sid, "sigv4:alice", echo, nil), "AccessDeniedException", 403)
	})
	t.Run("bob cannot stop it", func(t *testing.T) {
		_, err := a.sdk("bob").StopRuntimeSession(ctx, &bedrockagentcore.StopRuntimeSessionInput{
			AgentRuntimeArn: aws.String(a.arn("bound")), RuntimeSessionId: aws.String(sid)})
		wantAPIError(t, err, "AccessDeniedException", 403)
		if _, err := cl("bob").StopSessionByID(ctx, rec.ID); !isType(err, api.ErrResourceNotFound) {
			t.Errorf("bob stops alice's session through berth's API: %v", err)
		}
		if _, ok := liveByID(t, cl("ops"), rec.ID); !ok {
			t.Fatal("alice's session ended")
		}
	})
	t.Run("alice and an admin can", func(t *testing.T) {
		if err := a.call(a.sdk("alice"), "bound", sid, "", echo, nil); err != nil {
			t.Fatalf("alice again: %v", err)
		}
		logs, err := cl("alice").SessionLogs(ctx, rec.ID, 0, false)
		if err != nil {
			t.Fatalf("alice's log: %v", err)
		}
		logs.Close()
		s, err := cl("ops").GetSession(ctx, rec.ID)
		if err != nil || s.SessionID != sid {
			t.Fatalf("ops shows %+v, %v", s, err)
		}
		if s, err := cl("alice").GetSession(ctx, sid); err != nil || s.ID != rec.ID {
			t.Fatalf("alice shows her session by its runtime session ID: %+v, %v", s, err)
		}
		if _, err := a.sdk("alice").StopRuntimeSession(ctx, &bedrockagentcore.StopRuntimeSessionInput{
			AgentRuntimeArn: aws.String(a.arn("bound")), RuntimeSessionId: aws.String(sid)}); err != nil {
			t.Fatalf("alice stops it: %v", err)
		}
	})
}

func liveByID(t *testing.T, c *client.Client, id string) (api.Session, bool) {
	t.Helper()
	s, err := c.GetSession(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return *s, s.State != "terminated"
}

func isType(err error, typ api.ErrorType) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Type == typ
}

// presignWS presigns a WebSocket connect the way the Go SDK's signer does
// (AWS's Python SDK builds the same query with botocore).
func (a *authEnv) presignWS(t *testing.T, who, runtime, sid string, at time.Time) string {
	t.Helper()
	q := url.Values{api.HeaderSessionID: {sid}, "X-Amz-Expires": {"300"}}
	req, err := http.NewRequest(http.MethodGet, a.d.URL()+a.wsPath(runtime, q), nil)
	if err != nil {
		t.Fatal(err)
	}
	k := a.keys[who]
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey},
		req, "UNSIGNED-PAYLOAD", auth.Service, "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return wsScheme(signed)
}

// A presigned URL opens a socket as its signer; an altered or expired
// one is refused.
func TestPresignedWebSocket(t *testing.T) {
	a := newAuthEnv(t)
	ctx := wsTimeout(t)
	sid := newSessionID()
	c, resp := dialWS(t, a.presignWS(t, "alice", "wssig", sid, time.Now()), nil)
	if resp.Header.Get(api.HeaderSessionID) != sid {
		t.Fatalf("101 names session %q", resp.Header.Get(api.HeaderSessionID))
	}
	var hello authHello
	if _, data, err := c.Read(ctx); err != nil || json.Unmarshal(data, &hello) != nil {
		t.Fatalf("hello: %v %s", err, data)
	}
	if hello.Authorization != "" {
		t.Errorf("the agent saw Authorization %q", hello.Authorization)
	}
	for name, alter := range map[string]func(string) string{
		"another session": func(u string) string {
			i := strings.Index(u, "wire-test-")
			return u[:i] + newSessionID() + u[i+len(sid):]
		},
		"longer expiry": func(u string) string { return strings.Replace(u, "X-Amz-Expires=300", "X-Amz-Expires=3600", 1) },
		"added header":  func(u string) string { return u + "&X-Amzn-Bedrock-AgentCore-Runtime-Custom-Role=admin" },
		"other signature": func(u string) string {
			i := strings.Index(u, "X-Amz-Signature=") + len("X-Amz-Signature=")
			return u[:i] + strings.Repeat("0", 64) + u[i+64:]
		},
	} {
		t.Run(name, func(t *testing.T) {
			wsRefused(t, alter(a.presignWS(t, "alice", "wssig", newSessionID(), time.Now())), nil, "InvalidSignatureException")
		})
	}
	t.Run("expired", func(t *testing.T) {
		wsRefused(t, a.presignWS(t, "alice", "wssig", newSessionID(), time.Now().Add(-6*time.Minute)), nil, "InvalidSignatureException")
	})
	t.Run("unknown key", func(t *testing.T) {
		a.keys["stranger"] = auth.NewKey("stranger")
		wsRefused(t, a.presignWS(t, "stranger", "wssig", newSessionID(), time.Now()), nil, "UnrecognizedClientException")
	})
}

// wsRefused dials u and wants the upgrade refused with typ.
func wsRefused(t *testing.T, u string, opts *websocket.DialOptions, typ string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err == nil {
		c.CloseNow()
		t.Fatalf("%s: connected", u)
	}
	if resp == nil || resp.Header.Get(api.HeaderErrorType) != typ {
		t.Fatalf("refusal %v: %v, want %s", resp, err, typ)
	}
}

// A runtime with a JWT authorizer behaves as AgentCore documents.
func TestJWTRuntime(t *testing.T) {
	a := newAuthEnv(t)
	tok := a.issuer.Token(t, authtest.Claims{"sub": "user-1", "client_id": "web"})
	post := func(runtime, token string, h http.Header) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, a.d.URL()+"/runtimes/"+url.PathEscape(a.arn(runtime))+"/invocations?qualifier=DEFAULT",
			strings.NewReader(`{"op":"echo"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.HeaderSessionID, newSessionID())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	resp, body := post("jwt", tok, nil)
	var r echoReply
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("a good token: %d %s", resp.StatusCode, body)
	}
	wat := r.header(api.HeaderWorkloadAccessToken)
	if r.header("Authorization") != "Bearer "+tok || !strings.HasPrefix(wat, "berth-wat-v1.") {
		t.Errorf("allow-listed runtime: agent saw Authorization %q, workload token %q", r.header("Authorization"), wat)
	}
	resp, body = post("jwtquiet", tok, nil)
	r = echoReply{}
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("jwtquiet: %d %s", resp.StatusCode, body)
	}
	if r.header("Authorization") != "" {
		t.Errorf("a runtime without Authorization allow-listed forwarded it")
	}
	if other := r.header(api.HeaderWorkloadAccessToken); other == "" || other == wat {
		t.Errorf("workload tokens: %q on jwt, %q on jwtquiet; want one per runtime", wat, other)
	}

	wantChallenge := func(t *testing.T, resp *http.Response) {
		t.Helper()
		want := `Bearer resource_metadata="` + a.d.URL() + "/runtimes/" + strings.ReplaceAll(url.PathEscape(a.arn("jwt")), ":", "%3A") +
			`/invocations/.well-known/oauth-protected-resource?qualifier=DEFAULT"`
		if resp.StatusCode != 401 || resp.Header.Get(api.HeaderErrorType) != "UnauthorizedException" || resp.Header.Get("WWW-Authenticate") != want {
			t.Fatalf("%d %s, WWW-Authenticate %q; want 401 UnauthorizedException and %q", resp.StatusCode,
				resp.Header.Get(api.HeaderErrorType), resp.Header.Get("WWW-Authenticate"), want)
		}
	}
	t.Run("no token", func(t *testing.T) {
		resp, _ := post("jwt", "", nil)
		wantChallenge(t, resp)
	})
	t.Run("refused claims", func(t *testing.T) {
		for name, c := range map[string]authtest.Claims{
			"other client": {"sub": "user-1", "client_id": "cli"},
			"expired":      {"sub": "user-1", "client_id": "web", "exp": time.Now().Add(-time.Minute).Unix()},
			"other issuer": {"sub": "user-1", "client_id": "web", "iss": "https://elsewhere.example"},
		} {
			t.Run(name, func(t *testing.T) {
				resp, _ := post("jwt", a.issuer.Token(t, c), nil)
				wantChallenge(t, resp)
			})
		}
		resp, _ := post("jwt", a.issuer.ForeignToken(t, authtest.Claims{"sub": "user-1", "client_id": "web"}), nil)
		wantChallenge(t, resp)
	})
	t.Run("metadata document", func(t *testing.T) {
		u := a.d.URL() + "/runtimes/" + strings.ReplaceAll(url.PathEscape(a.arn("jwt")), ":", "%3A") + "/invocations/.well-known/oauth-protected-resource?qualifier=DEFAULT"
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m api.ProtectedResourceMetadata
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		if !slices.Equal(m.AuthorizationServers, []string{a.issuer.URL()}) || !strings.HasSuffix(m.Resource, "/invocations") {
			t.Errorf("metadata %+v", m)
		}
	})
	t.Run("SigV4 refused", func(t *testing.T) {
		err := a.call(a.sdk("ops"), "jwt", newSessionID(), "", []byte(`{"op":"echo"}`), nil)
		wantAPIError(t, err, "AccessDeniedException", 403)
		if !strings.Contains(err.Error(), "authorization method mismatch") {
			t.Errorf("message: %v", err)
		}
	})
	t.Run("a bearer token on a SigV4 runtime", func(t *testing.T) {
		resp, _ := post("echo", tok, nil)
		if resp.StatusCode != 403 || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("a user ID beside the token", func(t *testing.T) {
		resp, _ := post("jwt", tok, http.Header{api.HeaderUserID: {"someone-else"}})
		if resp.StatusCode != 403 {
			t.Errorf("%d", resp.StatusCode)
		}
	})
	t.Run("WebSocket subprotocol form", func(t *testing.T) {
		ctx := wsTimeout(t)
		u := wsScheme(a.d.URL()) + a.wsPath("wsjwt", url.Values{api.HeaderSessionID: {newSessionID()}})
		offer := []string{auth.BearerSubprotocol + "." + base64.RawURLEncoding.EncodeToString([]byte(tok)), auth.BearerSubprotocol}
		c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: offer})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if c.Subprotocol() != auth.BearerSubprotocol {
			t.Errorf("101 chose subprotocol %q", resp.Header.Get("Sec-Websocket-Protocol"))
		}
		var hello authHello
		if _, data, err := c.Read(ctx); err != nil || json.Unmarshal(data, &hello) != nil {
			t.Fatalf("hello: %v %s", err, data)
		}
		if hello.Subprotocols != "" || hello.Authorization != "Bearer "+tok || !strings.HasPrefix(hello.WorkloadToken, "berth-wat-v1.") {
			t.Errorf("agent saw %+v: want no subprotocols, the token as an allow-listed Authorization, a workload token", hello)
		}
		wsRefused(t, u, &websocket.DialOptions{Subprotocols: []string{auth.BearerSubprotocol + ".bm90LWEtdG9rZW4", auth.BearerSubprotocol}}, "UnauthorizedException")
		wsRefused(t, u, nil, "UnauthorizedException")
		h := http.Header{"Authorization": {"Bearer " + tok}}
		c2, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			t.Fatalf("Authorization: Bearer on a socket: %v", err)
		}
		c2.CloseNow()
	})
}

// A principal added to the credentials file works without a restart, and
// one removed stops working.
func TestCredentialsReload(t *testing.T) {
	a := newAuthEnv(t)
	k, err := auth.CreateProfile(a.creds, "carol")
	if err != nil {
		t.Fatal(err)
	}
	a.keys["carol"] = k
	if err := a.d.ReloadCredentials(); err != nil {
		t.Fatal(err)
	}
	if err := a.call(a.sdk("carol"), "echo", newSessionID(), "", []byte(`{"op":"echo"}`), nil); err != nil {
		t.Fatalf("carol after the reload: %v", err)
	}
	data, _ := os.ReadFile(a.creds)
	kept := strings.Split(string(data), "[bob]")[0]
	if err := os.WriteFile(a.creds, []byte(kept), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.d.ReloadCredentials(); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, a.call(a.sdk("bob"), "echo", newSessionID(), "", []byte(`{"op":"echo"}`), nil), "UnrecognizedClientException", 403)
}

// tls: berth serves HTTPS and WSS; metrics_listen serves /metrics without
// authentication while the main listener keeps it for admins.
func TestTLSAndMetricsListen(t *testing.T) {
	dir := t.TempDir()
	pool := selfSigned(t, dir)
	a := newAuthEnv(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
		c.MetricsListen = "127.0.0.1:0"
	})
	if !strings.HasPrefix(a.d.URL(), "https://") {
		t.Fatalf("URL %s", a.d.URL())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c := a.sdk("alice", func(o *bedrockagentcore.Options) { o.HTTPClient = hc })
	var r echoReply
	if err := a.call(c, "echo", newSessionID(), "", []byte(`{"op":"echo"}`), &r); err != nil {
		t.Fatalf("over https: %v", err)
	}

	ctx := wsTimeout(t)
	conn, _, err := websocket.Dial(ctx, a.presignWS(t, "alice", "wssig", newSessionID(), time.Now()), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	if _, _, err := conn.Read(ctx); err != nil {
		t.Fatalf("wss hello: %v", err)
	}
	conn.CloseNow()

	resp, err := http.Get("http://" + a.d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("berth_invocations_total")) {
		t.Errorf("metrics_listen: %d %.200s", resp.StatusCode, body)
	}
	resp, err = hc.Get(a.d.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("unsigned /metrics on the main listener: %d", resp.StatusCode)
	}
}

// selfSigned writes a certificate for 127.0.0.1 into dir and returns a
// pool that trusts it.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
