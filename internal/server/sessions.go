package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// SessionStore is what the session API reads.
type SessionStore interface {
	GetSession(ctx context.Context, id string) (session.Record, error)
	ListSessions(ctx context.Context, f session.Filter) ([]session.Record, string, error)
}

// berth's session API is an admin's: every session, every log. A
// signed-in principal that is not an admin sees its own sessions only
// (those it owns as a grant's owner), with their runtime session IDs
// masked; another principal's session is not found.
func (s *Server) registerSessions() {
	s.handle("GET "+api.PathSessions, accessSignedIn, s.listSessions)
	s.handle("GET "+api.PathSessions+"/{id}", accessSignedIn, s.showSession)
	s.handle("POST "+api.PathSessions+"/{id}/stop", accessSignedIn, s.stopSessionByID)
	s.handle("GET "+api.PathSessions+"/{id}/logs", accessSignedIn, s.sessionLogs)
}

// ownSession reads the session id names, as r's caller may see it: an
// admin any, anyone else only its own. id is an incarnation's record ID
// or, failing that, a runtime session ID: its latest incarnation, in
// whichever runtime used it last.
func (s *Server) ownSession(r *http.Request, id string) (session.Record, error) {
	p, admin := s.caller(r)
	rec, err := s.sessionStore.GetSession(r.Context(), id)
	if errors.Is(err, errdefs.ErrNotFound) {
		f := session.Filter{SessionID: id, Limit: 1}
		if !admin {
			f.UserID = p.ID()
		}
		recs, _, lerr := s.sessionStore.ListSessions(r.Context(), f)
		if lerr != nil {
			return rec, lerr
		}
		if len(recs) == 1 {
			rec, err = recs[0], nil
		}
	}
	if err != nil {
		return rec, err
	}
	if !admin && rec.UserID != p.ID() {
		return session.Record{}, fmt.Errorf("session %q: %w", id, errdefs.ErrNotFound)
	}
	return rec, nil
}

// viewFor shows a session to r's caller: a non-admin sees a masked
// runtime session ID (it is the key to the session).
func (s *Server) viewFor(r *http.Request, out api.Session) api.Session {
	if _, admin := s.caller(r); !admin {
		out.SessionID = maskID(out.SessionID)
	}
	return out
}

func maskID(id string) string {
	if len(id) <= 8 {
		return "…"
	}
	return id[:4] + "…" + id[len(id)-4:]
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := session.Filter{Endpoint: q.Get("endpoint"), SessionID: q.Get("session"), UserID: q.Get("user"),
		State: session.State(q.Get("state")), After: q.Get("cursor")}
	if p, admin := s.caller(r); !admin {
		if f.UserID != "" && f.UserID != p.ID() {
			writeJSON(w, http.StatusOK, api.SessionList{Sessions: []api.Session{}})
			return
		}
		f.UserID = p.ID()
	}
	switch f.State {
	case "", session.StateLive, session.StateStarting, session.StateActive, session.StateIdle, session.StateTerminated:
	default:
		s.writeError(w, r, validation("state", "state must be one of live, starting, active, idle, terminated"))
		return
	}
	if ref := q.Get("runtime"); ref != "" {
		rt, err := s.reg.Lookup(r.Context(), ref)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.RuntimeID = rt.ID
	}
	for name, dst := range map[string]*time.Time{"created_after": &f.CreatedAfter, "created_before": &f.CreatedBefore} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				s.writeError(w, r, validation(name, name+" must be an RFC 3339 time"))
				return
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, validation("limit", "limit must be 1 to 1000"))
			return
		}
		f.Limit = n
	}
	recs, next, err := s.sessionStore.ListSessions(r.Context(), f)
	if err != nil {
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			s.writeError(w, r, validation("cursor", "malformed cursor"))
			return
		}
		s.writeError(w, r, err)
		return
	}
	live := s.liveByID()
	out := api.SessionList{Sessions: make([]api.Session, 0, len(recs)), NextCursor: next}
	for _, rec := range recs {
		out.Sessions = append(out.Sessions, s.viewFor(r, toAPI(rec, live[rec.ID])))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) liveByID() map[string]*session.Info {
	infos := s.sessions.Live()
	m := make(map[string]*session.Info, len(infos))
	for i := range infos {
		m[infos[i].ID] = &infos[i]
	}
	return m
}

func (s *Server) showSession(w http.ResponseWriter, r *http.Request) {
	rec, err := s.ownSession(r, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := toAPI(rec, s.liveByID()[rec.ID])
	out.LogTail = s.sessions.Tail(rec, 20)
	out.Image = s.sessionImage(r.Context(), rec)
	writeJSON(w, http.StatusOK, s.viewFor(r, out))
}

// sessionImage says which image a session of an image runtime runs; nil
// for a code runtime, or when its version is gone.
func (s *Server) sessionImage(ctx context.Context, rec session.Record) *api.SessionImage {
	if s.images == nil {
		return nil
	}
	v, err := s.reg.Version(ctx, rec.RuntimeID, rec.Version)
	if err != nil || v.Settings.ImageDigest == "" {
		return nil
	}
	out := &api.SessionImage{Ref: v.Settings.Image, Digest: v.Settings.ImageDigest}
	if imgs, err := s.images.List(ctx); err == nil {
		for _, img := range imgs {
			if img.Digest == out.Digest {
				out.Platform, out.Emulated = img.Platform, img.Emulated
			}
		}
	}
	return out
}

func (s *Server) stopSessionByID(w http.ResponseWriter, r *http.Request) {
	rec, err := s.ownSession(r, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rec.State == session.StateTerminated {
		s.writeError(w, r, &apiError{typ: api.ErrResourceNotFound, msg: "session " + rec.ID + " already ended (" + string(rec.EndReason) + ")"})
		return
	}
	if err := s.sessions.Stop(r.Context(), session.StopRequest{Key: rec.Key}); err != nil {
		s.writeError(w, r, err)
		return
	}
	rec, _ = s.sessionStore.GetSession(r.Context(), rec.ID)
	writeJSON(w, http.StatusOK, s.viewFor(r, toAPI(rec, nil)))
}

// sessionLogs streams a session's agent log; with follow=true it keeps
// streaming until the session ends or the client leaves.
func (s *Server) sessionLogs(w http.ResponseWriter, r *http.Request) {
	rec, err := s.ownSession(r, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	log, err := s.sessions.OpenLog(rec)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer log.Close()
	q := r.URL.Query()
	tail, _ := strconv.Atoi(q.Get("tail"))
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	log.Copy(r.Context(), tail, follow, w, func() { rc.Flush() })
}
func toAPI(rec session.Record, live *session.Info) api.Session {
	out := api.Session{
		ID: rec.ID, RuntimeID: rec.RuntimeID, Runtime: registry.NameOf(rec.RuntimeID), Endpoint: rec.Endpoint, SessionID: rec.SessionID,
		Version: rec.Version, UserID: rec.UserID, State: string(rec.State), EndReason: string(rec.EndReason),
		EndDetail: rec.Detail, Backend: rec.Backend, SandboxID: rec.SandboxID, CreatedAt: rec.CreatedAt,
		LastActiveAt: rec.LastActiveAt, ExpiresAt: rec.ExpiresAt, EndedAt: rec.EndedAt, Invocations: rec.Invocations,
	}
	if live != nil && rec.State != session.StateTerminated {
		out.State = string(live.State)
		out.LastActiveAt = live.LastActiveAt
		out.Invocations = live.Invocations
		out.InFlight = live.InFlight
		out.Busy = live.Busy
		if live.UserID != "" {
			out.UserID = live.UserID
		}
		if st := live.Stats; st != nil {
			out.Usage = &api.ResourceUsage{MemoryBytes: st.MemoryBytes, CPUSeconds: st.CPUUsage.Seconds(), Pids: st.Pids}
		}
	}
	return out
}
