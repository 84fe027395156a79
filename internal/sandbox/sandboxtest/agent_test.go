package sandboxtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// These tests run the test agent directly, without a backend, to pin the
// behaviour the suite and the session tests rely on.

type direct struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	log  string
	hc   *http.Client
	exit chan error
}

func startDirect(t *testing.T, env ...string) *direct {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_ = ln.Close()

	logPath := filepath.Join(t.TempDir(), "agent.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(BuildAgent(t))
	cmd.Env = append(os.Environ(), append([]string{"PORT=" + port, "BERTH_AGENT_HOST=127.0.0.1"}, env...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &direct{
		t: t, cmd: cmd, base: "http://127.0.0.1:" + port, log: logPath,
		hc:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		exit: make(chan error, 1),
	}
	go func() { d.exit <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-d.exit
		d.hc.CloseIdleConnections()
	})
	return d
}

func (d *direct) waitListening() {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := d.hc.Get(d.base + api.PathPing)
		if err == nil {
			_ = resp.Body.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.t.Fatal("agent never listened")
}

func (d *direct) ping() (int, api.PingResponse) {
	d.t.Helper()
	resp, err := d.hc.Get(d.base + api.PathPing)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr api.PingResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
			d.t.Fatal(err)
		}
	}
	return resp.StatusCode, pr
}

func (d *direct) post(payload string) (*http.Response, error) {
	return d.hc.Post(d.base+api.PathInvocations, "application/json", strings.NewReader(payload))
}

func (d *direct) waitExit(timeout time.Duration) int {
	d.t.Helper()
	select {
	case err := <-d.exit:
		d.exit <- err // let cleanup read it again
		var ee *exec.ExitError
		if err == nil {
			return 0
		}
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		d.t.Fatal(err)
	case <-time.After(timeout):
		d.t.Fatalf("agent did not exit within %v", timeout)
	}
	return 0
}

func TestAgentPingReportsBusyAndTransitionTime(t *testing.T) {
	d := startDirect(t)
	d.waitListening()
	code, first := d.ping()
	if code != http.StatusOK || first.Status != api.PingHealthy {
		t.Fatalf("ping: %d %+v", code, first)
	}
	resp, err := d.post(`{"op":"busy","ms":1100}`)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	_, busy := d.ping()
	if busy.Status != api.PingHealthyBusy {
		t.Fatalf("during busy: %+v", busy)
	}
	if _, again := d.ping(); again.TimeOfLastUpdate != busy.TimeOfLastUpdate {
		t.Errorf("time_of_last_update moved without a status change: %d then %d", busy.TimeOfLastUpdate, again.TimeOfLastUpdate)
	}
	if !settle(5*time.Second, func() bool { _, p := d.ping(); return p.Status == api.PingHealthy }) {
		t.Fatal("status never returned to Healthy")
	}
	_, after := d.ping()
	if after.TimeOfLastUpdate <= first.TimeOfLastUpdate {
		t.Errorf("time_of_last_update %d after a busy window that spanned a second, first was %d", after.TimeOfLastUpdate, first.TimeOfLastUpdate)
	}
}

func TestAgentSSEFlushesEachEvent(t *testing.T) {
	d := startDirect(t)
	d.waitListening()
	began := time.Now()
	resp, err := d.post(`{"op":"sse","n":3,"delay_ms":150}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var events []string
	var firstAt time.Duration
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if len(events) == 0 {
				firstAt = time.Since(began)
			}
			events = append(events, strings.TrimPrefix(line, "data: "))
		}
	}
	total := time.Since(began)
	want := []string{`{"i":0}`, `{"i":1}`, `{"i":2}`}
	if strings.Join(events, ",") != strings.Join(want, ",") {
		t.Errorf("events %v, want %v", events, want)
	}
	if total-firstAt < 250*time.Millisecond {
		t.Errorf("first event at %v, stream ended at %v: events were not flushed one by one", firstAt, total)
	}
}

func TestAgentStatusAndUnknownOp(t *testing.T) {
	d := startDirect(t)
	d.waitListening()
	for payload, want := range map[string]int{
		`{"op":"status","code":503}`: 503,
		`{"op":"status","code":424}`: 424,
		`{"op":"nope"}`:              400,
		`{"op":"sleep","ms":20}`:     200,
		`not json at all`:            200,
	} {
		resp, err := d.post(payload)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		decErr := json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != want || decErr != nil {
			t.Errorf("%s: status %d (body decode %v), want %d with a JSON body", payload, resp.StatusCode, decErr, want)
		}
	}
}

func TestAgentWriteRead(t *testing.T) {
	dir := t.TempDir()
	d := startDirect(t, "HOME="+dir)
	d.waitListening()
	resp, err := d.post(`{"op":"write","path":"$HOME/f","data":"hello"}`)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(got) != "hello" {
		t.Fatalf("write op wrote %q (%v)", got, err)
	}
	resp, err = d.post(`{"op":"read","path":"$HOME/missing"}`)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("read of a missing file: %d, want 404", resp.StatusCode)
	}
}

func TestAgentModes(t *testing.T) {
	t.Run("CrashOnStart", func(t *testing.T) {
		d := startDirect(t, "AGENT_MODE=crash-on-start")
		if code := d.waitExit(20 * time.Second); code != 2 {
			t.Errorf("exit code %d, want 2", code)
		}
		data, _ := os.ReadFile(d.log)
		if !strings.Contains(string(data), "testagent: stdout start") || !strings.Contains(string(data), "testagent: stderr start") {
			t.Errorf("start lines missing from log: %q", data)
		}
	})
	t.Run("Unhealthy", func(t *testing.T) {
		d := startDirect(t, "AGENT_MODE=unhealthy")
		d.waitListening()
		if code, _ := d.ping(); code != http.StatusInternalServerError {
			t.Errorf("ping %d, want 500", code)
		}
	})
	t.Run("UnhealthyAfter", func(t *testing.T) {
		d := startDirect(t, "AGENT_MODE=unhealthy-after", "AGENT_UNHEALTHY_AFTER_MS=300")
		d.waitListening()
		if code, _ := d.ping(); code != http.StatusOK {
			t.Errorf("early ping %d, want 200", code)
		}
		if !settle(5*time.Second, func() bool { c, _ := d.ping(); return c == http.StatusInternalServerError }) {
			t.Error("ping never turned 500")
		}
	})
	t.Run("NoListen", func(t *testing.T) {
		d := startDirect(t, "AGENT_MODE=no-listen")
		time.Sleep(200 * time.Millisecond) // long enough for a listener to appear if there were one
		if resp, err := d.hc.Get(d.base + api.PathPing); err == nil {
			_ = resp.Body.Close()
			t.Error("no-listen agent answered ping")
		}
		select {
		case err := <-d.exit:
			d.exit <- err
			t.Errorf("no-listen agent exited: %v", err)
		default:
		}
	})
	t.Run("Crash", func(t *testing.T) {
		d := startDirect(t)
		d.waitListening()
		if resp, err := d.post(`{"op":"crash"}`); err == nil {
			_ = resp.Body.Close()
			t.Error("crash op answered")
		}
		if code := d.waitExit(10 * time.Second); code != 3 {
			t.Errorf("exit code %d, want 3", code)
		}
	})
	t.Run("TermExitsZero", func(t *testing.T) {
		d := startDirect(t)
		d.waitListening()
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		if code := d.waitExit(10 * time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
	})
	t.Run("IgnoreTerm", func(t *testing.T) {
		d := startDirect(t, "AGENT_MODE=ignore-term")
		d.waitListening()
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond) // the agent would exit within this if it heeded SIGTERM
		if code, _ := d.ping(); code != http.StatusOK {
			t.Errorf("after SIGTERM, ping %d; an ignore-term agent keeps serving", code)
		}
	})
}

func TestAgentSpawnLeavesGrandchild(t *testing.T) {
	d := startDirect(t)
	d.waitListening()
	tag := "spawn-" + randHex(8)
	resp, err := d.post(`{"op":"spawn","tag":"` + tag + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ PID int }
	err = json.NewDecoder(resp.Body).Decode(&r)
	_ = resp.Body.Close()
	if err != nil || r.PID <= 0 {
		t.Fatalf("spawn reply pid %d (%v)", r.PID, err)
	}
	requireProcfs(t)
	pids, err := liveProcs("cmdline", tag)
	if err != nil || len(pids) != 1 || pids[0] != r.PID {
		t.Fatalf("processes tagged %s: %v (%v), want [%d]", tag, pids, err, r.PID)
	}
}
