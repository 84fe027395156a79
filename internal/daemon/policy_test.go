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
	"github.com/berth-dev/berth/internal/testenv"
)

// policyEnv adds runtimes with berth's session policies to the wire env.
func policyEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) {
		agent := sandboxtest.BuildAgent(t)
		c.Runtimes = append(c.Runtimes,
			config.Runtime{Name: "rejecter", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "reject"}}},
			config.Runtime{Name: "queuer", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "queue", QueueSize: 64}}},
			config.Runtime{Name: "smallq", Settings: registry.Settings{Command: []string{agent}, Sandbox: "process", Sessions: registry.SessionPolicy{Concurrency: "queue", QueueSize: 2, QueueTimeout: config.Duration(150 * time.Millisecond)}}},
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
	_, err := func() (any, error) {
		done := make(chan struct{})
		go func() { e.exclusive("rejecter", sid, 400, ""); close(done) }()
		time.Sleep(100 * time.Millisecond)
		defer func() { <-done }()
		return e.exclusive("rejecter", sid, 0, "")
	}()
	wantAPIError(t, err, "RetryableConflictException", 409)
}

func TestConcurrencyQueueRunsOneAtATimeInOrder(t *testing.T) {
	e := policyEnv(t)
	sid := newSessionID()
	if _, err := e.exclusive("queuer", sid, 0, "warm"); err != nil {
		t.Fatal(err)
	}
	// Arrivals 40 ms apart, calls of 120 ms: the queue builds up, and
	// scheduling jitter stays well below the gap between arrivals.
	const n = 12
	var wg sync.WaitGroup
	replies := make([]exclusiveReply, n)
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 40 * time.Millisecond) // arrive in order
			r, err := e.exclusive("queuer", sid, 120, fmt.Sprint(i))
			if err != nil {
				t.Errorf("call %d lost: %v", i, err)
			}
			replies[i] = r
		})
	}
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
	sid := newSessionID()
	if _, err := e.exclusive("smallq", sid, 0, "warm"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for range 8 {
		wg.Go(func() {
			_, err := e.exclusive("smallq", sid, 1500, "")
			mu.Lock()
			codes[errorCode(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	// One runs; two may wait, but only 150 ms, far less than a call's 1.5 s.
	if codes[""] != 1 || codes["ThrottlingException"] != 7 {
		t.Fatalf("outcomes %v: want 1 success and 7 ThrottlingException", codes)
	}
	_, err := func() (any, error) {
		done := make(chan struct{})
		go func() { e.exclusive("smallq", sid, 400, ""); close(done) }()
		time.Sleep(100 * time.Millisecond)
		defer func() { <-done }()
		return e.exclusive("smallq", sid, 0, "")
	}()
	wantAPIError(t, err, "ThrottlingException", 429)
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
