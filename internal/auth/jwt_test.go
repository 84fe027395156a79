package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/auth/authtest"
	"github.com/berth-dev/berth/internal/errdefs"
)

const arn = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/chat-AbCdEfGhIj"

func newAuth(t *testing.T, keyRefresh time.Duration) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Options{Mode: auth.ModeNone, KeyRefresh: keyRefresh})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func bearer(tok string) *auth.Caller {
	return &auth.Caller{Principal: auth.Principal{Kind: auth.KindOpen}, Bearer: tok}
}

// Each of the authorizer's checks passes a token that meets it and refuses
// (401) one that does not; all configured checks must pass.
func TestJWTClaimChecks(t *testing.T) {
	is := authtest.NewIssuer(t)
	a := newAuth(t, -1)
	ctx := context.Background()
	base := authtest.Claims{"sub": "user-1", "aud": "berth-api", "client_id": "web", "scope": "openid agent:invoke",
		"groups": []string{"eng", "ops"}, "tier": "gold"}
	with := func(c authtest.Claims) authtest.Claims {
		out := authtest.Claims{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range c {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name   string
		cfg    auth.JWTAuthorizer
		claims authtest.Claims
		ok     bool
		why    string
	}{
		{"audience", auth.JWTAuthorizer{AllowedAudience: []string{"other", "berth-api"}}, base, true, ""},
		{"audience list", auth.JWTAuthorizer{AllowedAudience: []string{"berth-api"}}, with(authtest.Claims{"aud": []string{"x", "berth-api"}}), true, ""},
		{"wrong audience", auth.JWTAuthorizer{AllowedAudience: []string{"other"}}, base, false, "not an allowed audience"},
		{"no audience", auth.JWTAuthorizer{AllowedAudience: []string{"berth-api"}}, with(authtest.Claims{"aud": nil}), false, "not an allowed audience"},
		{"client", auth.JWTAuthorizer{AllowedClients: []string{"web"}}, base, true, ""},
		{"wrong client", auth.JWTAuthorizer{AllowedClients: []string{"cli"}}, base, false, "not an allowed client"},
		{"client_id, not aud", auth.JWTAuthorizer{AllowedClients: []string{"berth-api"}}, base, false, "not an allowed client"},
		{"scope", auth.JWTAuthorizer{AllowedScopes: []string{"agent:invoke"}}, base, true, ""},
		{"scp list", auth.JWTAuthorizer{AllowedScopes: []string{"agent:invoke"}}, with(authtest.Claims{"scope": nil, "scp": []string{"agent:invoke"}}), true, ""},
		{"wrong scope", auth.JWTAuthorizer{AllowedScopes: []string{"agent:admin"}}, base, false, "no scope"},
		{"equals", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "tier", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "gold"}}}, base, true, ""},
		{"equals fails", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "tier", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "silver"}}}, base, false, "claim tier"},
		{"equals on a list", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "eng"}}}, base, false, "claim groups"},
		{"contains", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContains, Value: "ops"}}}, base, true, ""},
		{"contains fails", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContains, Value: "hr"}}}, base, false, "claim groups"},
		{"contains any", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContainsAny, Values: []string{"hr", "eng"}}}}, base, true, ""},
		{"contains any fails", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "groups", ValueType: auth.ClaimStringArray, Operator: auth.MatchContainsAny, Values: []string{"hr", "legal"}}}}, base, false, "claim groups"},
		{"missing claim", auth.JWTAuthorizer{CustomClaims: []auth.CustomClaim{{Name: "dept", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "x"}}}, base, false, "claim dept"},
		{"all checks pass", auth.JWTAuthorizer{AllowedAudience: []string{"berth-api"}, AllowedClients: []string{"web"}, AllowedScopes: []string{"openid"},
			CustomClaims: []auth.CustomClaim{{Name: "tier", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "gold"}}}, base, true, ""},
		{"one of all fails", auth.JWTAuthorizer{AllowedAudience: []string{"berth-api"}, AllowedClients: []string{"web"}, AllowedScopes: []string{"openid"},
			CustomClaims: []auth.CustomClaim{{Name: "tier", ValueType: auth.ClaimString, Operator: auth.MatchEquals, Value: "silver"}}}, base, false, "claim tier"},
		{"expired", auth.JWTAuthorizer{AllowedClients: []string{"web"}}, with(authtest.Claims{"exp": time.Now().Add(-time.Minute).Unix()}), false, "expired"},
		{"no sub", auth.JWTAuthorizer{AllowedClients: []string{"web"}}, with(authtest.Claims{"sub": nil}), false, "no sub"},
		{"other issuer", auth.JWTAuthorizer{AllowedClients: []string{"web"}}, with(authtest.Claims{"iss": "https://evil.example"}), false, "different provider"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.DiscoveryURL = is.DiscoveryURL()
			g, err := a.Authorize(ctx, bearer(is.Token(t, tc.claims)), auth.Runtime{ARN: arn, JWT: &cfg}, "")
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				want := auth.Principal{Kind: auth.KindJWT, Issuer: is.URL(), Subject: "user-1", ClientID: "web"}
				if g.Principal != want || g.Owner != "jwt:user-1@"+is.URL() || !strings.HasPrefix(g.WorkloadToken, "berth-wat-v1.") {
					t.Errorf("grant %+v", g)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("err = %v, want unauthenticated saying %q", err, tc.why)
			}
		})
	}
}

// Tokens are only as good as their signature: a key the issuer never
// published, an unsigned token or a mangled one are refused.
func TestJWTSignatures(t *testing.T) {
	is := authtest.NewIssuer(t)
	a := newAuth(t, -1)
	cfg := &auth.JWTAuthorizer{DiscoveryURL: is.DiscoveryURL(), AllowedClients: []string{"web"}}
	claims := authtest.Claims{"sub": "u", "client_id": "web"}
	good := is.Token(t, claims)
	head, rest, _ := strings.Cut(good, ".")
	payload, _, _ := strings.Cut(rest, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + "."
	hs := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + payload + ".c2ln"
	for name, tok := range map[string]string{
		"foreign key":     is.ForeignToken(t, claims),
		"alg none":        none,
		"alg HS256":       hs,
		"not a JWT":       "hello",
		"swapped payload": head + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","client_id":"web","iss":"`+is.URL()+`","exp":9999999999}`)) + "." + strings.Split(good, ".")[2],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := a.Authorize(context.Background(), bearer(tok), auth.Runtime{ARN: arn, JWT: cfg}, "")
			if !errors.Is(err, errdefs.ErrUnauthenticated) {
				t.Fatalf("err = %v, want unauthenticated", err)
			}
		})
	}
}

// A token signed with a rotated-in key is accepted: berth fetches the key
// set again on a key ID it does not hold, but not more often than its
// floor, however many unknown key IDs arrive.
func TestJWTKeyRotation(t *testing.T) {
	is := authtest.NewIssuer(t)
	ctx := context.Background()
	cfg := &auth.JWTAuthorizer{DiscoveryURL: is.DiscoveryURL(), AllowedClients: []string{"web"}}
	claims := authtest.Claims{"sub": "u", "client_id": "web"}

	a := newAuth(t, -1)
	if _, err := a.Authorize(ctx, bearer(is.Token(t, claims)), auth.Runtime{ARN: arn, JWT: cfg}, ""); err != nil {
		t.Fatal(err)
	}
	if n := is.KeyFetches(); n != 1 {
		t.Fatalf("%d key-set fetches for the first token, want 1", n)
	}
	if _, err := a.Authorize(ctx, bearer(is.Token(t, claims)), auth.Runtime{ARN: arn, JWT: cfg}, ""); err != nil {
		t.Fatal(err)
	}
	if n := is.KeyFetches(); n != 1 {
		t.Fatalf("%d key-set fetches after a second token, want the cached 1", n)
	}
	is.Rotate()
	if _, err := a.Authorize(ctx, bearer(is.Token(t, claims)), auth.Runtime{ARN: arn, JWT: cfg}, ""); err != nil {
		t.Fatalf("a token from the rotated key: %v", err)
	}
	if n := is.KeyFetches(); n != 2 {
		t.Fatalf("%d key-set fetches after rotation, want 2", n)
	}

	// With a floor, forged key IDs cost one fetch per period.
	is2 := authtest.NewIssuer(t)
	cfg2 := &auth.JWTAuthorizer{DiscoveryURL: is2.DiscoveryURL(), AllowedClients: []string{"web"}}
	b := newAuth(t, time.Hour)
	if _, err := b.Authorize(ctx, bearer(is2.Token(t, claims)), auth.Runtime{ARN: arn, JWT: cfg2}, ""); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := b.Authorize(ctx, bearer(is2.ForeignToken(t, claims)), auth.Runtime{ARN: arn, JWT: cfg2}, ""); err == nil {
			t.Fatal("a forged token passed")
		}
	}
	if n := is2.KeyFetches(); n != 1 {
		t.Errorf("%d key-set fetches for 20 forged tokens within the floor, want 1", n)
	}
}

// A JWT runtime takes bearer tokens only; a SigV4 runtime takes none.
func TestAuthorizationMethods(t *testing.T) {
	is := authtest.NewIssuer(t)
	ctx := context.Background()
	jwtRT := auth.Runtime{ARN: arn, JWT: &auth.JWTAuthorizer{DiscoveryURL: is.DiscoveryURL(), AllowedClients: []string{"web"}}}
	tok := is.Token(t, authtest.Claims{"sub": "u", "client_id": "web"})
	a := newAuth(t, -1)

	_, err := a.Authorize(ctx, &auth.Caller{Principal: auth.Principal{Kind: auth.KindSigV4, Name: "alice"}, SigV4: true}, jwtRT, "")
	if !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "authorization method mismatch") {
		t.Errorf("SigV4 on a JWT runtime: %v", err)
	}
	if _, err := a.Authorize(ctx, &auth.Caller{}, jwtRT, ""); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("no token on a JWT runtime: %v", err)
	}
	if _, err := a.Authorize(ctx, bearer(tok), jwtRT, "someone"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("a user ID on a JWT runtime: %v", err)
	}
	// Authentication off: a runtime's JWT authorizer still holds.
	if _, err := a.Authorize(ctx, &auth.Caller{Principal: auth.Principal{Kind: auth.KindOpen}}, jwtRT, ""); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("open caller on a JWT runtime: %v", err)
	}
}

func TestSubprotocolToken(t *testing.T) {
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", "chat.v1, base64UrlBearerAuthorization."+base64.RawURLEncoding.EncodeToString([]byte("tok.en.x"))+", base64UrlBearerAuthorization")
	if tok, ok := auth.SubprotocolToken(h); !ok || tok != "tok.en.x" {
		t.Errorf("token %q %v", tok, ok)
	}
	if got := auth.OtherSubprotocols(h); len(got) != 1 || got[0] != "chat.v1" {
		t.Errorf("others %q", got)
	}
}
