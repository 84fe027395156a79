package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/server"
	"github.com/berth-dev/berth/internal/session"
)

// TestConsoleOrigins: the console's own pages may POST to it from berth's
// origin; any other origin is refused, and berth's origin reaches no other
// route.
func TestConsoleOrigins(t *testing.T) {
	e := newEdge(t, server.Options{}, session.Options{})
	send := func(method, path, origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader("{}"))
		r.Host = "127.0.0.1:8787"
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, r)
		return w
	}
	const self = "http://127.0.0.1:8787"
	for _, c := range []struct {
		method, path, origin string
		refused              bool
	}{
		{http.MethodPost, "/console/sessions/nope/stop", "http://attacker.example", true},
		{http.MethodPost, "/console/sessions/nope/stop", "http://127.0.0.1:9999", true},
		{http.MethodPost, "/console/sessions/nope/stop", "null", true},
		{http.MethodPost, "/runtimes/" + e.arn + "/invocations", self, true},
		{http.MethodGet, api.PathSessions, self, true},
		{http.MethodPost, "/console/sessions/nope/stop", self, false},
		{http.MethodGet, "/console", "", false},
	} {
		w := send(c.method, c.path, c.origin)
		refused := w.Code == http.StatusForbidden && w.Header().Get("X-Amzn-ErrorType") != ""
		if refused != c.refused {
			t.Errorf("%s %s from %q: %d %s, want refused=%v", c.method, c.path, c.origin, w.Code, w.Body, c.refused)
		}
	}
	w := send(http.MethodGet, "/console", "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="sessions"`) {
		t.Fatalf("console: %d %s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("console CSP %q", csp)
	}
}
