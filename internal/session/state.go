package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
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

// stateServer serves one session's durable state over a Unix socket,
// backed by the store, through the handler Options.StateHandler builds. Its goroutine is owned by the session and
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
	id = strings.TrimPrefix(id, "pool-")
	dir := filepath.Join(m.opts.StateDir, id[:min(len(id), 12)])
	// Unix socket paths are capped at 108 bytes; fall back to a short one
	// that Recover can still find.
	if m.opts.StateDir == "" || len(dir)+len(stateSocket)+1 >= 100 {
		var err error
		if dir, err = os.MkdirTemp("", m.stateTempPrefix()); err != nil {
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
	if m.opts.StateHandler == nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, errors.New("durable sessions need Options.StateHandler")
	}
	ss.srv = &http.Server{Handler: m.opts.StateHandler(ss), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(ss.done)
		ss.srv.Serve(ln)
	}()
	return ss, nil
}

// stateTempPrefix names this manager's fallback socket dirs in os.TempDir.
func (m *Manager) stateTempPrefix() string {
	sum := sha256.Sum256([]byte(m.opts.StateDir))
	return "berth-state-" + hex.EncodeToString(sum[:4]) + "-"
}

// removeStateDirs removes the socket dirs a previous process left.
func (m *Manager) removeStateDirs() {
	if m.opts.StateDir != "" {
		entries, _ := os.ReadDir(m.opts.StateDir)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(m.opts.StateDir, e.Name()))
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(os.TempDir(), m.stateTempPrefix()+"*"))
	for _, d := range leftovers {
		os.RemoveAll(d)
	}
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

func (ss *stateServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss.srv.Shutdown(ctx)
	<-ss.done
	os.RemoveAll(ss.dir)
}

// ErrStateTooLarge: a save exceeded the runtime's state cap; nothing was
// written. ErrUnclaimed: a warm sandbox asked before any session owned it.
var (
	ErrStateTooLarge = fmt.Errorf("session state exceeds the size cap: %w", errdefs.ErrInvalidArgument)
	ErrUnclaimed     = fmt.Errorf("this sandbox serves no session yet: %w", errdefs.ErrFailedPrecondition)
)

// StateAccess is one sandbox's view of its session's durable state. The
// server package turns it into the HTTP handler served on the socket.
type StateAccess interface {
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, data []byte) error
	Delete(ctx context.Context) error
	MaxBytes() int64
}

var _ StateAccess = (*stateServer)(nil)

func (ss *stateServer) session() (Key, string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.key == nil {
		return Key{}, "", ErrUnclaimed
	}
	return *ss.key, ss.owner(), nil
}

// MaxBytes is the cap on one save.
func (ss *stateServer) MaxBytes() int64 { return ss.max }

// Load returns the saved state, or ErrNotFound.
func (ss *stateServer) Load(ctx context.Context) ([]byte, error) {
	key, _, err := ss.session()
	if err != nil {
		return nil, err
	}
	data, _, err := ss.store.LoadState(ctx, key)
	return data, err
}

// Save replaces the saved state whole, or refuses with ErrStateTooLarge.
func (ss *stateServer) Save(ctx context.Context, data []byte) error {
	key, owner, err := ss.session()
	if err != nil {
		return err
	}
	if int64(len(data)) > ss.max {
		return fmt.Errorf("state of %d bytes, cap %d: %w", len(data), ss.max, ErrStateTooLarge)
	}
	return ss.store.SaveState(ctx, key, owner, data, time.Now())
}

// Delete forgets the saved state.
func (ss *stateServer) Delete(ctx context.Context) error {
	key, _, err := ss.session()
	if err != nil {
		return err
	}
	return ss.store.DeleteState(ctx, key)
}
