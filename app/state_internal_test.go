package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session/statesock"
)

// memState is a session's state kept in memory, behind berth's real
// state-socket handler.
type memState struct {
	mu   sync.Mutex
	data []byte
	max  int64
}

func (m *memState) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		return nil, errdefs.ErrNotFound
	}
	return m.data, nil
}

func (m *memState) Save(_ context.Context, data []byte) error {
	if int64(len(data)) > m.max {
		return fmt.Errorf("state over the cap: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte{}, data...)
	return nil
}

func (m *memState) Delete(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = nil
	return nil
}

func (m *memState) MaxBytes() int64 { return m.max }

func TestSessionStateOverBerthsSocket(t *testing.T) {
	mem := &memState{max: 64}
	srv, err := statesock.Listen(filepath.Join(t.TempDir(), "sock"), mem)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	sock := filepath.Join(srv.Dir(), statesock.Name)
	ctx := context.Background()

	// The server's cap is 64; a client that believes it is larger still
	// gets ErrStateTooLarge, from the server's 413.
	st := newSessionState(sock, 1000)
	if _, ok, err := st.Load(ctx); ok || err != nil {
		t.Fatalf("empty load: ok %v err %v", ok, err)
	}
	type conv struct{ Turns []string }
	if err := st.SaveJSON(ctx, conv{Turns: []string{"2X5", "plus 34"}}); err != nil {
		t.Fatal(err)
	}
	var got conv
	if ok, err := st.LoadJSON(ctx, &got); !ok || err != nil || len(got.Turns) != 2 {
		t.Fatalf("load: %+v ok %v err %v", got, ok, err)
	}
	if err := st.Save(ctx, make([]byte, 100)); !errors.Is(err, ErrStateTooLarge) {
		t.Fatalf("oversize save through the server: %v", err)
	}
	if ok, _ := st.LoadJSON(ctx, &got); !ok || len(got.Turns) != 2 {
		t.Fatal("a refused save changed the state")
	}
	// The client refuses before sending when it knows the cap.
	small := newSessionState(sock, 10)
	if err := small.Save(ctx, make([]byte, 11)); !errors.Is(err, ErrStateTooLarge) {
		t.Fatalf("oversize save, client-side: %v", err)
	}
	if err := st.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Load(ctx); ok || err != nil {
		t.Fatalf("after clear: ok %v err %v", ok, err)
	}
}

func TestStateWithoutDurability(t *testing.T) {
	t.Setenv(EnvStateSocket, "")
	if _, err := State(); !errors.Is(err, ErrNoDurableState) {
		t.Fatalf("State() without a socket: %v", err)
	}
}
