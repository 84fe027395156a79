package sandboxtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/sandbox"
)

// Environment that turns a test binary into a stand-in berth (BerthMain).
const (
	envBerthRoot    = "SANDBOXTEST_BERTH_ROOT"
	envBerthVariant = "SANDBOXTEST_BERTH_VARIANT"
	envBerthSpec    = "SANDBOXTEST_BERTH_SPEC"
)

// openBerth is what BerthMain was given; nil if the test binary's TestMain
// does not call it.
var openBerth func(root, variant string) (sandbox.Backend, error)

// BerthMain lets the suite run this test binary as a stand-in berth that it
// then kills with SIGKILL (the ReapAfterBerthKilled subtest). Call it first
// in TestMain, after any init hook the backend needs; open must build the
// backend over root as the factory given to Run does for Options.Variant.
// It returns at once unless the suite started this process as a stand-in.
func BerthMain(open func(root, variant string) (sandbox.Backend, error)) {
	openBerth = open
	root := os.Getenv(envBerthRoot)
	if root == "" {
		return
	}
	if err := standIn(root); err != nil {
		fmt.Fprintln(os.Stderr, "stand-in berth:", err)
		os.Exit(1)
	}
	select {} // until SIGKILL
}

// standIn starts the sandbox the suite asked for, has its agent spawn a
// grandchild in its group and two that leave it, says "ready", and returns.
func standIn(root string) error {
	var sp sandbox.Spec
	if err := json.Unmarshal([]byte(os.Getenv(envBerthSpec)), &sp); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	b, err := openBerth(root, os.Getenv(envBerthVariant))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := b.Start(ctx, sp)
	if err != nil {
		return err
	}
	if err := WaitHealthy(ctx, h); err != nil {
		return err
	}
	hc := HTTPClient(h)
	defer hc.CloseIdleConnections()
	for _, tag := range berthKillTags(sp) {
		detach, _, _ := strings.Cut(strings.TrimPrefix(tag, "berthkill-"), "-")
		if detach == "group" {
			detach = ""
		}
		body, _ := json.Marshal(map[string]any{"op": "spawn", "tag": tag, "ignore_term": true, "detach": detach})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.Addr()+api.PathInvocations, strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("spawn %s: %w", tag, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("spawn %s: status %d", tag, resp.StatusCode)
		}
	}
	fmt.Println("ready")
	return nil
}

// berthKillTags name the stand-in's grandchildren: one in the agent's
// process group, one in a session of its own, one orphaned by a double fork.
func berthKillTags(sp sandbox.Spec) []string {
	token := ""
	for _, kv := range sp.Env {
		if v, ok := strings.CutPrefix(kv, "SANDBOXTEST_TOKEN="); ok {
			token = v
		}
	}
	var tags []string
	for _, d := range []string{"group", "setsid", "double-fork"} {
		tags = append(tags, "berthkill-"+d+"-"+token)
	}
	return tags
}

// testReapAfterBerthKilled: a berth process is SIGKILLed with a sandbox
// running whose agent spawned grandchildren, some outside its process
// group. Once Reap has run in a new backend over the same root, no process
// of that sandbox is left, nor any of its directories.
func (s *suite) testReapAfterBerthKilled(t *testing.T) {
	s.needProcesses(t)
	if openBerth == nil {
		t.Fatal("the test binary's TestMain must call sandboxtest.BerthMain")
	}
	sp, token := s.spec(t)
	data, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	root := Root(t)
	berth := exec.Command(os.Args[0], "-test.run=^$")
	berth.Env = append(os.Environ(), envBerthRoot+"="+root, envBerthVariant+"="+s.opts.Variant, envBerthSpec+"="+string(data))
	berth.Stderr = os.Stderr
	out, err := berth.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := berth.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = berth.Process.Kill()
			_ = berth.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("stand-in berth said %q (%v)", line, err)
	}
	tags := berthKillTags(sp)
	requireTagged(t, tags...)

	if err := berth.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := berth.Wait(); !errors.As(err, &ee) {
		t.Fatalf("stand-in berth: %v, want killed", err)
	}
	killed = true

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.newBackend(t).Reap(ctx); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	requireNoProcs(t, "after the berth was killed and Reap ran", token)
	requireNoTagged(t, "after the berth was killed and Reap ran", tags...)
	if left := leftovers(root, sp.Name); len(left) > 0 {
		t.Errorf("Reap left %v", left)
	}
}

// testAttach: a second backend instance over the same state takes charge of
// a running sandbox by its ID; the agent answers through the new handle,
// which stops it and leaves nothing behind.
func (s *suite) testAttach(t *testing.T) {
	if !s.opts.InProcess {
		requireProcfs(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := s.newBackend(t)
	bx := s.start(t, old)
	bx.waitHealthy()
	tags := s.spawnEscapees(bx, "attach")
	count := bx.echo().Count

	fresh := s.newBackend(t)
	if _, err := fresh.Attach(ctx, sandbox.Name("sandboxtest-runtime", "no-such-session")); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Attach of an unknown ID: %v, want ErrNotFound", err)
	}
	h, err := fresh.Attach(ctx, bx.h.ID())
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	ab := &box{t: t, h: h, spec: bx.spec, token: bx.token, hc: HTTPClient(h)}
	defer ab.hc.CloseIdleConnections()
	if h.ID() != bx.h.ID() || h.Addr() != bx.h.Addr() {
		t.Errorf("attached handle has ID %q and Addr %q, want %q and %q", h.ID(), h.Addr(), bx.h.ID(), bx.h.Addr())
	}
	// The same agent process answers: its invocation counter goes on.
	if r := ab.echo(); r.Count != count+1 {
		t.Errorf("invocation through the attached handle reports count %d, want %d", r.Count, count+1)
	}
	if _, err := fresh.Attach(ctx, h.ID()); err == nil {
		t.Error("a second Attach of one sandbox succeeded")
	}
	// Reap spares what this instance holds.
	if err := fresh.Reap(ctx); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if r := ab.echo(); r.Count != count+2 {
		t.Errorf("after Reap: count %d, want %d", r.Count, count+2)
	}
	select {
	case <-h.Done():
		t.Fatalf("Done closed while the agent runs (%v)", h.Exit())
	default:
	}

	if err := ab.stop(5 * time.Second); err != nil {
		t.Fatalf("Stop through the attached handle: %v", err)
	}
	select {
	case <-h.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	if ex := h.Exit(); !ex.Unknown && (ex.Code != 0 || ex.Signal != "") {
		t.Errorf("Exit() = %+v, want code 0 (the agent exits on SIGTERM) or unknown", ex)
	}
	s.noProcs(t, "after Stop through the attached handle", bx.token)
	s.noTagged(t, "after Stop through the attached handle", tags...)
	if left := leftovers(Root(t), bx.spec.Name); len(left) > 0 {
		t.Errorf("Stop through the attached handle left %v", left)
	}
	if _, err := fresh.Attach(ctx, h.ID()); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Attach after Stop: %v, want ErrNotFound", err)
	}
	// The first handle learns its sandbox is gone.
	bx.waitDone(10 * time.Second)
}
