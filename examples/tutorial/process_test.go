package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/app"
	"github.com/berth-dev/berth/app/apptest"
)

// agentEnv makes the test binary run the agent's main instead of tests, so
// the process tests need no separate build.
const agentEnv = "BERTH_TUTORIAL_RUN_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// agentProcess is the tutorial agent running as its own process, the way
// berth's process backend starts one per session.
type agentProcess struct {
	cmd *exec.Cmd
	url string

	scanned chan struct{} // closed when stderr is drained
	mu      sync.Mutex    // guards logs
	logs    []string
}

func startAgent(t *testing.T) *agentProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), agentEnv+"=1", app.EnvPort+"=0", app.EnvHost+"=127.0.0.1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	p := &agentProcess{cmd: cmd, scanned: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.scanned
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent %d logs:\n%s", cmd.Process.Pid, p.logText())
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.scanned:
		t.Fatalf("agent exited before listening:\n%s", p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("agent not listening after 30s:\n%s", p.logText())
	}
	return p
}

func (p *agentProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logs, "\n")
}

// stop sends SIGTERM and returns the exit error.
func (p *agentProcess) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.scanned:
	case <-time.After(20 * time.Second):
		t.Fatal("agent still running 20s after SIGTERM")
	}
	return p.cmd.Wait()
}

func TestSessionsInSeparateProcesses(t *testing.T) {
	s1, s2 := startAgent(t), startAgent(t)
	h1, h2 := apptest.Connect(t, s1.url), apptest.Connect(t, s2.url)

	product := invoke(t, h1, map[string]any{"prompt": "How much is 2X5?", "user_id": "1"})
	sum := invoke(t, h1, map[string]any{"prompt": "and that plus 34?", "user_id": "1"})
	if product.Result == nil || sum.Result == nil || *sum.Result != *product.Result+34 {
		t.Fatalf("session 1: %+v then %+v", product, sum)
	}
	if product.PID != s1.cmd.Process.Pid || sum.PID != product.PID {
		t.Errorf("session 1 answered from pids %d and %d, want %d", product.PID, sum.PID, s1.cmd.Process.Pid)
	}

	other := invoke(t, h2, map[string]any{"prompt": "And plus 10?", "user_id": "1"})
	if other.PID != s2.cmd.Process.Pid || other.PID == sum.PID {
		t.Errorf("session 2 answered from pid %d, want its own process %d", other.PID, s2.cmd.Process.Pid)
	}
	if other.Result != nil || other.Turn != 1 || !strings.Contains(other.Answer, "no previous result") {
		t.Errorf("session 2 saw session 1's state: %+v", other)
	}
	if other.SessionID != h2.SessionID || sum.SessionID != h1.SessionID {
		t.Errorf("session ids %q / %q, want %q / %q", sum.SessionID, other.SessionID, h1.SessionID, h2.SessionID)
	}

	if err := s1.stop(t); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Errorf("agent exited %d after SIGTERM, want 0", exit.ExitCode())
		} else {
			t.Error(err)
		}
	}
	if !strings.Contains(s1.logText(), `"msg":"stopped"`) {
		t.Error("agent did not log a clean stop")
	}
	// The other session is untouched.
	if p := h2.Ping(); p.Status == "" {
		t.Error("session 2 stopped answering pings")
	}
}
