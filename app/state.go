package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/berth-dev/berth/api"
)

// Durable session state. When a runtime sets `durability: state`, berth
// gives each session's sandbox a private channel (a Unix socket only that
// sandbox can see) to a store that outlives the sandbox: idle timeout, max
// lifetime, crash and berth restarts. StopRuntimeSession deletes it.

// Environment variables berth sets for durable runtimes.
const (
	EnvStateSocket   = api.EnvStateSocket
	EnvStateMaxBytes = api.EnvStateMaxBytes
)

// DefaultStateMaxBytes is berth's default cap on one session's state.
const DefaultStateMaxBytes = api.DefaultStateMaxBytes

var (
	// ErrNoDurableState means the runtime is not durable (or the agent runs
	// outside berth): there is nowhere to keep state.
	ErrNoDurableState = errors.New("no durable session state: the runtime does not set durability: state")
	// ErrStateTooLarge means a save exceeded the runtime's state cap.
	// Nothing was written; the previous state is intact.
	ErrStateTooLarge = errors.New("session state exceeds the size cap")
)

// SessionState is this session's durable state store.
type SessionState struct {
	max    int64
	client *http.Client
}

var (
	stateOnce sync.Once
	state     *SessionState
)

// State returns the session's durable state, or ErrNoDurableState.
func State() (*SessionState, error) {
	stateOnce.Do(func() {
		sock := os.Getenv(EnvStateSocket)
		if sock == "" {
			return
		}
		limit, err := strconv.ParseInt(os.Getenv(EnvStateMaxBytes), 10, 64)
		if err != nil || limit <= 0 {
			limit = DefaultStateMaxBytes
		}
		state = newSessionState(sock, limit)
	})
	if state == nil {
		return nil, ErrNoDurableState
	}
	return state, nil
}

func newSessionState(sock string, limit int64) *SessionState {
	return &SessionState{max: limit, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// MaxBytes is the cap on one save.
func (s *SessionState) MaxBytes() int64 { return s.max }

// Load returns the saved state; ok is false when nothing was saved yet.
func (s *SessionState) Load(ctx context.Context) (data []byte, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://berth"+api.PathState, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("load session state: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, false, fmt.Errorf("load session state: %w", err)
		}
		return data, true, nil
	case http.StatusNotFound:
		return nil, false, nil
	default:
		return nil, false, stateStatusError("load", resp)
	}
}

// Save replaces the saved state as a whole. A state over the cap is
// refused with ErrStateTooLarge, never truncated.
func (s *SessionState) Save(ctx context.Context, data []byte) error {
	if int64(len(data)) > s.max {
		return fmt.Errorf("save %d bytes (cap %d): %w", len(data), s.max, ErrStateTooLarge)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://berth"+api.PathState, bytes.NewReader(data))
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("save session state: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		return nil
	case http.StatusRequestEntityTooLarge:
		return fmt.Errorf("save %d bytes: %w", len(data), ErrStateTooLarge)
	default:
		return stateStatusError("save", resp)
	}
}

// Clear deletes the saved state.
func (s *SessionState) Clear(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://berth"+api.PathState, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("clear session state: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return stateStatusError("clear", resp)
	}
	return nil
}

// LoadJSON decodes the saved state into v; ok is false when none was saved.
func (s *SessionState) LoadJSON(ctx context.Context, v any) (ok bool, err error) {
	data, ok, err := s.Load(ctx)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode session state: %w", err)
	}
	return true, nil
}

// SaveJSON encodes v and saves it.
func (s *SessionState) SaveJSON(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode session state: %w", err)
	}
	return s.Save(ctx, data)
}

func stateStatusError(op string, resp *http.Response) error {
	var body struct {
		Error string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	return fmt.Errorf("%s session state: berth answered %d: %s", op, resp.StatusCode, body.Error)
}
