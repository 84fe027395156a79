// Package statesock serves a durable session's saved state to its agent,
// over a Unix socket only that agent's sandbox can see: GET, PUT and
// DELETE on api.PathState, the protocol app.State speaks. It owns the
// socket and the protocol; the session manager owns the state behind it.
//
// This is berth talking to its own agents, not the AgentCore API: its
// statuses are this protocol's, not AgentCore error types.
package statesock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// Name is the socket's file name in its directory.
const Name = "state.sock"

// Access is one sandbox's view of its session's durable state. Errors wrap
// errdefs classes: not found (nothing saved), invalid argument (a save over
// the cap) and failed precondition (no session owns the sandbox yet).
type Access interface {
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, data []byte) error
	Delete(ctx context.Context) error
	MaxBytes() int64
}

// Server serves one sandbox's state socket. Its goroutine is waited for in
// Close.
type Server struct {
	dir  string
	srv  *http.Server
	done chan struct{}
}

// Listen serves a on dir/state.sock; dir is created and belongs to the
// server, which removes it on Close.
func Listen(dir string, a Access) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state socket dir: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, Name))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen on state socket: %w", err)
	}
	s := &Server{dir: dir, done: make(chan struct{}),
		srv: &http.Server{Handler: Handler(a), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

// Dir is the directory holding the socket.
func (s *Server) Dir() string { return s.dir }

// Close stops serving and removes the socket's directory.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
	os.RemoveAll(s.dir)
}

// Handler is the protocol over a.
func Handler(a Access) http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, errdefs.ErrInvalidArgument):
			code = http.StatusRequestEntityTooLarge
		case errors.Is(err, errdefs.ErrFailedPrecondition):
			code = http.StatusConflict
		}
		reply(w, code, err.Error())
	}
	mux.HandleFunc("GET "+api.PathState, func(w http.ResponseWriter, r *http.Request) {
		data, err := a.Load(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	})
	mux.HandleFunc("PUT "+api.PathState, func(w http.ResponseWriter, r *http.Request) {
		limit := a.MaxBytes()
		if r.ContentLength > limit {
			fail(w, fmt.Errorf("state of %d bytes, cap %d: %w", r.ContentLength, limit, errdefs.ErrInvalidArgument))
			return
		}
		data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			reply(w, http.StatusBadRequest, "read state: "+err.Error())
			return
		}
		if err := a.Save(r.Context(), data); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+api.PathState, func(w http.ResponseWriter, r *http.Request) {
		if err := a.Delete(r.Context()); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// reply answers with {"error": msg}, which app.State reads.
func reply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
