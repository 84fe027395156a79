package session

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
	"strconv"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
)

// The agent reaches its durable state through a Unix socket that only its
// own sandbox can see: mounted at stateMount inside a linux sandbox, or at
// its host path for the process backend.
const (
	stateMount  = "/run/berth"
	stateSocket = "state.sock"
	// EnvStateSocket and EnvStateMaxBytes tell the agent where its state
	// lives and how large it may grow.
	EnvStateSocket   = "BERTH_STATE_SOCKET"
	EnvStateMaxBytes = "BERTH_STATE_MAX_BYTES"
)

// stateServer serves GET/PUT/DELETE /state for one session over a Unix
// socket, backed by the store. Its goroutine is owned by the session and
// waited for in close.
type stateServer struct {
	store StateStore
	max   int64
	// mu guards key and owner: a warm pool's sandbox gets them when a
	// session claims it.
	mu    sync.Mutex
	key   *Key
	owner func() string
	dir   string
	srv   *http.Server
	done  chan struct{}
}

// startStateServer listens on a fresh socket directory named id.
func (m *Manager) startStateServer(id string, maxBytes int64) (*stateServer, error) {
	if m.state == nil {
		return nil, errors.New("durable sessions need a store that keeps session state")
	}
	dir := filepath.Join(m.opts.StateDir, id)
	// Unix socket paths are capped at 108 bytes; fall back to a short one.
	if m.opts.StateDir == "" || len(dir)+len(stateSocket)+1 >= 100 {
		var err error
		if dir, err = os.MkdirTemp("", "berth-state-"); err != nil {
			return nil, fmt.Errorf("create state socket dir: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state socket dir: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, stateSocket))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen on state socket: %w", err)
	}
	ss := &stateServer{store: m.state, max: maxBytes, dir: dir, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", ss.load)
	mux.HandleFunc("PUT /state", ss.save)
	mux.HandleFunc("DELETE /state", ss.clear)
	ss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(ss.done)
		ss.srv.Serve(ln)
	}()
	return ss, nil
}

// wire adds what the agent needs to reach the socket to spec.
func (ss *stateServer) wire(spec *sandbox.Spec, hostPaths bool) {
	path := filepath.Join(ss.dir, stateSocket)
	if !hostPaths {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: ss.dir, Target: stateMount})
		path = stateMount + "/" + stateSocket
	}
	spec.Env = append(spec.Env, EnvStateSocket+"="+path, EnvStateMaxBytes+"="+strconv.FormatInt(ss.max, 10))
}

// assign binds the server to the session that owns the sandbox.
func (ss *stateServer) assign(k Key, owner func() string) {
	ss.mu.Lock()
	ss.key, ss.owner = &k, owner
	ss.mu.Unlock()
}

// session is the key and owner, or false before a session claimed it.
func (ss *stateServer) session(w http.ResponseWriter) (Key, string, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.key == nil {
		stateError(w, http.StatusConflict, "this sandbox serves no session yet")
		return Key{}, "", false
	}
	return *ss.key, ss.owner(), true
}

func (ss *stateServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss.srv.Shutdown(ctx)
	<-ss.done
	os.RemoveAll(ss.dir)
}

func stateError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (ss *stateServer) load(w http.ResponseWriter, r *http.Request) {
	key, _, ok := ss.session(w)
	if !ok {
		return
	}
	data, _, err := ss.store.LoadState(r.Context(), key)
	switch {
	case errors.Is(err, ErrNotFound):
		stateError(w, http.StatusNotFound, "no saved state")
	case err != nil:
		stateError(w, http.StatusInternalServerError, "load state: "+err.Error())
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	}
}

func (ss *stateServer) save(w http.ResponseWriter, r *http.Request) {
	key, owner, ok := ss.session(w)
	if !ok {
		return
	}
	if r.ContentLength > ss.max {
		stateError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("state of %d bytes exceeds the cap of %d bytes", r.ContentLength, ss.max))
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, ss.max+1))
	if err != nil {
		stateError(w, http.StatusBadRequest, "read state: "+err.Error())
		return
	}
	if int64(len(data)) > ss.max {
		stateError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("state exceeds the cap of %d bytes", ss.max))
		return
	}
	if err := ss.store.SaveState(r.Context(), key, owner, data, time.Now()); err != nil {
		stateError(w, http.StatusInternalServerError, "save state: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (ss *stateServer) clear(w http.ResponseWriter, r *http.Request) {
	key, _, ok := ss.session(w)
	if !ok {
		return
	}
	if err := ss.store.DeleteState(r.Context(), key); err != nil {
		stateError(w, http.StatusInternalServerError, "delete state: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
