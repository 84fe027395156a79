package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
)

// What every request passes before any handler sees it: the Host it was
// sent to and the browser Origin it came from, so that a web page cannot
// reach berth through DNS rebinding or a cross-site request; and a body
// that keeps moving, so a client cannot hold a call slot by trickling.

// Guard is the edge policy the operator sets.
type Guard struct {
	// AllowedHosts are host names (no port) requests may be addressed to,
	// beyond localhost and IP literals, which are always allowed: a
	// hostname is what DNS rebinding needs.
	AllowedHosts []string
	// AllowedOrigins are browser origins ("https://console.example") that
	// may call berth. Requests without an Origin header (every SDK and CLI)
	// are not affected.
	AllowedOrigins []string
	// BodyIdleTimeout cuts a request whose body stops arriving for this
	// long. Default 30 s.
	BodyIdleTimeout time.Duration
}

// refuseHost reports why r's Host or Origin is refused, or "".
func (g *Guard) refuse(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	switch {
	case host == "" || strings.EqualFold(host, "localhost"):
	case net.ParseIP(host) != nil:
	case slices.ContainsFunc(g.AllowedHosts, func(h string) bool { return strings.EqualFold(h, host) }):
	default:
		return "requests addressed to this host name are refused; the operator lists allowed names in allowed_hosts"
	}
	if origin, ok := r.Header["Origin"]; ok && !slices.Contains(g.AllowedOrigins, strings.Join(origin, ",")) && !sameOrigin(r, origin) {
		return "requests from this browser origin are refused; the operator lists allowed origins in allowed_origins"
	}
	return ""
}

// idleBody cuts a request body that stops arriving: each read must make
// progress within the timeout. A streaming upload of any length passes.
// A stalled body cancels the request, so whatever waits on it (a proxied
// call whose agent waits for the rest) gives up too.
type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	cancel  context.CancelCauseFunc
}

// errBodyStalled is the cause of a request cut for a stalled body.
var errBodyStalled = errors.New("the request body stopped arriving")

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			// Stalled: the deadline stays past, so closing the body does
			// not wait to drain what never comes.
			b.cancel(errBodyStalled)
			return n, err
		}
		// The body is done: the deadline must not outlive it, or it would
		// cut a long response through net/http's background read.
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// guard applies the edge policy; it returns the request to serve, or nil
// when it answered itself. done must be called when the request is over.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) (_ *http.Request, done func()) {
	if why := s.edge.refuse(r); why != "" {
		s.writeError(w, r, &apiError{typ: api.ErrAccessDenied, msg: why})
		return nil, func() {}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return r, func() {}
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	r = r.WithContext(ctx)
	r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: s.edge.BodyIdleTimeout, cancel: cancel}
	return r, func() { cancel(nil) }
}
