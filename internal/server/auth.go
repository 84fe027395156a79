package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
)

// Authentication runs on every request after the guard: internal/auth
// verifies what the request carries and the Caller travels in its
// context. What a route then asks of the caller is its access level; a
// route registered without one needs an admin, so a new route is closed
// until someone says otherwise.

// access is what a route asks of its caller.
type access int

const (
	// accessAdmin: an admin principal (the default).
	accessAdmin access = iota
	// accessOpen: anyone (/ping, protected-resource metadata, unknown
	// paths).
	accessOpen
	// accessSignedIn: any SigV4 principal; the handler narrows what a
	// non-admin sees.
	accessSignedIn
	// accessRuntime: decided per runtime once the call resolves
	// (authorizeCall): its invokers or its JWT authorizer.
	accessRuntime
)

// handle registers h for pattern with the access it asks of callers.
func (s *Server) handle(pattern string, a access, h http.HandlerFunc) {
	s.access[pattern] = a
	s.mux.HandleFunc(pattern, h)
}

// authenticate verifies r's credentials and applies its route's access
// level. It returns the request to serve (its context carries the
// caller), or nil when it answered itself.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *http.Request {
	c, err := s.auth.Authenticate(r)
	if err != nil {
		s.writeError(w, r, s.bodyError(r, err))
		return nil
	}
	r = r.WithContext(auth.NewContext(r.Context(), c))
	_, pattern := s.mux.Handler(r)
	switch s.access[pattern] {
	case accessOpen, accessRuntime:
		return r
	case accessSignedIn:
		_, err = s.auth.Require(c, false)
	default:
		_, err = s.auth.Require(c, true)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	return r
}

// caller is the principal r comes from, and whether it administers berth.
func (s *Server) caller(r *http.Request) (auth.Principal, bool) {
	p := auth.FromContext(r.Context()).Principal
	return p, s.auth.Admin(p)
}

// authorizeCall decides whether r's caller may call the runtime res
// resolved to, and who the call is for. A JWT runtime's refusal of a
// missing or bad token carries the challenge that points at its
// protected-resource metadata.
func (s *Server) authorizeCall(r *http.Request, res registry.Resolved, qualifier string) (auth.Grant, error) {
	set := res.Version.Settings
	g, err := s.auth.Authorize(r.Context(), auth.FromContext(r.Context()),
		auth.Runtime{ARN: res.Runtime.ARN, Invokers: set.Invokers, JWT: set.Authorizer.JWT}, r.Header.Get(api.HeaderUserID))
	if err != nil && set.Authorizer.JWT != nil && errors.Is(err, errdefs.ErrUnauthenticated) {
		return g, &challenge{err: err, metadata: metadataURL(r, res.Runtime.ARN, qualifier)}
	}
	return g, err
}

// challenge is a 401 that tells a bearer-token client where to learn how
// to get a token (RFC 9728).
type challenge struct {
	err      error
	metadata string
}

func (c *challenge) Error() string { return c.err.Error() }
func (c *challenge) Unwrap() error { return c.err }

// metadataPath is where a runtime's protected-resource metadata is, after
// /runtimes/{arn}/invocations, as AgentCore serves it.
const metadataPath = "/.well-known/oauth-protected-resource"

// baseURL is the URL the client reached berth at.
func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func metadataURL(r *http.Request, arn, qualifier string) string {
	return api.InvocationURL(baseURL(r), arn) + metadataPath + "?qualifier=" + url.QueryEscape(qualifier)
}

// protectedResource serves a JWT runtime's RFC 9728 metadata: the
// resource and the authorization server that issues its tokens.
func (s *Server) protectedResource(w http.ResponseWriter, r *http.Request) {
	q, err := qualifier(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.reg.Resolve(r.Context(), r.PathValue("arn"), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	j := res.Version.Settings.Authorizer.JWT
	if j == nil {
		s.writeError(w, r, &apiError{typ: api.ErrResourceNotFound,
			msg: "runtime " + res.Runtime.Name + " has no JWT authorizer: it takes SigV4 signatures, and has no protected-resource metadata"})
		return
	}
	issuer, err := s.auth.Issuer(r.Context(), j)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ProtectedResourceMetadata{
		Resource:               api.InvocationURL(baseURL(r), res.Runtime.ARN),
		AuthorizationServers:   []string{issuer},
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        j.AllowedScopes,
	})
}

// bodyError explains a failure to read the request body while
// authenticating: a stalled body is the caller's, as in a call.
func (s *Server) bodyError(r *http.Request, err error) error {
	if errors.Is(context.Cause(r.Context()), errBodyStalled) {
		return &apiError{typ: api.ErrValidation, msg: "the request body stopped arriving: no byte for " + s.edge.BodyIdleTimeout.String(), cause: err}
	}
	return err
}
