package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/smithy-go"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/testenv"
	"golang.org/x/sys/unix"
)

// netnsEnv marks the copy of the test binary that runs in a private network
// namespace, where binding port 8080 disturbs nobody else on the machine.
const netnsEnv = "BERTH_COMPAT_IN_NETNS"

// TestAgentCoreSDKAgentOnProcessBackend runs the unmodified TypeScript
// agent on the process backend, which shares the host network: the agent
// ignores PORT and binds 0.0.0.0:8080, so berth never finds it on the port
// it handed out, and a second session's agent cannot bind at all. berth must
// refuse both sessions with a RuntimeClientError, never route one session's
// calls to another session's agent.
//
// The test re-runs itself in a fresh network namespace, so the 8080 it
// fights over is its own.
func TestAgentCoreSDKAgentOnProcessBackend(t *testing.T) {
	t.Parallel()
	if os.Getenv(netnsEnv) == "" {
		runInNetns(t)
		return
	}
	if err := loopbackUp(); err != nil {
		t.Fatalf("bring up lo in the test's network namespace: %v", err)
	}
	// The agent answers nowhere berth looks, so the first session waits out
	// the start timeout; keep it short (node itself starts in ~300 ms).
	b := startBerth(t, []config.Runtime{tsRuntime(t, "tsproc", "process")}, func(c *config.Config) {
		c.StartTimeout = config.Duration(5 * time.Second)
	})

	arn := b.arn(t, "tsproc")
	invoke := func(sid string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		body, _ := json.Marshal(map[string]any{"action": "whoami"})
		out, err := b.client.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn:  aws.String(arn),
			RuntimeSessionId: aws.String(sid),
			ContentType:      aws.String("application/json"),
			Payload:          body,
		})
		if err == nil {
			out.Response.Close()
		}
		return err
	}
	first, second := newSessionID(), newSessionID()
	errc := make(chan error, 1)
	go func() { errc <- invoke(first) }()
	// Give the first agent time to take 8080, as it would in a real clash.
	time.Sleep(time.Second)
	err2 := invoke(second)
	err1 := <-errc
	for i, err := range []error{err1, err2} {
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "RuntimeClientError" {
			t.Fatalf("session %d on the process backend: got %v, want RuntimeClientError", i+1, err)
		}
		// The refusal names the cause and the cure, rather than only a
		// ping timeout or an exit code.
		if msg := ae.ErrorMessage(); !strings.Contains(msg, "$PORT") || !strings.Contains(msg, "sandbox: linux") {
			t.Errorf("session %d: the refusal does not say the agent ignores PORT and needs the linux sandbox: %s", i+1, msg)
		}
		t.Logf("session %d refused: %s", i+1, ae.ErrorMessage())
	}
}

// runInNetns runs the calling test again in a new network namespace.
func runInNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Require(t, testenv.Root, errors.New("a private network namespace, so the test's port 8080 clashes with nobody else's, needs root"))
	}
	// Install here, once, rather than racing the inner run's install.
	requireNode(t)
	npmProject(t, tsAgentDir, "agent.js")
	args := []string{"-test.run=^" + t.Name() + "$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	// Show the inner run's verdict and logs as this test's.
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "---") || strings.HasPrefix(line, "===") || line == "PASS" || strings.HasPrefix(line, "ok") {
			continue
		}
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("test in a private network namespace: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Skip("skipped in the private network namespace (see above)")
	}
}

// loopbackUp sets lo up; a new network namespace starts with it down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
