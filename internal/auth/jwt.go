package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// JWTAuthorizer is AgentCore's customJWTAuthorizer: the issuer and its
// keys come from DiscoveryURL (an OIDC discovery document), and a token
// passes only if every check that is configured passes. The registry's
// rulebook checks a runtime's authorizer; this package runs it.
type JWTAuthorizer struct {
	DiscoveryURL string `json:"discovery_url" yaml:"discovery_url"`
	// AllowedAudience: the token's aud must name one of these.
	AllowedAudience []string `json:"allowed_audience,omitempty" yaml:"allowed_audience"`
	// AllowedClients: the token's client_id claim must be one of these.
	AllowedClients []string `json:"allowed_clients,omitempty" yaml:"allowed_clients"`
	// AllowedScopes: at least one of the token's scopes must be one of
	// these.
	AllowedScopes []string `json:"allowed_scopes,omitempty" yaml:"allowed_scopes"`
	// CustomClaims must all match.
	CustomClaims []CustomClaim `json:"custom_claims,omitempty" yaml:"custom_claims"`
}

// CustomClaim checks one claim: EQUALS a STRING claim against Value;
// CONTAINS, a STRING_ARRAY claim holding Value; CONTAINS_ANY, a
// STRING_ARRAY claim holding one of Values.
type CustomClaim struct {
	Name      string   `json:"name" yaml:"name"`
	ValueType string   `json:"value_type" yaml:"value_type"`
	Operator  string   `json:"operator" yaml:"operator"`
	Value     string   `json:"value,omitempty" yaml:"value"`
	Values    []string `json:"values,omitempty" yaml:"values"`
}

// Claim value types and match operators (AgentCore's enums).
const (
	ClaimString      = "STRING"
	ClaimStringArray = "STRING_ARRAY"
	MatchEquals      = "EQUALS"
	MatchContains    = "CONTAINS"
	MatchContainsAny = "CONTAINS_ANY"
)

// DiscoverySuffix ends every discovery URL.
const DiscoverySuffix = "/.well-known/openid-configuration"

// signingAlgs are the algorithms berth accepts, go-oidc's asymmetric set:
// never none, never HMAC (whose key would be public).
var signingAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// maxFetch caps a discovery document or key set.
const maxFetch = 1 << 20

// jwtVerifier verifies tokens for every JWT authorizer, with one issuer
// (discovery document and key set) per discovery URL.
type jwtVerifier struct {
	client     *http.Client
	keyRefresh time.Duration
	now        func() time.Time
	log        *slog.Logger

	// mu guards issuers.
	mu      sync.Mutex
	issuers map[string]*issuerEntry
}

// issuerEntry is one discovery URL's issuer, discovered on first use; a
// failed discovery is retried after a pause.
type issuerEntry struct {
	// mu guards the fields below and serialises discovery.
	mu       sync.Mutex
	is       *issuer
	err      error
	failedAt time.Time
}

// issuer is what discovery found: the issuer's name, a verifier for its
// tokens, and its key set.
type issuer struct {
	name     string
	verifier *oidc.IDTokenVerifier
}

const rediscoverAfter = 5 * time.Second

func newJWTVerifier(client *http.Client, keyRefresh time.Duration, now func() time.Time, log *slog.Logger) *jwtVerifier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if keyRefresh == 0 {
		keyRefresh = 10 * time.Second
	}
	return &jwtVerifier{client: limitedClient(client), keyRefresh: keyRefresh, now: now, log: log,
		issuers: map[string]*issuerEntry{}}
}

// limitedClient wraps c so no response body it reads exceeds maxFetch.
func limitedClient(c *http.Client) *http.Client {
	cp := *c
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cp.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err == nil {
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.LimitReader(resp.Body, maxFetch), resp.Body}
		}
		return resp, err
	})
	return &cp
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// issuer returns the issuer behind discoveryURL, discovering it if need be.
func (v *jwtVerifier) issuer(ctx context.Context, discoveryURL string) (*issuer, error) {
	v.mu.Lock()
	e := v.issuers[discoveryURL]
	if e == nil {
		e = &issuerEntry{}
		v.issuers[discoveryURL] = e
	}
	v.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.is != nil {
		return e.is, nil
	}
	if e.err != nil && v.now().Sub(e.failedAt) < rediscoverAfter {
		return nil, e.err
	}
	is, err := v.discover(ctx, discoveryURL)
	if err != nil {
		v.log.Warn("JWT authorizer: discovery failed", "discovery_url", discoveryURL, "err", err)
		e.err = fmt.Errorf("the runtime's token issuer cannot be reached (its discovery document failed); try again: %w", errdefs.ErrUnavailable)
		e.failedAt = v.now()
		return nil, e.err
	}
	e.is, e.err = is, nil
	return is, nil
}

// discover reads the discovery document; its issuer must be the discovery
// URL without the well-known suffix, as OIDC requires.
func (v *jwtVerifier) discover(ctx context.Context, discoveryURL string) (*issuer, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.client), strings.TrimSuffix(discoveryURL, DiscoverySuffix))
	if err != nil {
		return nil, err
	}
	var meta struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, err
	}
	if meta.JWKSURI == "" {
		return nil, errors.New("the discovery document names no jwks_uri")
	}
	ks := &keySet{url: meta.JWKSURI, client: v.client, refresh: v.keyRefresh, now: v.now}
	return &issuer{
		name:     meta.Issuer,
		verifier: oidc.NewVerifier(meta.Issuer, ks, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: algs(meta.Algs), Now: v.now}),
	}, nil
}

// algs keeps the algorithms an issuer advertises that berth accepts; all
// of berth's when it advertises none it knows.
func algs(advertised []string) []string {
	var out []string
	for _, a := range advertised {
		if slices.Contains(signingAlgs, jose.SignatureAlgorithm(a)) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		for _, a := range signingAlgs {
			out = append(out, string(a))
		}
	}
	return out
}

// unauthorized is a refused token: 401 UnauthorizedException.
func unauthorized(format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", msgBadToken, fmt.Sprintf(format, args...), errdefs.ErrUnauthenticated)
}

// verify checks token against cfg: signature, issuer, expiry, then each
// configured check.
func (v *jwtVerifier) verify(ctx context.Context, cfg *JWTAuthorizer, token string) (Principal, error) {
	is, err := v.issuer(ctx, cfg.DiscoveryURL)
	if err != nil {
		return Principal{}, err
	}
	tok, err := is.verifier.Verify(ctx, token)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return Principal{}, unauthorized("the token expired at %s", expired.Expiry.UTC().Format(time.RFC3339))
		}
		return Principal{}, unauthorized("%s", strings.TrimPrefix(err.Error(), "oidc: "))
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, unauthorized("unreadable claims")
	}
	if tok.Subject == "" {
		return Principal{}, unauthorized("the token has no sub claim")
	}
	if len(cfg.AllowedAudience) > 0 && !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(cfg.AllowedAudience, a) }) {
		return Principal{}, unauthorized("aud %q is not an allowed audience", tok.Audience)
	}
	clientID, _ := claims["client_id"].(string)
	if len(cfg.AllowedClients) > 0 && !slices.Contains(cfg.AllowedClients, clientID) {
		return Principal{}, unauthorized("client_id %q is not an allowed client", clientID)
	}
	if len(cfg.AllowedScopes) > 0 && !slices.ContainsFunc(scopes(claims), func(s string) bool { return slices.Contains(cfg.AllowedScopes, s) }) {
		return Principal{}, unauthorized("no scope of the token is an allowed scope")
	}
	for _, c := range cfg.CustomClaims {
		if !c.matches(claims[c.Name]) {
			return Principal{}, unauthorized("claim %s does not match (%s)", c.Name, c.Operator)
		}
	}
	return Principal{Kind: KindJWT, Issuer: tok.Issuer, Subject: tok.Subject, ClientID: clientID}, nil
}

// scopes reads the token's scopes: OAuth's space-separated scope claim, or
// an scp claim (a string or a list).
func scopes(claims map[string]any) []string {
	var out []string
	for _, name := range []string{"scope", "scp"} {
		switch v := claims[name].(type) {
		case string:
			out = append(out, strings.Fields(v)...)
		case []any:
			out = append(out, strs(v)...)
		}
	}
	return out
}

func strs(v []any) []string {
	out := make([]string, 0, len(v))
	for _, e := range v {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (c CustomClaim) matches(v any) bool {
	switch c.Operator {
	case MatchEquals:
		s, ok := v.(string)
		return ok && c.ValueType == ClaimString && s == c.Value
	case MatchContains:
		l, ok := v.([]any)
		return ok && c.ValueType == ClaimStringArray && slices.Contains(strs(l), c.Value)
	case MatchContainsAny:
		l, ok := v.([]any)
		return ok && c.ValueType == ClaimStringArray && slices.ContainsFunc(strs(l), func(s string) bool { return slices.Contains(c.Values, s) })
	}
	return false
}

// keySet is an issuer's JSON Web Key Set, fetched on first use and again
// when a token names a key it does not hold (a rotation), but never more
// often than refresh, so tokens with made-up key IDs cannot make berth
// hammer the issuer.
type keySet struct {
	url     string
	client  *http.Client
	refresh time.Duration
	now     func() time.Time

	// mu guards keys and fetched, and serialises fetches.
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time
}

var _ oidc.KeySet = (*keySet)(nil)

// VerifySignature checks jwt's signature with the issuer's keys and
// returns its payload.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("the token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	defer k.mu.Unlock()
	if payload, ok := verifyWith(jws, kid, k.keys); ok {
		return payload, nil
	}
	if !k.fetched.IsZero() && k.refresh > 0 && k.now().Sub(k.fetched) < k.refresh {
		return nil, errors.New("no key of the issuer verifies the token's signature")
	}
	keys, err := k.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch the issuer's keys: %w", err)
	}
	k.keys, k.fetched = keys, k.now()
	if payload, ok := verifyWith(jws, kid, k.keys); ok {
		return payload, nil
	}
	return nil, errors.New("no key of the issuer verifies the token's signature")
}

func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, bool) {
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&key); err == nil {
			return payload, true
		}
	}
	return nil, false
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode %s: %w", k.url, err)
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			keys = append(keys, key.Public())
		}
	}
	return keys, nil
}

// BearerSubprotocol is the sentinel WebSocket subprotocol a browser offers
// beside "base64UrlBearerAuthorization.<base64url token>", its one way to
// send a bearer token.
const BearerSubprotocol = "base64UrlBearerAuthorization"

// SubprotocolToken finds a bearer token offered in Sec-WebSocket-Protocol.
func SubprotocolToken(h http.Header) (string, bool) {
	for _, p := range subprotocols(h) {
		if enc, ok := strings.CutPrefix(p, BearerSubprotocol+"."); ok {
			tok, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
			if err == nil && len(tok) > 0 {
				return string(tok), true
			}
		}
	}
	return "", false
}

// SentinelOffered reports whether the client offered the bearer sentinel
// as a subprotocol, so the server may choose it.
func SentinelOffered(h http.Header) bool {
	return slices.Contains(subprotocols(h), BearerSubprotocol)
}

// OtherSubprotocols are the subprotocols offered beside berth's bearer
// ones: what the agent may choose from.
func OtherSubprotocols(h http.Header) []string {
	var out []string
	for _, p := range subprotocols(h) {
		if p != BearerSubprotocol && !strings.HasPrefix(p, BearerSubprotocol+".") {
			out = append(out, p)
		}
	}
	return out
}

func subprotocols(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Sec-Websocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
