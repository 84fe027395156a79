package attacktest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/attacktest"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/auth/authtest"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/google/uuid"
)

// authTarget is a berth with authentication on: ops (an admin), alice and
// bob; runtimes plain, private (alice only), bound (bind_user), jwt (a
// JWT authorizer on a loopback issuer, Authorization allow-listed).
type authTarget struct {
	*target
	keys   map[string]auth.Key
	issuer *authtest.Issuer
}

func startAuthTarget(t *testing.T) *authTarget {
	t.Helper()
	at := &authTarget{keys: map[string]auth.Key{}, issuer: authtest.NewIssuer(t)}
	creds := filepath.Join(t.TempDir(), "credentials")
	for _, n := range []string{"ops", "alice", "bob"} {
		k, err := auth.CreateProfile(creds, n)
		if err != nil {
			t.Fatal(err)
		}
		at.keys[n] = k
	}
	at.target = startTarget(t, func(c *config.Config) {
		c.Auth = &config.Auth{CredentialsFile: creds, Admins: []string{"ops"}}
		agent := c.Runtimes[0].Command
		env := c.Runtimes[0].Env
		c.Runtimes = append(c.Runtimes,
			config.Runtime{Name: "private", Settings: registry.Settings{Command: agent, Env: env, Invokers: []string{"alice"}}},
			config.Runtime{Name: "bound", Settings: registry.Settings{Command: agent, Env: env, Sessions: registry.SessionPolicy{BindUser: true}}},
			config.Runtime{Name: "jwt", Settings: registry.Settings{Command: agent, Env: env, HeaderAllowlist: []string{"Authorization"},
				Authorizer: registry.Authorizer{JWT: &auth.JWTAuthorizer{DiscoveryURL: at.issuer.DiscoveryURL(), AllowedClients: []string{"web"}}}}},
		)
	})
	return at
}

// signed is a request signed as key with the SDK's signer: at the given
// time, for region and service, over the body's hash.
type signed struct {
	key             auth.Key
	at              time.Time
	region, service string
}

func (at *authTarget) as(name string) signed {
	return signed{key: at.keys[name], at: time.Now(), region: "us-east-1", service: auth.Service}
}

func (s signed) request(t *testing.T, method, u string, h http.Header, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: s.key.AccessKeyID, SecretAccessKey: s.key.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), s.service, s.region, s.at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func (s signed) send(t *testing.T, tg *target, method, path string, h http.Header, body string) answer {
	t.Helper()
	return do(s.request(t, method, tg.url+path, h, body))
}

func (at *authTarget) runtimeNamesAs(t *testing.T, who string) []string {
	t.Helper()
	resp, err := http.DefaultClient.Do(at.as(who).request(t, http.MethodPost, at.url+api.PathRuntimes, nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list api.AgentRuntimeList
	json.NewDecoder(resp.Body).Decode(&list)
	var names []string
	for _, rt := range list.AgentRuntimes {
		names = append(names, rt.AgentRuntimeName)
	}
	return names
}

func authAttacks(t *testing.T, at *authTarget, l *attacktest.Ledger) {
	invoke := "/runtimes/plain/invocations"
	sid := func() http.Header {
		return http.Header{api.HeaderSessionID: {"attack-" + uuid.NewString()}, "Content-Type": {"application/json"}}
	}
	body := `{"op":"echo"}`
	alice := at.as("alice")

	// Who the caller is.
	l.Attack(t, "an unsigned call", at.send(http.MethodPost, invoke, sid(), body).is(api.ErrMissingAuthToken), nil)
	stranger := alice
	stranger.key = auth.NewKey("stranger")
	a := stranger.send(t, at.target, http.MethodPost, invoke, sid(), body)
	l.Attack(t, "a key berth never issued", a.is(api.ErrUnrecognizedClient), a)
	wrong := alice
	wrong.key.SecretAccessKey = at.keys["bob"].SecretAccessKey
	a = wrong.send(t, at.target, http.MethodPost, invoke, sid(), body)
	l.Attack(t, "alice's key ID with another secret", a.is(api.ErrInvalidSignature), a)
	for what, s := range map[string]signed{
		"a signature ten minutes old":           {key: alice.key, at: time.Now().Add(-10 * time.Minute), region: "us-east-1", service: auth.Service},
		"a signature ten minutes in the future": {key: alice.key, at: time.Now().Add(10 * time.Minute), region: "us-east-1", service: auth.Service},
		"a signature for another region":        {key: alice.key, at: time.Now(), region: "eu-west-1", service: auth.Service},
		"a signature for another service":       {key: alice.key, at: time.Now(), region: "us-east-1", service: "s3"},
	} {
		a := s.send(t, at.target, http.MethodPost, invoke, sid(), body)
		l.Attack(t, what, a.is(api.ErrInvalidSignature), a)
	}
	replay := func(what string, alter func(*http.Request)) {
		req := alice.request(t, http.MethodPost, at.url+invoke, sid(), body)
		alter(req)
		a := do(req)
		l.Attack(t, what, a.is(api.ErrInvalidSignature), a)
	}
	replay("a signed call replayed with another payload", func(r *http.Request) {
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader(`{"op":"crash"}`)), 14
	})
	replay("a signed call replayed into another session", func(r *http.Request) { r.Header.Set(api.HeaderSessionID, "attack-"+uuid.NewString()) })
	replay("a signed call replayed to another runtime", func(r *http.Request) { r.URL.Path = "/runtimes/private/invocations" })
	replay("a payload that does not match its X-Amz-Content-Sha256", func(r *http.Request) {
		r.Header.Set("X-Amz-Content-Sha256", strings.Repeat("0", 64))
	})
	t.Run("a signed hash the body does not match", func(t *testing.T) {
		sum := sha256.Sum256([]byte(body))
		h := sid()
		h.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		req := alice.request(t, http.MethodPost, at.url+invoke, h, body)
		req.Body, req.ContentLength = io.NopCloser(strings.NewReader(`{"op":"hang"}`)), 13
		a := do(req)
		l.Attack(t, "a body swapped under a signed X-Amz-Content-Sha256", a.is(api.ErrInvalidSignature), a)
	})
	for what, h := range map[string]http.Header{
		"two Authorization headers":  {"Authorization": {"AWS4-HMAC-SHA256 Credential=a", "AWS4-HMAC-SHA256 Credential=b"}},
		"Basic authentication":       {"Authorization": {"Basic YWxpY2U6c2VjcmV0"}},
		"a credential without scope": {"Authorization": {"AWS4-HMAC-SHA256 Credential=" + alice.key.AccessKeyID + ", SignedHeaders=host, Signature=00"}, "X-Amz-Date": {time.Now().UTC().Format("20060102T150405Z")}},
	} {
		hh := sid()
		for k, v := range h {
			hh[k] = v
		}
		a := at.send(http.MethodPost, invoke, hh, body)
		l.Attack(t, what, a.is(api.ErrIncompleteSignature), a)
	}
	token := alice
	req := token.request(t, http.MethodPost, at.url+invoke, sid(), body)
	req.Header.Set("X-Amz-Security-Token", "forged")
	a = do(req)
	l.Attack(t, "a session token beside a berth key", a.is(api.ErrUnrecognizedClient) || a.is(api.ErrInvalidSignature), a)

	// Presigned WebSocket URLs.
	presign := func(at0 time.Time, q url.Values) string {
		if q == nil {
			q = url.Values{}
		}
		q.Set("qualifier", "DEFAULT")
		q.Set(api.HeaderSessionID, "attack-"+uuid.NewString())
		q.Set("X-Amz-Expires", "60")
		r, _ := http.NewRequest(http.MethodGet, at.url+"/runtimes/plain/ws?"+q.Encode(), nil)
		u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: alice.key.AccessKeyID, SecretAccessKey: alice.key.SecretAccessKey},
			r, "UNSIGNED-PAYLOAD", auth.Service, "us-east-1", at0)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	wsHeaders := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	get := func(u string, h http.Header) answer {
		r, _ := http.NewRequest(http.MethodGet, u, nil)
		for k, v := range h {
			r.Header[k] = v
		}
		return do(r)
	}
	for what, u := range map[string]string{
		"a presigned URL with its session swapped": strings.Replace(presign(time.Now(), nil), "attack-", "attackX", 1),
		"a presigned URL with a header added":      presign(time.Now(), nil) + "&X-Amzn-Bedrock-AgentCore-Runtime-Custom-Role=admin",
		"a presigned URL past its expiry":          presign(time.Now().Add(-2*time.Minute), nil),
		"a presigned URL moved to another runtime": strings.Replace(presign(time.Now(), nil), "/runtimes/plain/", "/runtimes/private/", 1),
	} {
		a := get(u, wsHeaders)
		l.Attack(t, what, a.is(api.ErrInvalidSignature), a)
	}

	// What the caller may do.
	bob := at.as("bob")
	create := createBody("evilauth", code(at.agentDir, "testagent"), nil)
	a = alice.send(t, at.target, http.MethodPut, api.PathRuntimes, http.Header{"Content-Type": {"application/json"}}, create)
	l.Attack(t, "a non-admin creates a runtime", a.is(api.ErrAccessDenied), a)
	a = alice.send(t, at.target, http.MethodDelete, "/runtimes/plain/", nil, "")
	l.Attack(t, "a non-admin deletes a runtime", a.is(api.ErrAccessDenied), a)
	a = at.send(http.MethodPut, api.PathRuntimes, http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + at.issuer.Token(t, authtest.Claims{"sub": "x", "client_id": "web"})}}, create)
	l.Attack(t, "a runtime created with a bearer token", a.is(api.ErrAccessDenied), a)
	a = alice.send(t, at.target, http.MethodGet, "/metrics", nil, "")
	l.Attack(t, "a non-admin scrapes /metrics", a.is(api.ErrAccessDenied), a)
	a = at.send(http.MethodGet, "/metrics", nil, "")
	l.Attack(t, "an unsigned scrape of /metrics", a.is(api.ErrMissingAuthToken), a)
	a = at.send(http.MethodGet, api.PathSessions, nil, "")
	l.Attack(t, "an unsigned session listing", a.is(api.ErrMissingAuthToken), a)
	a = bob.send(t, at.target, http.MethodPost, "/runtimes/private/invocations", sid(), body)
	l.Attack(t, "a principal outside a runtime's invokers", a.is(api.ErrAccessDenied), a)
	a = bob.send(t, at.target, http.MethodPost, "/runtimes/private/stopruntimesession", sid(), "{}")
	l.Attack(t, "a stop by a principal outside a runtime's invokers", a.is(api.ErrAccessDenied), a)
	h := sid()
	h.Set(api.HeaderUserID, "alice")
	a = bob.send(t, at.target, http.MethodPost, invoke, h, body)
	l.Attack(t, "a user ID set without InvokeAgentRuntimeForUser", a.is(api.ErrAccessDenied), a)
	a = bob.send(t, at.target, http.MethodGet, "/runtimes/plain/", nil, "")
	var rt api.AgentRuntime
	resp, err := http.DefaultClient.Do(bob.request(t, http.MethodGet, at.url+"/runtimes/plain/", nil, ""))
	if err == nil {
		json.NewDecoder(resp.Body).Decode(&rt)
		resp.Body.Close()
	}
	l.Attack(t, "a non-admin reads a runtime's environment values", a.status == 200 && rt.EnvironmentVariables[attackToken] != "" &&
		rt.EnvironmentVariables[attackToken] != at.token, rt.EnvironmentVariables)

	// Another principal's bound session: alice's, as bob.
	own := sid()
	if a := alice.send(t, at.target, http.MethodPost, "/runtimes/bound/invocations", own, body); a.status != 200 {
		t.Fatalf("alice's session: %v", a)
	}
	var list api.SessionList
	resp, err = http.DefaultClient.Do(alice.request(t, http.MethodGet, at.url+api.PathSessions+"?runtime=bound", nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Sessions) != 1 {
		t.Fatalf("alice lists %d sessions", len(list.Sessions))
	}
	rec := list.Sessions[0].ID
	a = bob.send(t, at.target, http.MethodPost, "/runtimes/bound/invocations", own, body)
	l.Attack(t, "another principal's bound session, replayed", a.is(api.ErrAccessDenied), a)
	replayAs := own.Clone()
	replayAs.Set(api.HeaderUserID, "sigv4:alice")
	a = bob.send(t, at.target, http.MethodPost, "/runtimes/bound/invocations", replayAs, body)
	l.Attack(t, "another principal's bound session, replayed with her identity as user ID", a.is(api.ErrAccessDenied), a)
	a = bob.send(t, at.target, http.MethodPost, "/runtimes/bound/stopruntimesession", own, "{}")
	l.Attack(t, "another principal's bound session, stopped", a.is(api.ErrAccessDenied), a)
	for what, p := range map[string]string{
		"another principal's session log":   api.PathSessions + "/" + rec + "/logs",
		"another principal's session state": api.PathSessions + "/" + rec,
	} {
		a := bob.send(t, at.target, http.MethodGet, p, nil, "")
		l.Attack(t, what, a.is(api.ErrResourceNotFound), a)
	}
	a = bob.send(t, at.target, http.MethodPost, api.PathSessions+"/"+rec+"/stop", nil, "")
	l.Attack(t, "another principal's session, stopped through berth's API", a.is(api.ErrResourceNotFound), a)
	var bobs api.SessionList
	resp, err = http.DefaultClient.Do(bob.request(t, http.MethodGet, at.url+api.PathSessions+"?user=sigv4:alice", nil, ""))
	if err == nil {
		json.NewDecoder(resp.Body).Decode(&bobs)
		resp.Body.Close()
	}
	l.Attack(t, "another principal's sessions, listed", err == nil && len(bobs.Sessions) == 0, bobs)

	// JWT runtimes.
	jwtPath := "/runtimes/jwt/invocations"
	bearer := func(tok string) http.Header {
		h := sid()
		h.Set("Authorization", "Bearer "+tok)
		return h
	}
	good := at.issuer.Token(t, authtest.Claims{"sub": "u", "client_id": "web"})
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	for what, tok := range map[string]string{
		"a JWT signed with a key the issuer never published": at.issuer.ForeignToken(t, authtest.Claims{"sub": "u", "client_id": "web"}),
		"an unsigned JWT (alg none)":                         none,
		"an expired JWT":                                     at.issuer.Token(t, authtest.Claims{"sub": "u", "client_id": "web", "exp": time.Now().Add(-time.Minute).Unix()}),
		"a JWT for another client":                           at.issuer.Token(t, authtest.Claims{"sub": "u", "client_id": "evil"}),
		"a JWT from another issuer":                          at.issuer.Token(t, authtest.Claims{"sub": "u", "client_id": "web", "iss": "https://evil.example"}),
		"a JWT with its payload swapped":                     parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","client_id":"web","iss":"`+at.issuer.URL()+`","exp":9999999999}`)) + "." + parts[2],
	} {
		a := at.send(http.MethodPost, jwtPath, bearer(tok), body)
		l.Attack(t, what, a.is(api.ErrUnauthorized), a)
	}
	a = at.send(http.MethodPost, jwtPath, sid(), body)
	l.Attack(t, "a JWT runtime called without a token", a.is(api.ErrUnauthorized), a)
	a = at.as("ops").send(t, at.target, http.MethodPost, jwtPath, sid(), body)
	l.Attack(t, "a JWT runtime called with an admin's SigV4 signature", a.is(api.ErrAccessDenied), a)
	wsh := wsHeaders.Clone()
	wsh.Set(api.HeaderSessionID, "attack-"+uuid.NewString())
	wsh.Set("Sec-Websocket-Protocol", auth.BearerSubprotocol+"."+base64.RawURLEncoding.EncodeToString([]byte(at.issuer.ForeignToken(t, authtest.Claims{"sub": "u", "client_id": "web"})))+", "+auth.BearerSubprotocol)
	a = get(at.url+"/runtimes/jwt/ws", wsh)
	l.Attack(t, "a forged JWT in the WebSocket subprotocol", a.is(api.ErrUnauthorized), a)
	a = at.send(http.MethodPost, invoke, bearer(good), body)
	l.Attack(t, "a valid JWT on a SigV4 runtime", a.is(api.ErrAccessDenied), a)

	// What reaches the agent.
	spoof := bearer(good)
	spoof.Set("WorkloadAccessToken", "forged-token")
	resp, err = http.DefaultClient.Do(func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, at.url+jwtPath, strings.NewReader(body))
		r.Header = spoof
		return r
	}())
	var echo struct {
		Headers map[string][]string `json:"headers"`
	}
	if err == nil {
		json.NewDecoder(resp.Body).Decode(&echo)
		resp.Body.Close()
	}
	wat := echo.Headers[http.CanonicalHeaderKey("WorkloadAccessToken")]
	l.Attack(t, "a caller's own WorkloadAccessToken", err == nil && len(wat) == 1 && wat[0] != "forged-token", wat)

	// Settings an admin cannot make unsafe.
	ops := at.as("ops")
	for what, extra := range map[string]map[string]any{
		"Authorization allow-listed without a JWT authorizer": {"requestHeaderConfiguration": map[string]any{"requestHeaderAllowlist": []string{"Authorization"}}},
		"WorkloadAccessToken allow-listed":                    {"requestHeaderConfiguration": map[string]any{"requestHeaderAllowlist": []string{"WorkloadAccessToken"}}},
		"a JWT authorizer fetching keys over plain http": {"authorizerConfiguration": map[string]any{"customJWTAuthorizer": map[string]any{
			"discoveryUrl": "http://169.254.169.254/.well-known/openid-configuration", "allowedClients": []string{"x"}}}},
		"a JWT authorizer that checks nothing": {"authorizerConfiguration": map[string]any{"customJWTAuthorizer": map[string]any{
			"discoveryUrl": "https://idp.example/.well-known/openid-configuration"}}},
	} {
		a := ops.send(t, at.target, http.MethodPut, api.PathRuntimes, http.Header{"Content-Type": {"application/json"}},
			createBody("evilauth", code(at.agentDir, "testagent"), extra))
		l.Attack(t, what, a.is(api.ErrValidation), a)
	}
}
