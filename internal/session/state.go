package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/session/statesock"
)

// The agent reaches its durable state through a Unix socket that only its
// own sandbox can see (package statesock): bind-mounted at stateMount into
// a sandbox that has its own filesystem view, or at its host path where
// the agent sees the host's.
const stateMount = "/run/berth"

// stateServer is one sandbox's durable state: the socket, and the session
// it serves once a session owns the sandbox.
type stateServer struct {
	store StateStore
	max   int64
	sock  *statesock.Server
	// mu guards key and owner: a warm pool's sandbox gets them when a
	// session claims it.
	mu    sync.Mutex
	key   *Key
	owner func() string
}

var _ statesock.Access = (*stateServer)(nil)

// startStateServer listens on a fresh socket directory named id.
func (m *Manager) startStateServer(id string, maxBytes int64) (*stateServer, error) {
	if m.state == nil {
		return nil, errors.New("durable sessions need a store that keeps session state")
	}
	id = strings.TrimPrefix(id, "pool-")
	dir := filepath.Join(m.opts.StateDir, id[:min(len(id), 12)])
	// Unix socket paths are capped at 108 bytes; fall back to a short one
	// that Recover can still find.
	if m.opts.StateDir == "" || len(dir)+len(statesock.Name)+1 >= 100 {
		var err error
		if dir, err = os.MkdirTemp("", m.stateTempPrefix()); err != nil {
			return nil, fmt.Errorf("create state socket dir: %w", err)
		}
	}
	ss := &stateServer{store: m.state, max: maxBytes}
	sock, err := statesock.Listen(dir, ss)
	if err != nil {
		return nil, err
	}
	ss.sock = sock
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
	path := filepath.Join(ss.sock.Dir(), statesock.Name)
	if !hostPaths {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: ss.sock.Dir(), Target: stateMount})
		path = stateMount + "/" + statesock.Name
	}
	spec.Env = append(spec.Env, api.EnvStateSocket+"="+path, api.EnvStateMaxBytes+"="+strconv.FormatInt(ss.max, 10))
}

// assign binds the server to the session that owns the sandbox.
func (ss *stateServer) assign(k Key, owner func() string) {
	ss.mu.Lock()
	ss.key, ss.owner = &k, owner
	ss.mu.Unlock()
}

func (ss *stateServer) close() { ss.sock.Close() }

// errUnclaimed: a warm sandbox asked before any session owned it.
var errUnclaimed = fmt.Errorf("this sandbox serves no session yet: %w", errdefs.ErrFailedPrecondition)

func (ss *stateServer) session() (Key, string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.key == nil {
		return Key{}, "", errUnclaimed
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

// Save replaces the saved state whole, or refuses a state over the cap.
func (ss *stateServer) Save(ctx context.Context, data []byte) error {
	key, owner, err := ss.session()
	if err != nil {
		return err
	}
	if int64(len(data)) > ss.max {
		return fmt.Errorf("state of %d bytes, cap %d: %w", len(data), ss.max, errdefs.ErrInvalidArgument)
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
