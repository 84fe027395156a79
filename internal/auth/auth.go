// Package auth decides who a caller is and what it may do. It holds the
// principals of berth's credentials file, verifies SigV4 signatures by
// re-signing each request with the AWS SDK's own signer, runs runtimes' JWT
// authorizers (AgentCore's customJWTAuthorizer), mints the workload access
// tokens agents receive, and applies the operator's policy: admins,
// invokers, and who may act for a user.
//
// It is a leaf: it never imports the session manager, the server, the
// registry or the store. The server calls Authenticate on every request,
// carries the Caller in the request's context, and calls Authorize once it
// knows which runtime a call names.
package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// Mode is how berth authenticates callers.
type Mode string

// The modes.
const (
	// ModeNone trusts every caller: the loopback quick start.
	ModeNone Mode = "none"
	// ModeSigV4 verifies AWS SigV4 signatures against the credentials file.
	ModeSigV4 Mode = "sigv4"
)

// Kind says how a principal proved who it is.
type Kind string

// The kinds of principal.
const (
	// KindOpen is every caller while authentication is off: it may do
	// anything.
	KindOpen Kind = "open"
	// KindSigV4 signed with a key of the credentials file.
	KindSigV4 Kind = "sigv4"
	// KindJWT presented a token a runtime's JWT authorizer accepted.
	KindJWT Kind = "jwt"
)

// Principal is who a request comes from. The zero Principal is nobody.
type Principal struct {
	Kind Kind
	// Name is the credentials-file profile of a SigV4 principal.
	Name string
	// Issuer and Subject identify a JWT's bearer; ClientID is the
	// token's client_id claim.
	Issuer, Subject, ClientID string
}

// Authenticated reports whether p proved anything.
func (p Principal) Authenticated() bool { return p.Kind != "" }

// ID is the identity sessions bind to and the session API filters by:
// "sigv4:NAME" or "jwt:SUBJECT@ISSUER"; empty while authentication is
// off or for nobody.
func (p Principal) ID() string {
	switch p.Kind {
	case KindSigV4:
		return "sigv4:" + p.Name
	case KindJWT:
		return "jwt:" + p.Subject + "@" + p.Issuer
	}
	return ""
}

// String names p for logs.
func (p Principal) String() string {
	switch p.Kind {
	case KindOpen:
		return "open"
	case "":
		return "nobody"
	}
	return p.ID()
}

// Caller is what a request presented: a verified principal, and a bearer
// token still to be checked by the authorizer of the runtime it calls.
type Caller struct {
	Principal Principal
	// Bearer is a bearer token from the Authorization header or the
	// WebSocket subprotocol form, not yet verified.
	Bearer string
	// SigV4 reports that the request carried a SigV4 signature, in its
	// headers or its query (verified unless authentication is off).
	SigV4 bool
}

type callerKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// FromContext returns the caller ctx carries, or nobody.
func FromContext(ctx context.Context) *Caller {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok {
		return c
	}
	return &Caller{}
}

// Error is an authentication failure AWS names with an error type of its
// own (UnrecognizedClientException, InvalidSignatureException, ...), not
// an errdefs class: the server answers with ErrorType as it is.
type Error struct {
	Type api.ErrorType
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ErrorType is the AWS error type the caller sees.
func (e *Error) ErrorType() api.ErrorType { return e.Type }

func authErr(t api.ErrorType, format string, args ...any) *Error {
	return &Error{Type: t, Msg: fmt.Sprintf(format, args...)}
}

// AWS's wording for its authentication failures.
const (
	msgUnrecognizedClient = "The security token included in the request is invalid."
	msgSignatureMismatch  = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgMissingToken = "Missing Authentication Token"
	// msgBadToken is AgentCore's UnauthorizedException message.
	msgBadToken = "JWT bearer token is invalid or not found"
)

// Policy is the operator's say over principals: who administers berth and
// who may act for a user.
type Policy struct {
	// Admins may use the control plane, berth's own API and /metrics.
	Admins []string
	// ActAsUser may set X-Amzn-Bedrock-AgentCore-Runtime-User-Id, as
	// AgentCore's InvokeAgentRuntimeForUser permission allows; admins may
	// too.
	ActAsUser []string
}

// Admin reports whether p administers berth: every caller does while
// authentication is off.
func (pol Policy) Admin(p Principal) bool {
	return p.Kind == KindOpen || p.Kind == KindSigV4 && slices.Contains(pol.Admins, p.Name)
}

// MayActAsUser reports whether p may name the user a call is for.
func (pol Policy) MayActAsUser(p Principal) bool {
	return pol.Admin(p) || p.Kind == KindSigV4 && slices.Contains(pol.ActAsUser, p.Name)
}

// Options configure an Authenticator.
type Options struct {
	Mode Mode
	// Keys are the credentials file's principals (ModeSigV4).
	Keys *Keyring
	// Region is the one region signatures must be scoped to.
	Region string
	Policy Policy
	// SpoolDir holds request bodies over the memory limit that must be
	// read whole to check a signature; MaxBody caps them.
	SpoolDir string
	MaxBody  int64
	// WorkloadKey keys workload access tokens; a fresh random key when nil.
	WorkloadKey []byte
	// HTTPClient fetches OIDC discovery documents and key sets; it must
	// have a timeout. Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// KeyRefresh is the least time between two fetches of one issuer's
	// key set, so forged key IDs cannot make berth hammer the issuer.
	// Default 10 s; negative means no floor (tests).
	KeyRefresh time.Duration
	// Now is the clock; time.Now by default.
	Now    func() time.Time
	Logger *slog.Logger
}

// Authenticator authenticates requests and authorizes calls.
type Authenticator struct {
	mode   Mode
	policy Policy
	sigv4  *sigv4Verifier
	jwt    *jwtVerifier
	wat    []byte
	log    *slog.Logger
}

// New returns an Authenticator.
func New(opts Options) (*Authenticator, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	switch opts.Mode {
	case ModeNone:
	case ModeSigV4:
		if opts.Keys == nil {
			return nil, fmt.Errorf("auth: mode sigv4 needs a credentials file")
		}
		if opts.Region == "" {
			return nil, fmt.Errorf("auth: mode sigv4 needs a region")
		}
	default:
		return nil, fmt.Errorf("auth: unknown mode %q", opts.Mode)
	}
	wat := opts.WorkloadKey
	if len(wat) == 0 {
		wat = randomKey()
	}
	return &Authenticator{
		mode:   opts.Mode,
		policy: opts.Policy,
		sigv4: &sigv4Verifier{keys: opts.Keys, region: opts.Region, now: opts.Now,
			spoolDir: opts.SpoolDir, maxBody: opts.MaxBody, log: opts.Logger},
		jwt: newJWTVerifier(opts.HTTPClient, opts.KeyRefresh, opts.Now, opts.Logger),
		wat: wat,
		log: opts.Logger,
	}, nil
}

// Mode is how a runs.
func (a *Authenticator) Mode() Mode { return a.mode }

// Admin reports whether p administers berth.
func (a *Authenticator) Admin(p Principal) bool { return a.policy.Admin(p) }

// Authenticate verifies the credentials r carries and says who presented
// them. A SigV4 signature is verified here; a bearer token waits for the
// authorizer of the runtime the call names (Authorize). A request that
// carries nothing is nobody, not an error: what it may reach is the
// route's to decide.
//
// Authenticate may replace r.Body, with one that replays what it read to
// hash the payload, or one that fails its last read if the payload does
// not match its signed hash; the caller closes r.Body when the request is
// done.
func (a *Authenticator) Authenticate(r *http.Request) (*Caller, error) {
	c := &Caller{}
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return nil, authErr(api.ErrIncompleteSignature, "a request carries at most one Authorization header")
	}
	var header string
	if len(authz) == 1 {
		header = strings.TrimSpace(authz[0])
	}
	presigned := isPresigned(r)
	scheme, rest, _ := strings.Cut(header, " ")
	switch {
	case header == "":
	case scheme == sigv4Algorithm:
		c.SigV4 = true
	case strings.EqualFold(scheme, "Bearer"):
		c.Bearer = strings.TrimSpace(rest)
	case a.mode == ModeSigV4:
		return nil, authErr(api.ErrIncompleteSignature,
			"Authorization header must be AWS4-HMAC-SHA256 (SigV4) or Bearer, not %q", clip(scheme, 40))
	}
	if presigned {
		if c.SigV4 || c.Bearer != "" {
			return nil, authErr(api.ErrInvalidSignature,
				"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified")
		}
		c.SigV4 = true
	}
	if c.Bearer == "" && !c.SigV4 {
		if tok, ok := SubprotocolToken(r.Header); ok {
			c.Bearer = tok
		}
	}
	if a.mode == ModeNone {
		c.Principal = Principal{Kind: KindOpen}
		return c, nil
	}
	if c.SigV4 {
		p, err := a.sigv4.verify(r, presigned)
		if err != nil {
			return nil, err
		}
		c.Principal = p
	}
	return c, nil
}

// Require checks that c may use what only a signed-in principal (admin
// false) or an admin (admin true) may: the control plane, berth's own API,
// /metrics. It returns c's principal.
func (a *Authenticator) Require(c *Caller, admin bool) (Principal, error) {
	p := c.Principal
	switch {
	case p.Kind == KindOpen:
		return p, nil
	case !p.Authenticated() && c.Bearer != "":
		return p, fmt.Errorf("berth's control plane and own API take SigV4 signatures, not bearer tokens: %w", errdefs.ErrPermissionDenied)
	case !p.Authenticated():
		return p, authErr(api.ErrMissingAuthToken, msgMissingToken)
	case admin && !a.policy.Admin(p):
		return p, fmt.Errorf("principal %s is not an admin (auth.admins in berth's config): %w", p.Name, errdefs.ErrPermissionDenied)
	}
	return p, nil
}

// Runtime is what authorization needs to know of the runtime a call names.
type Runtime struct {
	// ARN names the runtime (in workload access tokens).
	ARN string
	// Invokers may call a SigV4 runtime; empty means every principal.
	Invokers []string
	// JWT, if set, is the runtime's authorizer: it takes bearer tokens
	// only.
	JWT *JWTAuthorizer
}

// Grant is a call authorization let through.
type Grant struct {
	Principal Principal
	// Owner is who the call's session belongs to: what bind_user binds
	// and the session API shows. It is the user ID a trusted principal
	// named ("user:ID"; the bare header while authentication is off), else
	// the principal's ID.
	Owner string
	// WorkloadToken goes to the agent in the WorkloadAccessToken header;
	// empty when the call names no user.
	WorkloadToken string
}

// Authorize decides whether c may call rt (invoke it, stop its sessions,
// run commands, open a WebSocket), acting for userID, the value of
// X-Amzn-Bedrock-AgentCore-Runtime-User-Id (may be empty).
func (a *Authenticator) Authorize(ctx context.Context, c *Caller, rt Runtime, userID string) (Grant, error) {
	if rt.JWT != nil {
		return a.authorizeJWT(ctx, c, rt, userID)
	}
	p := c.Principal
	switch {
	case p.Kind == KindOpen:
		g := Grant{Principal: p, Owner: userID}
		if userID != "" {
			g.WorkloadToken = a.workloadToken(rt.ARN, "user:"+userID)
		}
		return g, nil
	case !p.Authenticated() && c.Bearer != "":
		return Grant{}, fmt.Errorf("authorization method mismatch: this runtime has no JWT authorizer and takes SigV4 signatures, not bearer tokens: %w",
			errdefs.ErrPermissionDenied)
	case !p.Authenticated():
		return Grant{}, authErr(api.ErrMissingAuthToken, msgMissingToken)
	case len(rt.Invokers) > 0 && !slices.Contains(rt.Invokers, p.Name):
		return Grant{}, fmt.Errorf("principal %s may not call this runtime: it is not among the runtime's invokers: %w", p.Name, errdefs.ErrPermissionDenied)
	}
	g := Grant{Principal: p, Owner: p.ID()}
	if userID != "" {
		if !a.policy.MayActAsUser(p) {
			return Grant{}, fmt.Errorf("principal %s may not set %s: that takes the InvokeAgentRuntimeForUser permission, which berth grants to admins and to auth.act_as_user: %w",
				p.Name, api.HeaderUserID, errdefs.ErrPermissionDenied)
		}
		g.Owner = "user:" + userID
		g.WorkloadToken = a.workloadToken(rt.ARN, p.ID()+"/user:"+userID)
	}
	return g, nil
}

func (a *Authenticator) authorizeJWT(ctx context.Context, c *Caller, rt Runtime, userID string) (Grant, error) {
	switch {
	case c.SigV4:
		return Grant{}, fmt.Errorf("authorization method mismatch: this runtime has a JWT authorizer and takes bearer tokens, not SigV4 signatures: %w",
			errdefs.ErrPermissionDenied)
	case c.Bearer == "":
		return Grant{}, fmt.Errorf("%s: %w", msgBadToken, errdefs.ErrUnauthenticated)
	}
	p, err := a.jwt.verify(ctx, rt.JWT, c.Bearer)
	if err != nil {
		return Grant{}, err
	}
	if userID != "" {
		return Grant{}, fmt.Errorf("a runtime with a JWT authorizer takes the user from the token; leave out %s: %w",
			api.HeaderUserID, errdefs.ErrPermissionDenied)
	}
	return Grant{Principal: p, Owner: p.ID(), WorkloadToken: a.workloadToken(rt.ARN, p.ID())}, nil
}

// Issuer is the issuer a JWT authorizer's discovery document names, for
// the runtime's protected-resource metadata.
func (a *Authenticator) Issuer(ctx context.Context, j *JWTAuthorizer) (string, error) {
	is, err := a.jwt.issuer(ctx, j.DiscoveryURL)
	if err != nil {
		return "", err
	}
	return is.name, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
