package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session"
)

// StateHandler is the HTTP face of a durable session's state, served on the
// private socket inside its sandbox: GET, PUT and DELETE /state. The agent
// SDK (app.State) speaks it.
func StateHandler(sa session.StateAccess) http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, session.ErrStateTooLarge):
			code = http.StatusRequestEntityTooLarge
		case errors.Is(err, session.ErrUnclaimed):
			code = http.StatusConflict
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
	}
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		data, err := sa.Load(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	})
	mux.HandleFunc("PUT /state", func(w http.ResponseWriter, r *http.Request) {
		limit := sa.MaxBytes()
		if r.ContentLength > limit {
			fail(w, fmt.Errorf("state of %d bytes, cap %d: %w", r.ContentLength, limit, session.ErrStateTooLarge))
			return
		}
		data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read state: " + err.Error()})
			return
		}
		if err := sa.Save(r.Context(), data); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /state", func(w http.ResponseWriter, r *http.Request) {
		if err := sa.Delete(r.Context()); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
