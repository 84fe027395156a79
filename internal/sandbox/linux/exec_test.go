//go:build linux

package linux_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// execIn runs script with bash -c in h and returns its stdout and status.
func execIn(t *testing.T, h sandbox.Handle, script string) (string, sandbox.ExecStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb strings.Builder
	st, err := h.Exec(ctx, sandbox.ExecSpec{Argv: []string{"bash", "-c", script}, Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %q: %v (stderr %q)", script, err, errb.String())
	}
	return out.String(), st
}

// TestExecAsAgent: a command runs with exactly the agent's confinement:
// root of the sandbox without capabilities, the seccomp filter and
// no_new_privs, its hostname and network namespace, its read-only host
// root, and its memory limit (which kills the command, not the agent).
func TestExecAsAgent(t *testing.T) {
	b := newBackend(t)
	s := spec(t, func(s *sandbox.Spec) { s.Limits = sandbox.Limits{MemoryBytes: 48 << 20, Pids: 256} })
	h := start(t, b, s)
	agentStatus := mustTry(t, h, tryReq{Op: "read", Arg: "/proc/self/status"}).Out
	field := func(status, name string) string {
		for line := range strings.SplitSeq(status, "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "(missing)"
	}
	out, _ := execIn(t, h, "cat /proc/self/status")
	for _, f := range []string{"Uid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"} {
		if got, want := field(out, f), field(agentStatus, f); got != want {
			t.Errorf("%s: command has %q, agent %q", f, got, want)
		}
	}
	if field(out, "Uid") != "0\t0\t0\t0" || field(out, "CapEff") != "0000000000000000" {
		t.Errorf("command runs as uid %q with CapEff %q; want the sandbox's root without capabilities", field(out, "Uid"), field(out, "CapEff"))
	}
	if out, _ := execIn(t, h, "hostname; ls /sys/class/net"); out != s.Name+"\nlo\n" {
		t.Errorf("hostname and interfaces: %q; want the sandbox's name and loopback only", out)
	}
	if _, st := execIn(t, h, "touch /usr/berth-exec-test"); st.Code == 0 {
		t.Error("the command wrote to the read-only host root")
	}
	// dd reads into one 100 MB buffer, past the 48 MB limit.
	_, st := execIn(t, h, "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null")
	if st.Code == 0 {
		t.Errorf("a command past the sandbox's memory limit exited %+v", st)
	}
	select {
	case <-h.Done():
		t.Fatalf("the agent died with the command (%v)", h.Exit())
	default:
	}
	mustTry(t, h, tryReq{Op: "hostname"})
}

// TestExecUserNamespace: commands run in a user-namespace sandbox as its
// mapped root.
func TestExecUserNamespace(t *testing.T) {
	root, err := os.MkdirTemp("", "berth-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, func(c *linux.Config) {
		c.UserNamespace = true
		c.RootDir = filepath.Join(root, "sandboxes")
	})
	h := start(t, b, spec(t))
	want := mustTry(t, h, tryReq{Op: "read", Arg: "/proc/self/uid_map"}).Out
	if out, st := execIn(t, h, "cat /proc/self/uid_map; id -u"); out != want+"0\n" || st.Code != 0 {
		t.Errorf("command printed %q (%+v); want the agent's uid map %q and uid 0", out, st, want)
	}
}
