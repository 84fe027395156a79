package server

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/console"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// The web console (internal/console) is an admin's: the pages here, the
// session API's data, rendered on the server. A browser sends Origin on
// the console's own POSTs; the edge guard lets through the console's
// same-origin requests (sameOrigin) and nothing else of a browser's.
func (s *Server) registerConsole() {
	s.handle("GET /console", accessAdmin, s.consoleHome)
	s.handle("GET /console/{$}", accessAdmin, s.consoleHome)
	s.handle("GET /console/sessions/{id}", accessAdmin, s.consoleSession)
	s.handle("GET /console/sessions/{id}/log", accessAdmin, s.sessionLogs)
	s.handle("POST /console/sessions/{id}/stop", accessAdmin, s.consoleStop)
	static := http.StripPrefix("/console/static/", http.FileServerFS(console.Static()))
	s.handle("GET /console/static/", accessAdmin, static.ServeHTTP)
}

// consoleHeaders keep the console's pages to their own scripts and out of
// other sites' frames.
func consoleHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

func (s *Server) consoleHome(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	home := console.Home{
		Filter: console.Filter{Runtime: q.Get("runtime"), State: q.Get("state")},
		States: []string{string(session.StateLive), string(session.StateStarting), string(session.StateActive),
			string(session.StateIdle), string(session.StateTerminated)},
	}
	rts, err := s.consoleRuntimes(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	home.Runtimes = rts
	if s.metrics != nil {
		home.Charts = console.Charts(s.metrics.History(), time.Now())
	}
	f := session.Filter{State: session.State(home.Filter.State), Limit: 100}
	if !slices.Contains(home.States, home.Filter.State) {
		f.State = ""
	}
	if home.Filter.Runtime != "" {
		rt, err := s.reg.Lookup(ctx, home.Filter.Runtime)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.RuntimeID = rt.ID
	}
	recs, _, err := s.sessionStore.ListSessions(ctx, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	live := s.liveByID()
	for _, rec := range recs {
		home.Sessions = append(home.Sessions, toAPI(rec, live[rec.ID]))
	}
	s.renderConsole(w, r, func(b *bytes.Buffer) error { return console.RenderHome(b, home) })
}

// consoleRuntimes are the runtimes with their endpoints and the latest
// version's code.
func (s *Server) consoleRuntimes(ctx context.Context) ([]console.Runtime, error) {
	ctl := registry.NewControl(s.reg)
	rts, _, err := ctl.ListRuntimes(ctx, registry.Page{MaxResults: 100})
	if err != nil {
		return nil, err
	}
	out := make([]console.Runtime, 0, len(rts))
	for _, rt := range rts {
		c := console.Runtime{Name: rt.Name, ID: rt.ID, ARN: rt.ARN, Status: rt.Status, Source: string(rt.Source),
			LatestVersion: rt.LatestVersion, UpdatedAt: rt.UpdatedAt}
		if _, v, err := ctl.GetRuntime(ctx, rt.ID, ""); err == nil {
			c.Code = v.Settings.CodeDigest
			if c.Code == "" {
				c.Code = strings.Join(v.Settings.Command, " ")
			}
		}
		if _, es, _, err := ctl.ListEndpoints(ctx, rt.ID, registry.Page{MaxResults: 100}); err == nil {
			for _, e := range es {
				c.Endpoints = append(c.Endpoints, console.Endpoint{Name: e.Name, Version: e.LiveVersion})
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *Server) consoleSession(w http.ResponseWriter, r *http.Request) {
	rec, err := s.ownSession(r, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p := console.SessionPage{Session: toAPI(rec, s.liveByID()[rec.ID]), Live: rec.State != session.StateTerminated}
	s.renderConsole(w, r, func(b *bytes.Buffer) error { return console.RenderSession(b, p) })
}

// consoleStop stops a session and shows its page again.
func (s *Server) consoleStop(w http.ResponseWriter, r *http.Request) {
	rec, err := s.ownSession(r, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rec.State != session.StateTerminated {
		if err := s.sessions.Stop(r.Context(), session.StopRequest{Key: rec.Key}); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	http.Redirect(w, r, "/console/sessions/"+rec.ID, http.StatusSeeOther)
}

// renderConsole renders a whole page before it answers, so a template
// error is a 500, not half a page.
func (s *Server) renderConsole(w http.ResponseWriter, r *http.Request, render func(*bytes.Buffer) error) {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		s.writeError(w, r, err)
		return
	}
	consoleHeaders(w)
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// sameOrigin reports whether r, sent with Origin origin, is the console's
// own request: to a console path, from a page berth served at the Host the
// request is addressed to (which the guard has checked already).
func sameOrigin(r *http.Request, origin []string) bool {
	if len(origin) != 1 || !strings.HasPrefix(r.URL.Path, "/console/") {
		return false
	}
	u, err := url.Parse(origin[0])
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}
