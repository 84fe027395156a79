package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
)

// TestExec runs the berth binary's exec against a real berth: output on
// the right streams, the command's exit code as berth's.
func TestExec(t *testing.T) {
	d := startBerth(t)
	sid := client.NewSessionID()
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], append([]string{"exec"}, args...)...)
		cmd.Env = append(os.Environ(), "BERTH_TEST_RUN_MAIN=1", "BERTH_ENDPOINT="+d.URL())
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return out.String(), errOut.String(), ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return out.String(), errOut.String(), 0
	}

	out, errOut, code := run("echo", "--session", sid, "--", "echo out; echo err >&2; exit 7")
	if out != "out\n" || errOut != "err\n" || code != 7 {
		t.Fatalf("stdout %q, stderr %q, exit %d", out, errOut, code)
	}
	// Several words reach the command as they were, quotes and all.
	out, _, code = run("--runtime", "echo", "--session-id", sid, "--", "printf", "%s|", "it's", "a b", "$HOME")
	if out != "it's|a b|$HOME|" || code != 0 {
		t.Fatalf("stdout %q, exit %d", out, code)
	}
	out, errOut, code = run("echo", "--session", sid, "--timeout", "1", "--", "echo before; sleep 30")
	if out != "before\n" || !strings.Contains(errOut, "timed out") || code != api.ExitCodeTimedOut {
		t.Fatalf("timed out: stdout %q, stderr %q, exit %d", out, errOut, code)
	}
	// A new session's ID is printed, to continue it.
	_, errOut, code = run("echo", "--", "true")
	if !strings.HasPrefix(errOut, "session: ") || code != 0 {
		t.Fatalf("stderr %q, exit %d", errOut, code)
	}
	_, errOut, code = run("nope", "--session", sid, "--", "true")
	if !strings.Contains(errOut, "ResourceNotFoundException") || code != 1 {
		t.Fatalf("unknown runtime: stderr %q, exit %d", errOut, code)
	}
	_, errOut, code = run("echo", "true")
	if !strings.Contains(errOut, "after --") || code != 1 {
		t.Fatalf("no --: stderr %q, exit %d", errOut, code)
	}
}
