// Package authtest serves an OpenID Connect issuer on loopback for tests:
// a discovery document and a JSON Web Key Set, and tokens signed with its
// current key. Its keys rotate on demand, and it counts key-set fetches.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is a test OIDC issuer.
type Issuer struct {
	srv        *httptest.Server
	keyFetches atomic.Int64

	// mu guards the fields below.
	mu        sync.Mutex
	keys      []jose.JSONWebKey // private; the last one signs
	published int               // how many of keys the JWKS shows
	n         int
	foreign   *ecdsa.PrivateKey // signs ForeignToken
}

// NewIssuer starts an issuer with one RSA key; it stops with the test.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{}
	is.addKey()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL(),
			"jwks_uri":                              is.URL() + "/jwks",
			"authorization_endpoint":                is.URL() + "/authorize",
			"token_endpoint":                        is.URL() + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.keyFetches.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.keys[:is.published] {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *Issuer) addKey() {
	is.n++
	var key any
	alg := "RS256"
	if is.n%2 == 0 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		key, alg = k, "ES256"
	} else {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		key = k
	}
	is.keys = append(is.keys, jose.JSONWebKey{Key: key, KeyID: fmt.Sprintf("key-%d", is.n), Algorithm: alg, Use: "sig"})
	is.published = len(is.keys)
}

// URL is the issuer's identifier (its iss).
func (is *Issuer) URL() string { return is.srv.URL }

// DiscoveryURL is where its discovery document is.
func (is *Issuer) DiscoveryURL() string { return is.srv.URL + "/.well-known/openid-configuration" }

// Rotate makes a new signing key (alternately ECDSA and RSA) and
// publishes it beside the old ones.
func (is *Issuer) Rotate() {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.addKey()
}

// KeyFetches counts key-set fetches.
func (is *Issuer) KeyFetches() int64 { return is.keyFetches.Load() }

// Claims are a token's claims; Token fills iss, iat and exp unless set.
type Claims map[string]any

// Token signs claims with the current key.
func (is *Issuer) Token(t testing.TB, c Claims) string {
	t.Helper()
	is.mu.Lock()
	key := is.keys[len(is.keys)-1]
	is.mu.Unlock()
	return is.sign(t, key, c)
}

// ForeignToken signs claims with a key the issuer never published, under
// the current key's ID.
func (is *Issuer) ForeignToken(t testing.TB, c Claims) string {
	t.Helper()
	is.mu.Lock()
	if is.foreign == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			is.mu.Unlock()
			t.Fatal(err)
		}
		is.foreign = k
	}
	key := jose.JSONWebKey{Key: is.foreign, KeyID: is.keys[len(is.keys)-1].KeyID, Algorithm: "ES256"}
	is.mu.Unlock()
	return is.sign(t, key, c)
}

func (is *Issuer) sign(t testing.TB, key jose.JSONWebKey, c Claims) string {
	t.Helper()
	full := Claims{"iss": is.URL(), "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range c {
		if v == nil {
			delete(full, k)
			continue
		}
		full[k] = v
	}
	payload, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
