package sandboxfake

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
)

// Handle is one fake sandbox: the handle berth holds and the agent behind
// it. It owns one goroutine, the agent's server, which Stop waits for.
type Handle struct {
	spec   sandbox.Spec
	script Script
	env    map[string]string // the agent's environment
	onEnd  func()
	srv    *http.Server
	// refuse makes every dial fail, as an agent that never listens.
	refuse bool

	conns  chan net.Conn // dialled connections for the agent to accept
	exited chan struct{} // closed when the agent ends
	served chan struct{} // closed when the agent's server has returned
	// exit is written before exited is closed and read only after.
	exit    sandbox.ExitStatus
	endOnce sync.Once
	stopped chan struct{} // closed once the first Stop is done

	// mu guards the fields that follow.
	mu         sync.Mutex
	exitTimer  *time.Timer
	pings      []string // the script's answers still to give
	setPing    string   // SetPing's answer, overriding the script
	lastStatus string
	lastUpdate int64
	busy       int
	calls      int64
	files      map[string]string
	stopping   bool
	commands   []string // Exec's scripts
	running    int      // commands running
}

var (
	_ sandbox.Handle        = (*Handle)(nil)
	_ sandbox.StatsReporter = (*Handle)(nil)
)

func newHandle(spec sandbox.Spec, script Script, refuse bool, onEnd func()) *Handle {
	h := &Handle{
		spec:       spec,
		script:     script,
		env:        map[string]string{},
		onEnd:      onEnd,
		refuse:     refuse,
		conns:      make(chan net.Conn),
		exited:     make(chan struct{}),
		served:     make(chan struct{}),
		stopped:    make(chan struct{}),
		pings:      script.Pings,
		lastStatus: PingHealthy,
		lastUpdate: time.Now().Unix(),
		files:      map[string]string{},
	}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		h.env[k] = v
	}
	home := "/sandboxfake/" + spec.Name
	h.env["PORT"], h.env["HOME"], h.env["TMPDIR"] = strconv.Itoa(h.port()), home+"/home", home+"/tmp"

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathPing, h.ping)
	mux.HandleFunc("POST "+api.PathInvocations, h.invoke)
	h.srv = &http.Server{Handler: mux}
	go func() {
		defer close(h.served)
		_ = h.srv.Serve(listener{h})
	}()
	if script.ExitAfter > 0 {
		h.mu.Lock()
		h.exitTimer = time.AfterFunc(script.ExitAfter, func() { h.end(sandbox.ExitStatus{Code: script.ExitCode}) })
		h.mu.Unlock()
	}
	return h
}

// ID implements sandbox.Handle.
func (h *Handle) ID() string { return h.spec.Name }

// Addr implements sandbox.Handle; only DialContext reaches it.
func (h *Handle) Addr() string { return h.spec.Name + ".sandboxfake:" + strconv.Itoa(h.port()) }

// port is the agent's port: each fake sandbox has a network of its own.
func (h *Handle) port() int { return cmp.Or(h.spec.Port, sandbox.DefaultPort) }

// Done implements sandbox.Handle.
func (h *Handle) Done() <-chan struct{} { return h.exited }

// Exit implements sandbox.Handle.
func (h *Handle) Exit() sandbox.ExitStatus {
	select {
	case <-h.exited:
		return h.exit
	default:
		return sandbox.ExitStatus{}
	}
}

// Spec is the spec the sandbox was started with.
func (h *Handle) Spec() sandbox.Spec { return h.spec }

// Calls counts the invocations the agent received.
func (h *Handle) Calls() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// Stopped reports whether Stop was called.
func (h *Handle) Stopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopping
}

// SetPing makes /ping answer this from now on, as a Script.Pings entry.
func (h *Handle) SetPing(answer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setPing = answer
}

// Crash makes the agent exit with code at once.
func (h *Handle) Crash(code int) { h.end(sandbox.ExitStatus{Code: code}) }

// Stats implements sandbox.StatsReporter: one process, using nothing.
func (h *Handle) Stats() (sandbox.Stats, error) {
	select {
	case <-h.exited:
		return sandbox.Stats{}, nil
	default:
		return sandbox.Stats{Pids: 1}, nil
	}
}

var errRefused = errors.New("sandboxfake: connection refused")

// DialContext implements sandbox.Handle with an in-memory pipe.
func (h *Handle) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if h.refuse {
		return nil, errRefused
	}
	c, s := net.Pipe()
	select {
	case h.conns <- s:
		return c, nil
	case <-h.exited:
		err := errRefused
		c.Close()
		s.Close()
		return nil, err
	case <-ctx.Done():
		c.Close()
		s.Close()
		return nil, ctx.Err()
	}
}

// listener is the agent's end of DialContext.
type listener struct{ h *Handle }

func (l listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.h.conns:
		return c, nil
	case <-l.h.exited:
		return nil, net.ErrClosed
	}
}

func (l listener) Close() error   { return nil } // the agent's end closes it
func (l listener) Addr() net.Addr { return pipeAddr(l.h.Addr()) }

// end makes the agent exit with st, once.
func (h *Handle) end(st sandbox.ExitStatus) {
	h.endOnce.Do(func() {
		h.mu.Lock()
		if h.exitTimer != nil {
			h.exitTimer.Stop()
		}
		h.mu.Unlock()
		h.exit = st
		close(h.exited)
		_ = h.srv.Close()
		h.onEnd()
	})
}

// Stop implements sandbox.Handle: the agent exits 0 on SIGTERM, unless its
// script ignores it, when it is killed once grace runs out.
func (h *Handle) Stop(ctx context.Context, grace time.Duration) error {
	h.mu.Lock()
	first := !h.stopping
	h.stopping = true
	h.mu.Unlock()
	if first {
		st := sandbox.ExitStatus{Code: 0}
		if h.script.IgnoreTerm {
			t := time.NewTimer(grace)
			select {
			case <-h.exited:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			st = sandbox.ExitStatus{Code: -1, Signal: "SIGKILL"}
		}
		h.end(st)
		<-h.served
		close(h.stopped)
	}
	select {
	case <-h.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop sandbox %s: %w", h.spec.Name, ctx.Err())
	}
}

// hang holds a request until the caller gives up or the agent exits.
func (h *Handle) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-h.exited:
	}
}

func (h *Handle) ping(w http.ResponseWriter, r *http.Request) {
	if h.script.Hang {
		h.hang(r)
		return
	}
	h.mu.Lock()
	answer := h.setPing
	if answer == "" {
		answer = PingHealthy
		if len(h.pings) > 0 {
			answer = h.pings[0]
		}
		if len(h.pings) > 1 {
			h.pings = h.pings[1:]
		}
	}
	if h.busy > 0 && answer == PingHealthy {
		answer = PingHealthyBusy
	}
	if code, err := strconv.Atoi(answer); err == nil {
		h.mu.Unlock()
		writeJSON(w, code, map[string]any{"message": "unhealthy by script"})
		return
	}
	if answer != h.lastStatus {
		h.lastStatus, h.lastUpdate = answer, time.Now().Unix()
	}
	resp := api.PingResponse{Status: api.PingStatus(answer), TimeOfLastUpdate: h.lastUpdate}
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// request is the union of the ops' fields (sandboxtest's agent's names).
type request struct {
	Op   string   `json:"op"`
	MS   int      `json:"ms"`
	Code int      `json:"code"`
	Path string   `json:"path"`
	Data string   `json:"data"`
	Env  []string `json:"env"`
}

func (h *Handle) invoke(w http.ResponseWriter, r *http.Request) {
	if h.script.Hang {
		h.hang(r)
		return
	}
	h.mu.Lock()
	h.calls++
	count := h.calls
	h.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "read body: " + err.Error()})
		return
	}
	var req request
	if len(body) > 0 && json.Unmarshal(body, &req) != nil {
		req = request{}
	}
	switch req.Op {
	case "", "echo":
		h.echo(w, r, body, req, count)
	case "crash":
		h.end(sandbox.ExitStatus{Code: 3})
	case "hang":
		h.hang(r)
	case "busy":
		h.mu.Lock()
		h.busy++
		h.mu.Unlock()
		time.AfterFunc(time.Duration(req.MS)*time.Millisecond, func() {
			h.mu.Lock()
			h.busy--
			h.mu.Unlock()
		})
		writeJSON(w, http.StatusOK, map[string]any{"status": PingHealthyBusy, "ms": req.MS})
	case "status":
		code := req.Code
		if code < 100 || code > 999 {
			code = http.StatusInternalServerError
		}
		writeJSON(w, code, map[string]any{"message": "status op", "code": code})
	case "sleep":
		t := time.NewTimer(time.Duration(req.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			writeJSON(w, http.StatusOK, map[string]any{"slept_ms": req.MS})
		case <-r.Context().Done():
		case <-h.exited:
		}
	case "write":
		path := h.path(req.Path)
		h.mu.Lock()
		h.files[path] = req.Data
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "path": path})
	case "read":
		path := h.path(req.Path)
		data, err := h.read(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			writeJSON(w, http.StatusNotFound, map[string]any{"message": err.Error(), "path": path})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error(), "path": path})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"data": data, "path": path})
		}
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "sandboxfake: unknown op " + strconv.Quote(req.Op)})
	}
}

func (h *Handle) echo(w http.ResponseWriter, r *http.Request, body []byte, req request, count int64) {
	env := map[string]string{}
	for _, k := range append([]string{"PORT", "HOME", "TMPDIR"}, req.Env...) {
		if v, ok := h.env[k]; ok {
			env[k] = v
		}
	}
	var payload any = string(body)
	if json.Valid(body) {
		payload = json.RawMessage(body)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		// The agent runs in this process.
		"pid":      os.Getpid(),
		"headers":  r.Header,
		"payload":  payload,
		"env":      env,
		"cwd":      h.cwd(),
		"hostname": h.spec.Name,
		"count":    count,
	})
}

// cwd is the agent's working directory: Spec.Dir, else its home.
func (h *Handle) cwd() string {
	if h.spec.Dir != "" {
		return h.spec.Dir
	}
	return h.env["HOME"]
}

// path expands $VARS from the agent's environment and resolves a relative
// path against its working directory.
func (h *Handle) path(p string) string {
	p = os.Expand(p, func(k string) string { return h.env[k] })
	if !filepath.IsAbs(p) {
		p = filepath.Join(h.cwd(), p)
	}
	return filepath.Clean(p)
}

// read reads the sandbox's own files, then the real files of Spec.Dir.
func (h *Handle) read(path string) (string, error) {
	h.mu.Lock()
	data, ok := h.files[path]
	h.mu.Unlock()
	if ok {
		return data, nil
	}
	if dir := h.spec.Dir; dir != "" && strings.HasPrefix(path, filepath.Clean(dir)+"/") {
		b, err := os.ReadFile(path)
		return string(b), err
	}
	return "", fmt.Errorf("read %s: %w", path, fs.ErrNotExist)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
