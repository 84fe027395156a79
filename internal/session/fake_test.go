package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
)

// fakeBackend is a real sandbox.Backend whose agents are in-process HTTP
// servers on in-memory pipes, so lifecycle tests run under synctest's fake
// clock. Behaviour is data: tests flip a handle's ping status or exit it.
type fakeBackend struct {
	mu      sync.Mutex
	handles []*fakeHandle
}

var _ sandbox.Backend = (*fakeBackend)(nil)

func (b *fakeBackend) Name() string                   { return "fake" }
func (b *fakeBackend) Reap(ctx context.Context) error { return nil }

func (b *fakeBackend) Attach(ctx context.Context, id string) (sandbox.Handle, error) {
	return nil, sandbox.ErrNotFound
}

func (b *fakeBackend) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{DefaultNetwork: sandbox.NetworkHost, Networks: []sandbox.NetworkMode{sandbox.NetworkHost}, HostPaths: true}
}

func (b *fakeBackend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	h := &fakeHandle{id: spec.Name, conns: make(chan net.Conn), closed: make(chan struct{}), done: make(chan struct{})}
	h.pingCode.Store(http.StatusOK)
	h.status.Store(string(api.PingHealthy))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(h.pingCode.Load()))
		json.NewEncoder(w).Encode(api.PingResponse{Status: api.PingStatus(h.status.Load().(string)), TimeOfLastUpdate: h.lastUpdate.Load()})
	})
	mux.HandleFunc("POST /invocations", func(w http.ResponseWriter, r *http.Request) {
		n := h.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"calls":` + strconv.FormatInt(n, 10) + `}`))
	})
	h.srv = &http.Server{Handler: mux}
	h.served = make(chan struct{})
	go func() {
		defer close(h.served)
		h.srv.Serve(pipeListener{h})
	}()
	b.mu.Lock()
	b.handles = append(b.handles, h)
	b.mu.Unlock()
	return h, nil
}

func (b *fakeBackend) last() *fakeHandle {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handles[len(b.handles)-1]
}

// fakeHandle is both the sandbox handle and the agent's listener.
type fakeHandle struct {
	id         string
	srv        *http.Server
	conns      chan net.Conn
	closed     chan struct{}
	closeOnce  sync.Once
	served     chan struct{}
	done       chan struct{}
	exitOnce   sync.Once
	exit       sandbox.ExitStatus
	calls      atomic.Int64
	pingCode   atomic.Int64
	status     atomic.Value
	lastUpdate atomic.Int64
	stopped    atomic.Bool
}

func (h *fakeHandle) setStatus(s api.PingStatus) {
	h.status.Store(string(s))
	h.lastUpdate.Store(time.Now().Unix())
}

func (h *fakeHandle) ID() string   { return h.id }
func (h *fakeHandle) Addr() string { return "fake:8080" }

func (h *fakeHandle) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case h.conns <- s:
		return c, nil
	case <-h.closed:
		return nil, errors.New("connection refused")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pipeListener is the fake agent's net.Listener.
type pipeListener struct{ h *fakeHandle }

func (l pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.h.conns:
		return c, nil
	case <-l.h.closed:
		return nil, net.ErrClosed
	}
}

func (l pipeListener) Close() error   { return l.h.Close() }
func (l pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "fake:8080" }

func (h *fakeHandle) Close() error {
	h.closeOnce.Do(func() { close(h.closed) })
	return nil
}

func (h *fakeHandle) Done() <-chan struct{}    { return h.done }
func (h *fakeHandle) Exit() sandbox.ExitStatus { return h.exit }

// crash makes the agent exit with code.
func (h *fakeHandle) crash(code int) {
	h.exitOnce.Do(func() {
		h.exit = sandbox.ExitStatus{Code: code}
		h.Close()
		h.srv.Close()
		close(h.done)
	})
}

func (h *fakeHandle) Stop(ctx context.Context, grace time.Duration) error {
	h.stopped.Store(true)
	h.exitOnce.Do(func() {
		h.exit = sandbox.ExitStatus{Code: -1, Signal: "terminated"}
		h.Close()
		h.srv.Close()
		close(h.done)
	})
	<-h.served
	return nil
}
