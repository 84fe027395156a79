package daemon_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/config"
)

// TestSessionLogCapped has an agent print 30 times its log's cap to its
// stdout. The log keeps only the newest output, in log_files files of at
// most log_max_bytes each; the session API reads it back across the
// rotation, whole lines in order.
func TestSessionLogCapped(t *testing.T) {
	const maxBytes, files = 64 << 10, 2
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend), func(c *config.Config) {
			c.LogMaxBytes, c.LogFiles = maxBytes, files
			c.StartTimeout = config.Duration(30 * time.Second) // not what this tests
		})
		ctx := context.Background()
		sid := newSessionID()
		line := func(chunk, i int) string {
			return fmt.Sprintf("chunk %03d line %03d %s\n", chunk, i, strings.Repeat("x", 980))
		}
		const chunks, lines = 20, 100 // 2 MB
		for c := range chunks {
			var b strings.Builder
			for i := range lines {
				b.WriteString(line(c, i))
			}
			// The agent reopens its own stdout, the pipe berth reads.
			out, err := e.invoke(ctx, "echo", sid, map[string]any{"op": "write", "path": "/proc/self/fd/1", "data": b.String()})
			if err != nil {
				t.Fatalf("chunk %d: %v", c, err)
			}
			out.Response.Close()
		}
		bc := &client.Client{Endpoint: e.d.URL()}
		list, err := bc.ListSessions(ctx, client.SessionFilter{State: "live"})
		if err != nil || len(list.Sessions) != 1 {
			t.Fatalf("live sessions: %v %+v", err, list)
		}
		rec := list.Sessions[0]
		last := line(chunks-1, lines-1)

		// The output reaches the log through the pipe a moment later.
		var text string
		waitFor(t, "the agent's last line in the session log", func() bool {
			rc, err := bc.SessionLogs(ctx, rec.ID, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			text = string(data)
			return strings.HasSuffix(text, last)
		})
		if len(text) > maxBytes*files || len(text) <= maxBytes {
			t.Fatalf("log holds %d bytes; want more than one file's %d and at most %d", len(text), maxBytes, maxBytes*files)
		}
		// Whole lines, in order, with no gap at the rotation.
		got := strings.SplitAfter(text, "\n")
		got = got[:len(got)-1]
		var c0, i0 int
		if _, err := fmt.Sscanf(got[0], "chunk %d line %d", &c0, &i0); err != nil {
			t.Fatalf("first line %q: %v", got[0][:40], err)
		}
		for k, l := range got {
			n := c0*lines + i0 + k
			if want := line(n/lines, n%lines); l != want {
				t.Fatalf("line %d is %q, want %q", k, l[:min(40, len(l))], want[:40])
			}
		}

		dir := filepath.Join(e.d.DataDir(), "logs", rec.RuntimeID)
		names, _ := filepath.Glob(filepath.Join(dir, rec.ID+".log*"))
		if len(names) != files {
			t.Fatalf("log files %v, want %d", names, files)
		}
		for _, n := range names {
			if fi, err := os.Stat(n); err != nil || fi.Size() > maxBytes {
				t.Errorf("%s: %v bytes (cap %d), %v", n, fi.Size(), maxBytes, err)
			}
		}
		// A tail longer than the current file reaches into the rotated one.
		cur, err := os.ReadFile(filepath.Join(dir, rec.ID+".log"))
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(cur), "\n") + 2
		rc, err := bc.SessionLogs(ctx, rec.ID, n, false)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if want := strings.Join(got[len(got)-n:], ""); string(data) != want {
			t.Fatalf("tail %d: %d bytes, want the last %d lines (%d bytes)", n, len(data), n, len(want))
		}
	})
}

// waitFor polls cond until it holds, failing after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
