// Command testagent is a scriptable AgentCore-style agent for backend and
// session tests, standard library only. It listens on
// $BERTH_AGENT_HOST:$PORT (default 0.0.0.0:8080) and serves GET /ping
// ({"status":"Healthy"|"HealthyBusy","time_of_last_update":unix seconds},
// the time moving only when the status flips) and POST /invocations, whose
// JSON payload picks a behaviour by "op":
//
//	echo (default)   pid, ppid, uid, request headers, payload, env (PORT, HOME,
//	                 TMPDIR, BERTH_AGENT_HOST and the names in "env"), cwd,
//	                 hostname, and "count", this process's invocation counter
//	sse              "n" events `data: {"i":k}`, each flushed, "delay_ms" apart
//	crash            exit(3) without answering
//	hang             never answer
//	busy             /ping reports HealthyBusy for "ms", answer at once
//	status           answer HTTP "code" with a JSON error body
//	spawn            start a sleeper grandchild (argv: self, "sleeper", "tag"),
//	                 ignoring SIGTERM if "ignore_term"; answer its pid. With
//	                 "detach": "setsid" it runs in a session of its own; with
//	                 "double-fork" a short-lived child starts it in its own
//	                 session and exits, orphaning it (a daemon's way out);
//	                 "clean_env" starts it with an empty environment
//	write, read      file "path" ($VARS expanded), "data"; read of a missing
//	                 file answers 404
//	sleep            answer after "ms"
//	hold             report HealthyBusy until the caller hangs up: a test sees
//	                 the call has reached the agent, and releases it at will
//
// Every invocation counts, whatever its op. AGENT_MODE picks a start-up
// behaviour: crash-on-start (exit 2), no-listen (sleep, never listen),
// unhealthy (/ping answers 500), unhealthy-after (500 once
// AGENT_UNHEALTHY_AFTER_MS have passed), ignore-term (log SIGTERM and carry
// on). Otherwise SIGTERM logs a line and exits 0. A line goes to stdout and
// one to stderr at start.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sleeper" {
		sleeper()
		return
	}
	if len(os.Args) > 2 && os.Args[1] == "forker" {
		os.Exit(forker(os.Args[2]))
	}
	os.Exit(run())
}

// sleeper never exits on its own. With SLEEPER_IGNORE_TERM=1 it also
// ignores SIGTERM, so only SIGKILL ends it.
func sleeper() {
	if os.Getenv("SLEEPER_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// forker starts a sleeper in a new session and exits without waiting.
func forker(tag string) int {
	cmd := sleeperCmd(tag, os.Getenv("SLEEPER_IGNORE_TERM") == "1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Not our stdout: the agent reads it to its end.
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "testagent: forker: %v\n", err)
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	return 0
}

func run() int {
	mode := os.Getenv("AGENT_MODE")
	pid := os.Getpid()
	fmt.Fprintf(os.Stdout, "testagent: stdout start pid=%d mode=%q\n", pid, mode)
	fmt.Fprintf(os.Stderr, "testagent: stderr start pid=%d mode=%q\n", pid, mode)

	switch mode {
	case "crash-on-start":
		return 2
	case "no-listen":
		for {
			time.Sleep(time.Hour)
		}
	}

	// Catch SIGTERM before listening so a Stop that races start-up is still
	// seen and logged.
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)

	host := envOr("BERTH_AGENT_HOST", "0.0.0.0")
	port := envOr("PORT", "8080")
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "testagent: listen: %v\n", err)
		return 1
	}

	a := newAgent(mode)
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	for {
		select {
		case err := <-serveErr:
			fmt.Fprintf(os.Stderr, "testagent: serve: %v\n", err)
			return 1
		case <-terms:
			if mode == "ignore-term" {
				fmt.Fprintln(os.Stdout, "testagent: received SIGTERM, ignoring it")
				continue
			}
			fmt.Fprintln(os.Stdout, "testagent: received SIGTERM, exiting")
			// Close, not Shutdown: a hung invocation must not hold exit up.
			_ = srv.Close()
			<-serveErr
			return 0
		}
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type agent struct {
	mode           string
	started        time.Time
	unhealthyAfter time.Duration

	// mu guards the fields that follow.
	mu          sync.Mutex
	busy        int // active busy windows
	lastUpdate  int64
	invocations int64
	active      int // calls in the exclusive op now
	maxActive   int // the most exclusive-op calls ever at once
}

func newAgent(mode string) *agent {
	a := &agent{mode: mode, started: time.Now(), lastUpdate: time.Now().Unix()}
	if ms, err := strconv.Atoi(os.Getenv("AGENT_UNHEALTHY_AFTER_MS")); err == nil {
		a.unhealthyAfter = time.Duration(ms) * time.Millisecond
	}
	return a
}

func (a *agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", a.ping)
	mux.HandleFunc("POST /invocations", a.invoke)
	return mux
}

func (a *agent) ping(w http.ResponseWriter, _ *http.Request) {
	switch {
	case a.mode == "unhealthy",
		a.mode == "unhealthy-after" && time.Since(a.started) >= a.unhealthyAfter:
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "unhealthy by AGENT_MODE"})
		return
	}
	a.mu.Lock()
	status := "Healthy"
	if a.busy > 0 {
		status = "HealthyBusy"
	}
	last := a.lastUpdate
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "time_of_last_update": last})
}

// setBusy adds delta to the busy count and bumps time_of_last_update only
// when the reported status flips.
func (a *agent) setBusy(delta int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.busy > 0
	a.busy += delta
	if (a.busy > 0) != was {
		a.lastUpdate = time.Now().Unix()
	}
}

// request is the union of every op's fields.
type request struct {
	Op         string   `json:"op"`
	N          int      `json:"n"`
	DelayMS    int      `json:"delay_ms"`
	MS         int      `json:"ms"`
	Code       int      `json:"code"`
	Path       string   `json:"path"`
	Data       string   `json:"data"`
	Env        []string `json:"env"`
	Tag        string   `json:"tag"`
	IgnoreTerm bool     `json:"ignore_term"`
	Detach     string   `json:"detach"`
	CleanEnv   bool     `json:"clean_env"`
}

func (a *agent) invoke(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.invocations++
	count := a.invocations
	a.mu.Unlock()

	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "read body: " + err.Error()})
		return
	}
	var req request
	if len(body) > 0 && json.Unmarshal(body, &req) != nil {
		req = request{} // not JSON: echo it back as a string
	}

	switch req.Op {
	case "", "echo":
		a.echo(w, r, body, req, count)
	case "sse":
		sse(w, req)
	case "crash":
		fmt.Fprintln(os.Stderr, "testagent: crashing on request")
		os.Exit(3)
	case "hang":
		for {
			time.Sleep(time.Hour)
		}
	case "busy":
		a.setBusy(1)
		time.AfterFunc(time.Duration(req.MS)*time.Millisecond, func() { a.setBusy(-1) })
		writeJSON(w, http.StatusOK, map[string]any{"status": "HealthyBusy", "ms": req.MS})
	case "status":
		code := req.Code
		if code < 100 || code > 999 {
			code = http.StatusInternalServerError
		}
		writeJSON(w, code, map[string]any{"message": "status op", "code": code})
	case "spawn":
		a.spawn(w, req)
	case "write":
		path := os.ExpandEnv(req.Path)
		if err := os.WriteFile(path, []byte(req.Data), 0o644); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error(), "path": path})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "path": path})
	case "read":
		path := os.ExpandEnv(req.Path)
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			writeJSON(w, http.StatusNotFound, map[string]any{"message": err.Error(), "path": path})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error(), "path": path})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"data": string(data), "path": path})
		}
	case "alloc":
		// Touches MS megabytes, to run into a memory limit.
		var hold [][]byte
		for i := 0; i < req.MS; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			hold = append(hold, b)
		}
		writeJSON(w, http.StatusOK, map[string]any{"allocated_mb": len(hold)})
	case "exclusive":
		// Reports the most calls it ever saw running at once, and the
		// order calls started in: concurrency-policy tests read both.
		a.mu.Lock()
		a.active++
		a.maxActive = max(a.maxActive, a.active)
		a.mu.Unlock()
		time.Sleep(time.Duration(req.MS) * time.Millisecond)
		a.mu.Lock()
		a.active--
		most := a.maxActive
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"max_active": most, "seq": count, "tag": req.Tag})
	case "hold":
		a.setBusy(1)
		<-r.Context().Done()
		a.setBusy(-1)
	case "sleep":
		select {
		case <-time.After(time.Duration(req.MS) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"slept_ms": req.MS})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "unknown op " + strconv.Quote(req.Op)})
	}
}

func (a *agent) echo(w http.ResponseWriter, r *http.Request, body []byte, req request, count int64) {
	env := map[string]string{}
	for _, k := range append([]string{"PORT", "HOME", "TMPDIR", "BERTH_AGENT_HOST"}, req.Env...) {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	cwd, _ := os.Getwd()
	hostname, _ := os.Hostname()
	var payload any = string(body)
	if json.Valid(body) {
		payload = json.RawMessage(body)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"pid":      os.Getpid(),
		"ppid":     os.Getppid(),
		"uid":      os.Getuid(),
		"headers":  r.Header,
		"payload":  payload,
		"env":      env,
		"cwd":      cwd,
		"hostname": hostname,
		"count":    count,
		"instance": instance,
	})
}

// instance is random per process: PIDs repeat across pid namespaces.
var instance = strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())

func sse(w http.ResponseWriter, req request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for i := range req.N {
		if i > 0 && req.DelayMS > 0 {
			time.Sleep(time.Duration(req.DelayMS) * time.Millisecond)
		}
		if _, err := fmt.Fprintf(w, "data: {\"i\":%d}\n\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// spawn starts a sleeper grandchild and returns its PID (as the agent sees
// it). A sleeper the agent started itself is reaped by a goroutine that lives
// as long as it does, which is until the sandbox is torn down.
func (a *agent) spawn(w http.ResponseWriter, req request) {
	if req.Detach == "double-fork" {
		cmd := exec.Command(self(), "forker", req.Tag)
		cmd.Env = sleeperEnv(req.IgnoreTerm)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "double fork: " + err.Error()})
			return
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		writeJSON(w, http.StatusOK, map[string]any{"pid": pid, "tag": req.Tag})
		return
	}
	cmd := sleeperCmd(req.Tag, req.IgnoreTerm)
	if req.CleanEnv {
		cmd.Env = []string{}
	}
	if req.Detach == "setsid" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "start sleeper: " + err.Error()})
		return
	}
	go func() { _ = cmd.Wait() }()
	writeJSON(w, http.StatusOK, map[string]any{"pid": cmd.Process.Pid, "tag": req.Tag})
}

func self() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}

func sleeperEnv(ignoreTerm bool) []string {
	env := os.Environ()
	if ignoreTerm {
		env = append(env, "SLEEPER_IGNORE_TERM=1")
	}
	return env
}

func sleeperCmd(tag string, ignoreTerm bool) *exec.Cmd {
	cmd := exec.Command(self(), "sleeper", tag)
	cmd.Env = sleeperEnv(ignoreTerm)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
