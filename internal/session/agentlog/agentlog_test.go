package agentlog_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/session/agentlog"
)

// TestMain lets the test binary be the agent: with AGENTLOG_LINES=n it
// prints n numbered lines, alternating stdout and stderr, then with
// AGENTLOG_HOLD it keeps its output open until its stdin closes.
func TestMain(m *testing.M) {
	if v := os.Getenv("AGENTLOG_LINES"); v != "" {
		from, _ := strconv.Atoi(os.Getenv("AGENTLOG_FROM"))
		n, _ := strconv.Atoi(v)
		out, errOut := bufio.NewWriter(os.Stdout), bufio.NewWriter(os.Stderr)
		for i := from; i < from+n; i++ {
			w := out
			if i%2 == 1 {
				w = errOut
			}
			fmt.Fprintf(w, "line %08d %s\n", i, strings.Repeat("x", 40))
			w.Flush() // one line per write, as an unbuffered agent writes
		}
		if os.Getenv("AGENTLOG_HOLD") != "" {
			io.Copy(io.Discard, os.Stdin)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const lineLen = len("line 00000000 ") + 40 + 1

func newPump(t *testing.T, lim agentlog.Limits) *agentlog.Pump {
	t.Helper()
	p, err := agentlog.NewPump(lim, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// agent runs the test binary printing n lines from from into c.
func agent(t *testing.T, c *agentlog.Capture, from, n int, hold bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "AGENTLOG_LINES="+strconv.Itoa(n), "AGENTLOG_FROM="+strconv.Itoa(from))
	if hold {
		cmd.Env = append(cmd.Env, "AGENTLOG_HOLD=1")
		if _, err := cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Stdout, cmd.Stderr = c.Writer(), c.Writer()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.Started()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func waitDone(t *testing.T, c *agentlog.Capture) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("capture not done 20s after its agent exited")
	}
}

// numbers parses the log's lines and checks they run without a gap.
func numbers(t *testing.T, text string) (first, last int) {
	t.Helper()
	first, last = -1, -1
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		var n int
		var pad string
		if _, err := fmt.Sscanf(line, "line %d %s", &n, &pad); err != nil || len(line) != lineLen-1 {
			t.Fatalf("torn line %q", line)
		}
		if last >= 0 && n != last+1 {
			t.Fatalf("line %d follows line %d", n, last)
		}
		if first < 0 {
			first = n
		}
		last = n
	}
	return first, last
}

func readAll(t *testing.T, path string, files int) string {
	t.Helper()
	r, err := agentlog.Open(path, files)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b bytes.Buffer
	if err := r.Copy(context.Background(), nil, &b, func() {}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCapCapsAndRotates has an agent print 20 times the cap: the log keeps
// the newest lines, whole, in at most Files files of at most MaxBytes.
func TestCapCapsAndRotates(t *testing.T) {
	lim := agentlog.Limits{MaxBytes: 64 << 10, Files: 2}
	p := newPump(t, lim)
	path := filepath.Join(t.TempDir(), "logs", "s.log")
	c, err := p.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int(20 * lim.MaxBytes / int64(lineLen))
	agent(t, c, 0, n, false)
	waitDone(t, c)

	var total int64
	for i, name := range []string{path, path + ".1"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		// A rotated file is full to the last whole line.
		if fi.Size() > lim.MaxBytes || i > 0 && fi.Size() <= lim.MaxBytes-int64(lineLen) {
			t.Errorf("%s holds %d bytes; the cap is %d", name, fi.Size(), lim.MaxBytes)
		}
		total += fi.Size()
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Errorf("a third file: %v", err)
	}
	first, last := numbers(t, readAll(t, path, lim.Files))
	if last != n-1 {
		t.Errorf("the log ends at line %d, want the agent's last, %d", last, n-1)
	}
	if kept := int64(last-first+1) * int64(lineLen); kept != total {
		t.Errorf("lines %d-%d (%d bytes) read from %d bytes of files", first, last, kept, total)
	}
}

// TestTailAcrossRotation reads the last lines when the current file holds
// fewer than asked.
func TestTailAcrossRotation(t *testing.T) {
	lim := agentlog.Limits{MaxBytes: int64(10 * lineLen), Files: 3}
	p := newPump(t, lim)
	path := filepath.Join(t.TempDir(), "s.log")
	c, err := p.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	agent(t, c, 0, 23, false) // files of 10, 10 and 3 lines
	waitDone(t, c)
	for _, n := range []int{2, 3, 5, 13, 15, 40} {
		r, err := agentlog.Open(path, lim.Files)
		if err != nil {
			t.Fatal(err)
		}
		r.SeekTail(n)
		lines := r.Lines(n)
		r.Close()
		want := min(n, 23)
		if len(lines) != want {
			t.Fatalf("tail %d: %d lines: %q", n, len(lines), lines)
		}
		first, last := numbers(t, strings.Join(lines, "\n")+"\n")
		if last != 22 || first != 23-want {
			t.Errorf("tail %d: lines %d-%d", n, first, last)
		}
	}
}

// TestFollowAcrossRotation follows a log through several rotations: every
// line arrives once, in order.
func TestFollowAcrossRotation(t *testing.T) {
	lim := agentlog.Limits{MaxBytes: int64(10 * lineLen), Files: 2}
	p := newPump(t, lim)
	path := filepath.Join(t.TempDir(), "s.log")
	c, err := p.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// The test writes the output itself, paced so that each step rotates
	// the log at most once.
	c2 := &pacer{w: c.Writer()}

	r, err := agentlog.Open(path, lim.Files)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ended := make(chan struct{})
	got := &syncBuffer{}
	copied := make(chan error, 1)
	go func() { copied <- r.Copy(context.Background(), ended, got, func() {}) }()

	line := 0
	for step := range 6 {
		for range 7 { // 7 lines: a rotation every other step
			c2.line(t, line)
			line++
		}
		want := fmt.Sprintf("line %08d ", line-1)
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(got.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("step %d: follower lacks %q; has:\n%s", step, want, got.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c.Started()
	waitDone(t, c)
	close(ended)
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if first, last := numbers(t, got.String()); first != 0 || last != line-1 {
		t.Fatalf("followed lines %d-%d, want 0-%d", first, last, line-1)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("the log never rotated: %v", err)
	}
}

// pacer writes numbered lines into a capture's pipe.
type pacer struct{ w *os.File }

func (p *pacer) line(t *testing.T, n int) {
	if _, err := fmt.Fprintf(p.w, "line %08d %s\n", n, strings.Repeat("x", 40)); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRenameMovesRotatedFiles moves a rotated log while capturing goes on.
func TestRenameMovesRotatedFiles(t *testing.T) {
	lim := agentlog.Limits{MaxBytes: int64(10 * lineLen), Files: 2}
	p := newPump(t, lim)
	dir := t.TempDir()
	c, err := p.Open(filepath.Join(dir, "pool-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	w := &pacer{w: c.Writer()}
	for i := range 15 {
		w.line(t, i)
	}
	// Rename once the capture wrote all 15: the test's own writes are in
	// the pipe, so wait for the files to hold them.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readAll(t, filepath.Join(dir, "pool-1.log"), 2), "line 00000014") {
		if time.Now().After(deadline) {
			t.Fatal("capture did not write the first lines")
		}
		time.Sleep(5 * time.Millisecond)
	}
	dst := filepath.Join(dir, "session.log")
	if err := c.Rename(dst); err != nil {
		t.Fatal(err)
	}
	for i := 15; i < 18; i++ {
		w.line(t, i)
	}
	c.Started()
	waitDone(t, c)
	if first, last := numbers(t, readAll(t, dst, 2)); first != 0 || last != 17 {
		t.Fatalf("renamed log holds lines %d-%d, want 0-17", first, last)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "pool-1.log*")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestCloseWhileAgentHoldsOutput: an agent that keeps its output open
// does not keep the capture open past Close.
func TestCloseWhileAgentHoldsOutput(t *testing.T) {
	p := newPump(t, agentlog.Limits{})
	c, err := p.Open(filepath.Join(t.TempDir(), "s.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent(t, c, 0, 3, true)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return while the agent held its output")
	}
	// The pump goes on with other captures.
	c2, err := p.Open(filepath.Join(t.TempDir(), "s2.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent(t, c2, 0, 5, false)
	waitDone(t, c2)
}

// TestPumpCloseEndsCaptures: closing the pump finishes its captures.
func TestPumpCloseEndsCaptures(t *testing.T) {
	p, err := agentlog.NewPump(agentlog.Limits{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Open(filepath.Join(t.TempDir(), "s.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent(t, c, 0, 1, true)
	p.Close()
	waitDone(t, c)
	if _, err := p.Open(filepath.Join(t.TempDir(), "late.log")); err == nil {
		t.Fatal("a closed pump opened a capture")
	}
}

func TestIsLog(t *testing.T) {
	for name, want := range map[string]bool{"a.log": true, "a.log.1": true, "a.log.12": true, "a.logx": false, "a.log.x": false, "a.txt.1": false, "log": false} {
		if got := agentlog.IsLog(name, ".log"); got != want {
			t.Errorf("IsLog(%q) = %v", name, got)
		}
	}
}

// BenchmarkIdleCapture reports what a live, quiet capture holds in berth's
// heap and stacks: the cost the log pump adds to an idle session.
func BenchmarkIdleCapture(b *testing.B) {
	const n = 1000
	dir := b.TempDir()
	for b.Loop() {
		p, err := agentlog.NewPump(agentlog.Limits{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		before := inUse()
		caps := make([]*agentlog.Capture, n)
		agents := make([]int, n) // the agents' copies of the write ends
		for i := range caps {
			c, err := p.Open(filepath.Join(dir, strconv.Itoa(i)+".log"))
			if err != nil {
				b.Fatal(err)
			}
			if agents[i], err = syscall.Dup(int(c.Writer().Fd())); err != nil {
				b.Fatal(err)
			}
			c.Started()
			caps[i] = c
		}
		b.ReportMetric(float64(int64(inUse())-int64(before))/n, "B/capture")
		for i, c := range caps {
			syscall.Close(agents[i])
			<-c.Done()
		}
		p.Close()
	}
}

func inUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// TestNote: berth's own lines land in the log beside the agent's output,
// and a note after the log closed is dropped quietly.
func TestNote(t *testing.T) {
	p := newPump(t, agentlog.Limits{})
	path := filepath.Join(t.TempDir(), "s.log")
	c, err := p.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Note("berth: command: ls")
	agent(t, c, 0, 3, false).Wait()
	waitDone(t, c)
	c.Note("berth: too late")
	text := readAll(t, path, 1)
	if !strings.HasPrefix(text, "berth: command: ls\n") || strings.Contains(text, "too late") {
		t.Fatalf("log %q", text)
	}
	if first, last := numbers(t, strings.TrimPrefix(text, "berth: command: ls\n")); first != 0 || last != 2 {
		t.Fatalf("agent lines %d..%d", first, last)
	}
}
