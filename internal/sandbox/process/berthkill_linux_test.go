package process_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/process"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/testenv"
)

// Environment of the helper process TestReapAfterBerthKilled runs as a
// stand-in berth.
const (
	envFakeBerth = "PROCESS_TEST_FAKE_BERTH_ROOT"
	envFakeAgent = "PROCESS_TEST_FAKE_BERTH_AGENT"
	envFakeToken = "PROCESS_TEST_FAKE_BERTH_TOKEN"
)

func TestMain(m *testing.M) {
	if root := os.Getenv(envFakeBerth); root != "" {
		os.Exit(fakeBerth(root))
	}
	os.Exit(m.Run())
}

var fakeBerthName = sandbox.Name("rt", "fake-berth")

// fakeBerth starts one sandbox whose agent has spawned a grandchild, says
// "ready" on stdout, and waits to be SIGKILLed.
func fakeBerth(root string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := process.New(root, nil)
	h, err := b.Start(ctx, sandbox.Spec{
		Name:    fakeBerthName,
		Command: []string{os.Getenv(envFakeAgent)},
		Env:     []string{"SANDBOXTEST_TOKEN=" + os.Getenv(envFakeToken)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := sandboxtest.WaitHealthy(ctx, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp, err := sandboxtest.HTTPClient(h).Post("http://"+h.Addr()+"/invocations", "application/json",
		strings.NewReader(`{"op":"spawn","tag":"fakeberth","ignore_term":true}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = resp.Body.Close()
	fmt.Println("ready")
	for {
		time.Sleep(time.Hour)
	}
}

// TestReapAfterBerthKilled kills a real berth process with SIGKILL: the
// kernel takes the agent down (Pdeathsig), its grandchild outlives both,
// and Reap in a new backend finds and kills it from the record. The dead
// leader is either left a zombie (an init that does not reap, as in some
// containers) or reaped (here by this test acting as subreaper), which
// makes Reap identify the grandchild by its environment.
func TestReapAfterBerthKilled(t *testing.T) {
	t.Run("LeaderZombie", func(t *testing.T) { testReapAfterBerthKilled(t, false) })
	t.Run("LeaderReaped", func(t *testing.T) { testReapAfterBerthKilled(t, true) })
}

func testReapAfterBerthKilled(t *testing.T, reapLeader bool) {
	if reapLeader {
		// Orphans of the fake berth become this process's children.
		err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
		testenv.Require(t, testenv.Linux, err)
		defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	}
	root := sandboxtest.Root(t)
	token := strconv.FormatInt(time.Now().UnixNano(), 36)
	marker := "SANDBOXTEST_TOKEN=" + token
	berth := exec.Command(os.Args[0], "-test.run=^$")
	berth.Env = append(os.Environ(), envFakeBerth+"="+root, envFakeAgent+"="+sandboxtest.BuildAgent(t), envFakeToken+"="+token)
	berth.Stderr = os.Stderr
	out, err := berth.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := berth.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = berth.Process.Kill()
		_ = berth.Wait()
		for _, pid := range procsWith(t, marker) { // never leave the agent behind
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("fake berth said %q (%v)", line, err)
	}
	data, err := os.ReadFile(filepath.Join(root, fakeBerthName, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct{ PID int }
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if pids := procsWith(t, marker); len(pids) != 2 {
		t.Fatalf("before the kill: %v carry the token, want the agent and its grandchild", pids)
	}

	_ = berth.Process.Kill()
	_ = berth.Wait()
	if !settle(5*time.Second, func() bool { return !alive(rec.PID) }) {
		t.Fatalf("agent %d outlived its berth: Pdeathsig missing", rec.PID)
	}
	survivors := procsWith(t, marker)
	if len(survivors) != 1 {
		t.Fatalf("after berth died: %v carry the token, want just the grandchild", survivors)
	}
	if reapLeader {
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(rec.PID, &ws, 0, nil); err != nil {
			t.Fatalf("reap the orphaned agent: %v", err)
		}
		defer settle(5*time.Second, func() bool { // the grandchild is ours too once killed
			pid, _ := syscall.Wait4(survivors[0], &ws, syscall.WNOHANG, nil)
			return pid != 0
		})
	}

	if err := process.New(root, testLogger(t)).Reap(context.Background()); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if pids := procsWith(t, marker); len(pids) > 0 {
		t.Errorf("after Reap: %v survive", pids)
	}
	if _, err := os.Stat(filepath.Join(root, fakeBerthName)); !os.IsNotExist(err) {
		t.Errorf("Reap kept the sandbox dir (%v)", err)
	}
}
