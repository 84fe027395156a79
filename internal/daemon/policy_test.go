package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/testenv"
)

// policyEnv adds runtimes with berth's session policies to the wire env.
func policyEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) {
		agent := sandboxtest.BuildAgent(t)
		c.Runtimes = append(c.Runtimes,
			config.Runtime{Name: "rejecter", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "reject"}}},
			config.Runtime{Name: "queuer", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "queue", QueueSize: 64}}},
			config.Runtime{Name: "smallq", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "queue", QueueSize: 2}}},
			config.Runtime{Name: "impatient", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "queue", QueueTimeout: config.Duration(150 * time.Millisecond)}}},
			config.Runtime{Name: "bound", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{BindUser: true, MaxSessionsPerUser: 2}}},
		)
	})
}

type exclusiveReply struct {
	MaxActive int    `json:"max_active"`
	Seq       int    `json:"seq"`
	Tag       string `json:"tag"`
}

func (e *env) exclusive(runtime, sid string, ms int, tag string) (exclusiveReply, error) {
	out, err := e.invoke(context.Background(), runtime, sid, map[string]any{"op": "exclusive", "ms": ms, "tag": tag})
	if err != nil {
		return exclusiveReply{}, err
	}
	defer out.Response.Close()
	var r exclusiveReply
	err = json.NewDecoder(out.Response).Decode(&r)
	return r, err
}

// hold starts a call that holds sid's turn in the agent and returns once
// berth has seen it arrive there (the agent reports HealthyBusy while it
// holds). release ends the call; it may be called more than once.
func (e *env) hold(t *testing.T, runtime, sid string) (release func()) {
	t.Helper()
	waitLive(t, e, sid, "no busy report left from an earlier call", func(in session.Info) bool { return !in.Busy })
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		out, err := e.invoke(ctx, runtime, sid, map[string]any{"op": "hold"})
		if err == nil {
			out.Response.Close()
		}
		ended <- err
	}()
	waitLive(t, e, sid, "the held call to reach the agent", func(in session.Info) bool { return in.Busy })
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Errorf("held call ended with %v, want it cancelled", err)
			}
		})
	}
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestConcurrencyAllowInterleaves(t *testing.T) {
	e := policyEnv(t)
	sid := newSessionID()
	e.echo(sid)
	var wg sync.WaitGroup
	most := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			r, err := e.exclusive("echo", sid, 200, "")
			if err != nil {
				t.Error(err)
			}
			most <- r.MaxActive
		})
	}
	wg.Wait()
	close(most)
	top := 0
	for m := range most {
		top = max(top, m)
	}
	if top < 2 {
		t.Fatalf("allow policy: calls never overlapped (max %d): AgentCore lets them", top)
	}
}

func TestConcurrencyReject(t *testing.T) {
	e := policyEnv(t)
	sid := newSessionID()
	if _, err := e.exclusive("rejecter", sid, 0, "warm"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for range 10 {
		wg.Go(func() {
			r, err := e.exclusive("rejecter", sid, 300, "")
			mu.Lock()
			defer mu.Unlock()
			codes[errorCode(err)]++
			if err == nil && r.MaxActive != 1 {
				t.Errorf("reject policy let calls interleave: max_active %d", r.MaxActive)
			}
		})
	}
	wg.Wait()
	if codes[""] < 1 || codes["RetryableConflictException"] < 1 || codes[""]+codes["RetryableConflictException"] != 10 {
		t.Fatalf("reject outcomes %v: want successes and RetryableConflictException only", codes)
	}
	// 409 is the status.
	release := e.hold(t, "rejecter", sid)
	_, err := e.exclusive("rejecter", sid, 0, "")
	release()
	wantAPIError(t, err, "RetryableConflictException", 409)
}

func TestConcurrencyQueueRunsOneAtATimeInOrder(t *testing.T) {
	e := policyEnv(t)
	sid := newSessionID()
	if _, err := e.exclusive("queuer", sid, 0, "warm"); err != nil {
		t.Fatal(err)
	}
	// While one call holds the turn, the others arrive in order: each
	// starts once berth shows the one before it in the queue.
	const n = 12
	var wg sync.WaitGroup
	defer wg.Wait()
	release := e.hold(t, "queuer", sid)
	defer release()
	replies := make([]exclusiveReply, n)
	for i := range n {
		wg.Go(func() {
			r, err := e.exclusive("queuer", sid, 50, fmt.Sprint(i))
			if err != nil {
				t.Errorf("call %d lost: %v", i, err)
			}
			replies[i] = r
		})
		waitLive(t, e, sid, fmt.Sprintf("call %d in the queue", i), func(in session.Info) bool { return in.Queued == i+1 })
	}
	release()
	wg.Wait()
	seqs := make([]int, n)
	for i, r := range replies {
		if r.MaxActive != 1 {
			t.Fatalf("queue policy let calls interleave: max_active %d", r.MaxActive)
		}
		seqs[i] = r.Seq
	}
	if !sort.IntsAreSorted(seqs) {
		t.Fatalf("calls ran out of arrival order: %v", seqs)
	}
}

func TestConcurrencyQueueFullAndTimeout(t *testing.T) {
	e := policyEnv(t)
	warm := func(t *testing.T, runtime string) string {
		sid := newSessionID()
		if _, err := e.exclusive(runtime, sid, 0, "warm"); err != nil {
			t.Fatal(err)
		}
		return sid
	}
	t.Run("full", func(t *testing.T) {
		sid := warm(t, "smallq")
		var wg sync.WaitGroup
		defer wg.Wait()
		release := e.hold(t, "smallq", sid)
		defer release()
		// Two calls fill the queue of two; the third is refused at once.
		for i := range 2 {
			wg.Go(func() {
				if _, err := e.exclusive("smallq", sid, 0, ""); err != nil {
					t.Errorf("queued call %d: %v", i, err)
				}
			})
			waitLive(t, e, sid, fmt.Sprintf("call %d in the queue", i), func(in session.Info) bool { return in.Queued == i+1 })
		}
		_, err := e.exclusive("smallq", sid, 0, "")
		wantAPIError(t, err, "ThrottlingException", 429)
		if !strings.Contains(err.Error(), "has 2 calls waiting") {
			t.Fatalf("refused with %v, want a full queue", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		sid := warm(t, "impatient")
		release := e.hold(t, "impatient", sid)
		defer release()
		start := time.Now()
		_, err := e.exclusive("impatient", sid, 0, "")
		wantAPIError(t, err, "ThrottlingException", 429)
		if !strings.Contains(err.Error(), "waited 150ms") || time.Since(start) < 150*time.Millisecond {
			t.Fatalf("refused with %v after %v, want a queue timeout after 150ms", err, time.Since(start))
		}
	})
}

func TestBindUser(t *testing.T) {
	e := policyEnv(t)
	ctx := context.Background()
	as := func(user string) func(*bedrockagentcore.Options) {
		return func(o *bedrockagentcore.Options) {
			o.APIOptions = append(o.APIOptions, addUser(user))
		}
	}
	call := func(sid, user string) error {
		out, err := e.client.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn: aws.String(e.arn("bound")), RuntimeSessionId: aws.String(sid),
			RuntimeUserId: aws.String(user), Payload: []byte(`{"op":"echo"}`)})
		if err == nil {
			out.Response.Close()
		}
		return err
	}
	stop := func(sid, user string) error {
		_, err := e.client.StopRuntimeSession(ctx, &bedrockagentcore.StopRuntimeSessionInput{
			AgentRuntimeArn: aws.String(e.arn("bound")), RuntimeSessionId: aws.String(sid)}, as(user))
		return err
	}
	s1 := newSessionID()
	if err := call(s1, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := call(s1, "alice"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, call(s1, "mallory"), "AccessDeniedException", 403)
	wantAPIError(t, stop(s1, "mallory"), "AccessDeniedException", 403)

	// Per-user cap: two live sessions.
	s2, s3 := newSessionID(), newSessionID()
	if err := call(s2, "alice"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, call(s3, "alice"), "ServiceQuotaExceededException", 402)
	if err := call(s3, "bob"); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	if err := stop(s1, "alice"); err != nil {
		t.Fatalf("owner's stop: %v", err)
	}
	if err := call(s3+"x", "alice"); err != nil {
		t.Fatalf("after a stop alice is under her cap again: %v", err)
	}
}

// addUser sets the runtime user header on a request (StopRuntimeSession
// has no modeled field for it).
func addUser(user string) func(*middleware.Stack) error {
	return smithyhttp.AddHeaderValue("X-Amzn-Bedrock-AgentCore-Runtime-User-Id", user)
}

// TestMemoryLimitEndsSessionAsCrashed: a linux sandbox that outgrows its
// memory limit is killed; the call fails with RuntimeClientError and the
// session record says crashed, out of memory. Other sessions carry on.
func TestMemoryLimitEndsSessionAsCrashed(t *testing.T) {
	testenv.Require(t, testenv.Linux, linux.Available())
	e := newEnv(t, func(c *config.Config) {
		c.Runtimes = append(c.Runtimes, config.Runtime{Name: "small", Settings: registry.Settings{Command: []string{sandboxtest.BuildAgent(t)}, Sandbox: "linux", Limits: registry.Limits{Memory: 64 << 20}}})
	})
	bystander := newSessionID()
	e.echo(bystander)
	sid := newSessionID()
	out, err := e.invoke(context.Background(), "small", sid, map[string]any{"op": "echo"})
	if err != nil {
		t.Fatal(err)
	}
	out.Response.Close()
	rec := liveRecord(t, e, sid)
	_, err = e.invoke(context.Background(), "small", sid, map[string]any{"op": "alloc", "ms": 512})
	wantAPIError(t, err, "RuntimeClientError", 424)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.d.Store().GetSession(context.Background(), rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == "terminated" {
			if r.EndReason != "crashed" || !strings.Contains(r.Detail, "out of memory") {
				t.Fatalf("ended %q: %q; want crashed, out of memory", r.EndReason, r.Detail)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session did not end after exceeding its memory limit")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := e.echo(bystander); r.Invocations != 2 {
		t.Fatalf("bystander session harmed: %+v", r)
	}
}

// TestUserNamespaceOption: with user_namespace: true, a session's agent is
// root inside its sandbox and an unprivileged uid on the host.
func TestUserNamespaceOption(t *testing.T) {
	testenv.Require(t, testenv.Linux, linux.Available())
	// The mapped root must reach the agent and the data dir: open them up.
	dir, err := os.MkdirTemp("", "berth-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	agent := filepath.Join(dir, "testagent")
	data, err := os.ReadFile(sandboxtest.BuildAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, data, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *config.Config) {
		c.DataDir = filepath.Join(dir, "data")
		c.UserNamespace = true
		c.Runtimes = append(c.Runtimes, config.Runtime{Name: "mapped", Settings: registry.Settings{Command: []string{agent}, Sandbox: "linux", Env: map[string]string{"BERTH_WIRE_TOKEN": "userns-" + filepath.Base(dir)}}})
	})
	out, err := e.invoke(context.Background(), "mapped", newSessionID(), map[string]any{"op": "echo"})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		UID int `json:"uid"`
	}
	json.NewDecoder(out.Response).Decode(&r)
	out.Response.Close()
	pids, err := sandboxtest.ProcsWithEnv("BERTH_WIRE_TOKEN=userns-" + filepath.Base(dir))
	if err != nil || len(pids) != 1 {
		t.Fatalf("agent processes %v: %v", pids, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	hostUID := -1
	for line := range strings.SplitSeq(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			hostUID, _ = strconv.Atoi(f[1])
		}
	}
	if r.UID != 0 || hostUID < 1000 {
		t.Fatalf("agent is uid %d inside and %d on the host; want 0 inside, unprivileged outside", r.UID, hostUID)
	}
}
