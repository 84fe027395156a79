package sandboxtest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testenv"
)

// The suite finds a sandbox's processes from the host by a token in their
// environment (every process of the tree inherits it), not by PID: a backend
// with its own PID namespace reports PIDs the host cannot use.

// liveProcs returns the PIDs of live (not zombie) processes whose file
// under /proc (environ or cmdline) has a NUL-separated entry equal to want.
func liveProcs(file, want string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), file))
		if err != nil || !hasEntry(data, want) {
			continue
		}
		if zombie(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func hasEntry(data []byte, want string) bool {
	for entry := range bytes.SplitSeq(data, []byte{0}) {
		if string(entry) == want {
			return true
		}
	}
	return false
}

// zombie reports whether pid is dead but not yet reaped (or gone).
func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return true
	}
	st := data[i+2]
	return st == 'Z' || st == 'X'
}

// ProcsWithEnv returns the PIDs of live (not zombie) processes whose
// initial environment holds entry ("KEY=value"). It needs procfs.
func ProcsWithEnv(entry string) ([]int, error) {
	return liveProcs("environ", entry)
}

func tokenProcs(t *testing.T, token string) []int {
	t.Helper()
	pids, err := ProcsWithEnv("SANDBOXTEST_TOKEN=" + token)
	if err != nil {
		t.Fatalf("scan processes: %v", err)
	}
	return pids
}

// requireProcfs states that t checks process trees in /proc.
func requireProcfs(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/proc/self/environ")
	testenv.Require(t, testenv.Linux, err)
}

// requireNoProcs fails t if any live process carries one of the tokens.
func requireNoProcs(t *testing.T, what string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if pids := tokenProcs(t, tok); len(pids) > 0 {
			t.Errorf("%s: processes of sandbox with token %s survive: %v (%s)", what, tok, pids, describe(pids))
		}
	}
}

func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		parts = append(parts, fmt.Sprintf("%d=%q", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return strings.Join(parts, ", ")
}

// leftovers lists paths under root whose base name is one of names.
func leftovers(root string, names ...string) []string {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var found []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts and a missing root hold nothing we can see
		}
		if want[d.Name()] && path != root {
			found = append(found, path)
		}
		return nil
	})
	return found
}

// settle retries cond until it holds or timeout passes.
func settle(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireTagged waits until exactly one live process carries each tag in
// its command line (the spawn op's sleepers), and fails t otherwise.
func requireTagged(t *testing.T, tags ...string) {
	t.Helper()
	for _, tag := range tags {
		var pids []int
		ok := settle(5*time.Second, func() bool {
			var err error
			pids, err = liveProcs("cmdline", tag)
			return err == nil && len(pids) == 1
		})
		if !ok {
			t.Fatalf("sleeper tagged %s: found pids %v, want one", tag, pids)
		}
	}
}

// requireNoTagged fails t if any live process carries one of the tags in
// its command line.
func requireNoTagged(t *testing.T, what string, tags ...string) {
	t.Helper()
	for _, tag := range tags {
		pids, err := liveProcs("cmdline", tag)
		if err != nil {
			t.Fatalf("scan processes: %v", err)
		}
		if len(pids) > 0 {
			t.Errorf("%s: sleeper tagged %s survives: %v (%s)", what, tag, pids, describe(pids))
		}
	}
}
