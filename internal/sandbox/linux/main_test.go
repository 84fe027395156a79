//go:build linux

package linux_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/testenv"
)

func TestMain(m *testing.M) {
	linux.MaybeRunInit()
	sandboxtest.BerthMain(standInBackend)
	if os.Getenv(childMode) == "kill" {
		os.Exit(runKillChild())
	}
	code := m.Run()
	if agentPath != "" {
		os.RemoveAll(filepath.Dir(agentPath))
	}
	os.Exit(code)
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// testAgent builds testdata/agent once per test binary into a world-readable
// directory, so user-namespace sandboxes can run it too.
func testAgent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-linux-agent-")
		if err != nil {
			agentErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "agent")
		out, err := exec.Command("go", "build", "-o", agentPath, "./testdata/agent").CombinedOutput()
		if err != nil {
			agentErr = fmt.Errorf("build test agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// requireLinux states that t needs a host that runs the backend.
func requireLinux(t testing.TB) {
	t.Helper()
	testenv.Require(t, testenv.Linux, linux.Available())
}

func newBackend(t testing.TB, mod ...func(*linux.Config)) *linux.Backend {
	t.Helper()
	requireLinux(t)
	cfg := linux.Config{
		RootDir:      filepath.Join(t.TempDir(), "sandboxes"),
		CgroupParent: "berth-test-" + randHex(4),
		EgressRange:  nextTestRange(),
	}
	for _, f := range mod {
		f(&cfg)
	}
	b, err := linux.New(cfg)
	if err != nil {
		t.Fatalf("new backend: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func spec(t testing.TB, mod ...func(*sandbox.Spec)) sandbox.Spec {
	t.Helper()
	rt, sess := "rt-"+randHex(4), "session-"+randHex(16)
	s := sandbox.Spec{
		Name:      sandbox.Name(rt, sess),
		RuntimeID: rt,
		SessionID: sess,
		Command:   []string{testAgent(t)},
		Output:    sandboxtest.Output(t),
		Network:   sandbox.NetworkNone,
	}
	for _, f := range mod {
		f(&s)
	}
	return s
}

// start starts a sandbox, stops it at cleanup and waits until /ping answers.
func start(t testing.TB, b sandbox.Backend, s sandbox.Spec) sandbox.Handle {
	t.Helper()
	h, err := b.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(context.Background(), time.Second); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	waitPing(t, h)
	return h
}

func client(h sandbox.Handle) *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true},
	}
}

func waitPing(t testing.TB, h sandbox.Handle) {
	t.Helper()
	c := client(h)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://" + h.Addr() + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-h.Done():
			t.Fatalf("agent exited before /ping answered: %v", h.Exit())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent /ping never answered: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type tryResult struct {
	OK  bool   `json:"ok"`
	Err string `json:"err"`
	Out string `json:"out"`
}

type tryReq struct {
	Op   string   `json:"op"`
	Arg  string   `json:"arg,omitempty"`
	Args []string `json:"args,omitempty"`
	N    int64    `json:"n,omitempty"`
}

// try asks the agent to run one attempt. A transport error (the agent died
// mid-attempt) is returned as err.
func try(h sandbox.Handle, req tryReq) (tryResult, error) {
	body, _ := json.Marshal(req)
	resp, err := client(h).Post("http://"+h.Addr()+"/try", "application/json", bytes.NewReader(body))
	if err != nil {
		return tryResult{}, err
	}
	defer resp.Body.Close()
	var r tryResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return tryResult{}, fmt.Errorf("decode /try: %w (status %d)", err, resp.StatusCode)
	}
	return r, nil
}

func mustTry(t testing.TB, h sandbox.Handle, req tryReq) tryResult {
	t.Helper()
	r, err := try(h, req)
	if err != nil {
		t.Fatalf("try %s: %v", req.Op, err)
	}
	return r
}

// hostListener stands in for berth's admin listener on the host loopback.
func hostListener(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}
