package sandboxfake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Exec implements sandbox.Handle with a tiny scripted shell: it runs
// "bash -c SCRIPT" (or sh), where SCRIPT is statements joined by ";":
//
//	echo WORDS       WORDS ($VARS expanded from the agent's environment) and
//	                 a newline to stdout, or to stderr with a trailing >&2
//	sleep SECONDS    wait that long, on the clock of the caller's bubble
//	exit N           end with code N
//	pwd              the agent's working directory
//
// Anything else writes an error to stderr and ends with 127, as a shell
// does for an unknown command. A command stopped by ctx reports death by
// SIGKILL; the agent's exit ends its commands.
func (h *Handle) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.ExecStatus, error) {
	fail := func(err error) (sandbox.ExecStatus, error) {
		return sandbox.ExecStatus{}, fmt.Errorf("exec in sandbox %s: %w", h.spec.Name, err)
	}
	argv := spec.Argv
	if len(argv) == 0 || argv[0] == "" {
		return fail(errors.New("empty command"))
	}
	select {
	case <-h.exited:
		return fail(errors.New("the agent has exited"))
	default:
	}
	if len(argv) != 3 || !slices.Contains([]string{"bash", "sh", "/bin/bash", "/bin/sh"}, argv[0]) || argv[1] != "-c" {
		return fail(fmt.Errorf("sandboxfake runs only bash -c SCRIPT, not %q", argv))
	}
	h.mu.Lock()
	h.commands = append(h.commands, argv[2])
	h.running++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.running--
		h.mu.Unlock()
	}()
	if spec.Started != nil {
		spec.Started()
	}
	out, errw := orDiscard(spec.Stdout), orDiscard(spec.Stderr)
	for stmt := range strings.SplitSeq(argv[2], ";") {
		f := strings.Fields(stmt)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "echo":
			w, words := out, f[1:]
			if n := len(words); n > 0 && words[n-1] == ">&2" {
				w, words = errw, words[:n-1]
			}
			line := os.Expand(strings.Join(words, " "), func(k string) string { return h.env[k] })
			_, _ = io.WriteString(w, line+"\n")
		case "pwd":
			_, _ = io.WriteString(out, h.cwd()+"\n")
		case "exit":
			code := 0
			if len(f) > 1 {
				code, _ = strconv.Atoi(f[1])
			}
			return sandbox.ExecStatus{Code: code}, nil
		case "sleep":
			secs := 0.0
			if len(f) > 1 {
				secs, _ = strconv.ParseFloat(f[1], 64)
			}
			t := time.NewTimer(time.Duration(secs * float64(time.Second)))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return sandbox.ExecStatus{Code: 137, Signal: "SIGKILL"},
					fmt.Errorf("exec in sandbox %s: command stopped: %w", h.spec.Name, context.Cause(ctx))
			case <-h.exited:
				t.Stop()
				return sandbox.ExecStatus{Code: -1}, fmt.Errorf("exec in sandbox %s: the sandbox ended during the command", h.spec.Name)
			}
		default:
			_, _ = fmt.Fprintf(errw, "sandboxfake: %s: command not found\n", f[0])
			return sandbox.ExecStatus{Code: 127}, nil
		}
	}
	return sandbox.ExecStatus{}, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Commands lists the scripts Exec was given, in order.
func (h *Handle) Commands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.commands)
}

// Running counts the commands running now.
func (h *Handle) Running() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running
}
