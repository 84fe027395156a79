package image

import (
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerKeychain reads credentials from Docker's config.json in dir, with
// its credential helpers (credHelpers per registry, credsStore for the
// rest: docker-credential-ecr-login for ECR, say); anonymous where it has
// none. An empty dir is Docker's own default ($DOCKER_CONFIG, else
// ~/.docker, then Podman's auth.json).
func dockerKeychain(dir string) authn.Keychain {
	if dir == "" {
		return authn.DefaultKeychain
	}
	return configKeychain{dir}
}

type configKeychain struct{ dir string }

// Resolve implements authn.Keychain. The file is read on every pull, so a
// `docker login` takes effect without a restart.
func (k configKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	cf, err := config.Load(k.dir)
	if err != nil {
		return nil, fmt.Errorf("read docker config in %s: %w", k.dir, err)
	}
	key := target.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	c, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", target.RegistryStr(), err)
	}
	if c == (types.AuthConfig{ServerAddress: c.ServerAddress}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: c.Username, Password: c.Password, Auth: c.Auth,
		IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken,
	}), nil
}

// plainHTTP reports whether the registry at host (host or host:port) may
// be reached without TLS: a loopback one, or one the operator listed.
func (s *Store) plainHTTP(host string) bool {
	if slices.Contains(s.insecure, host) {
		return true
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if slices.Contains(s.insecure, h) || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// plainHTTPGuard refuses plain HTTP to registries that may not have it.
// go-containerregistry itself falls back to HTTP for private-range
// addresses, and a registry may redirect a blob anywhere.
type plainHTTPGuard struct {
	next    http.RoundTripper
	allowed func(host string) bool
}

func (g *plainHTTPGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !g.allowed(r.URL.Host) {
		return nil, fmt.Errorf("plain HTTP to %s refused: only loopback registries and those in insecure_registries may be reached without TLS", r.URL.Host)
	}
	return g.next.RoundTrip(r)
}

// reference parses ref, allowing plain HTTP where plainHTTP does.
func (s *Store) reference(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if s.plainHTTP(r.Context().RegistryStr()) {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}
