package store

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

// The crash test re-executes this test binary as a writer; these variables
// tell the child what to do.
const (
	crashChildEnv = "BERTH_STORE_CRASH_CHILD" // database path
	crashSeedEnv  = "BERTH_STORE_CRASH_SEED"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		if err := crashWriter(path, seed); err != nil {
			fmt.Fprintln(os.Stderr, "crash writer:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashOwner is the writer's node identity, the same in every run, as it
// would be for a berth restarted on one machine.
const crashOwner = "node"

// crashKeys and crashRuntimes are few, so incarnations and versions pile up.
var crashKeys = func() []session.Key {
	var ks []session.Key
	for i := range 6 {
		ks = append(ks, session.Key{RuntimeID: "crash0-0000000000", Endpoint: "DEFAULT",
			SessionID: fmt.Sprintf("%040d", i)})
	}
	return ks
}()

const crashRuntimes = 3

// crashWriter hammers the store with writes until it is killed. After each
// commit it prints an acknowledgement line, written with one write(2), so
// the parent knows which writes must have survived.
func crashWriter(path string, seed uint64) error {
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		return err
	}
	ack := func(format string, args ...any) {
		os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	// Recover as berth does at start: whatever the last run left live is over.
	ended, err := db.EndAllLive(ctx, crashOwner, session.EndShutdown, time.Now())
	if err != nil {
		return err
	}
	for _, r := range ended {
		ack("end %s", r.ID)
	}
	ack("ready")

	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	held := map[session.Key]session.Record{}
	for i := 0; ; i++ {
		switch op := rng.IntN(10); {
		case op < 3:
			k := crashKeys[rng.IntN(len(crashKeys))]
			r, err := db.ClaimSession(ctx, session.Record{Key: k, Lease: session.Lease{Owner: crashOwner}, Version: 1})
			if errors.Is(err, session.ErrLive) {
				continue
			}
			if err != nil {
				return err
			}
			held[k] = r
			ack("claim %s %d", r.ID, r.Epoch)
		case op < 5:
			for _, r := range held {
				var n int64
				err := db.UpdateSession(ctx, r.ID, r.Lease, func(r *session.Record) {
					r.State, r.Invocations, r.LastActiveAt = session.StateActive, r.Invocations+1, time.Now()
					n = r.Invocations
				})
				if err != nil {
					return err
				}
				ack("upd %s %d", r.ID, n)
				break
			}
		case op < 7:
			for k, r := range held {
				if err := db.EndSession(ctx, r.ID, r.Lease, session.EndStopped, "", time.Now()); err != nil {
					return err
				}
				delete(held, k)
				ack("end %s", r.ID)
				break
			}
		case op < 9:
			name := fmt.Sprintf("crash%d", rng.IntN(crashRuntimes))
			rt, err := db.GetRuntimeByName(ctx, name)
			if errors.Is(err, errdefs.ErrNotFound) {
				rt = registry.Runtime{ID: name + "-0000000000", Name: name, Status: api.StatusReady,
					CreatedAt: time.Now(), UpdatedAt: time.Now()}
				err = db.CreateRuntime(ctx, rt, registry.Version{Settings: crashConfig(1)}, 0)
				rt.LatestVersion = 1
			} else if err == nil {
				rt.LatestVersion++
				rt.UpdatedAt = time.Now()
				err = db.UpdateRuntime(ctx, rt, registry.Version{Version: rt.LatestVersion, Settings: crashConfig(rt.LatestVersion)}, 0)
			}
			if err != nil {
				return err
			}
			ack("rt %s %d", rt.ID, rt.LatestVersion)
		default:
			// A short-lived runtime with a pinned endpoint, deleted again:
			// the cascade must never leave orphans.
			rt := registry.Runtime{ID: fmt.Sprintf("tmp%d-%d", seed, i), Name: fmt.Sprintf("tmp%d_%d", seed, i)}
			if err := db.CreateRuntime(ctx, rt, registry.Version{Settings: crashConfig(1)}, 0); err != nil {
				return err
			}
			err := db.PutEndpoint(ctx, registry.Endpoint{RuntimeID: rt.ID, Name: "pinned", LiveVersion: 1, TargetVersion: 1})
			if err != nil {
				return err
			}
			if err := db.DeleteRuntime(ctx, rt.ID); err != nil {
				return err
			}
			ack("del %s", rt.ID)
		}
	}
}

func crashConfig(v int) registry.Settings {
	return registry.Settings{
		Command: []string{"./agent", strconv.Itoa(v)},
		Env:     map[string]string{"PAD": strings.Repeat("x", 200*v%4096)},
	}
}

// TestCrash kills a writer with SIGKILL mid-write, over and over, and checks
// after each kill that the file is sound, the invariants hold and every
// acknowledged write survived.
func TestCrash(t *testing.T) {
	iterations := 300
	switch {
	case testing.Short():
		iterations = 30
	case raceEnabled:
		// Same coverage of crash points per kill, a third of the kills.
		iterations = 100
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Now()
	var acks int
	for i := range iterations {
		// Kill after a few commits plus a little, so the kill lands at
		// varying points of a transaction; sometimes right after recovery.
		after := rng.IntN(20)
		delay := time.Duration(rng.IntN(3000)) * time.Microsecond
		lines := crashOnce(t, path, seed+uint64(i), after, delay)
		acks += len(lines)
		checkCrashed(t, path, lines)
	}
	t.Logf("%d kills in %v, %d acknowledged writes checked",
		iterations, time.Since(start).Round(time.Millisecond), acks)
}

// crashOnce runs one writer, lets it acknowledge after writes past its
// start, kills it delay later and returns every acknowledgement it printed.
func crashOnce(t *testing.T, path string, seed uint64, after int, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A writer that stalls is killed too, and the test fails below.
	watchdog := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()

	r := bufio.NewReader(out)
	var lines []string
	for wrote := -1; wrote < after; {
		line, err := r.ReadString('\n')
		if err != nil {
			cmd.Wait()
			t.Fatalf("writer %d stopped early: %v\n%s", seed, err, stderr.String())
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "ready":
			wrote = 0
		default:
			lines = append(lines, line)
			if wrote >= 0 {
				wrote++
			}
		}
	}
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill writer %d: %v", seed, err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read writer %d: %v", seed, err)
	}
	// A last line without its newline was cut off mid-write: not an ack.
	full := strings.Split(string(rest), "\n")
	lines = append(lines, full[:len(full)-1]...)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer %d ended with %v, not by SIGKILL\n%s", seed, err, stderr.String())
	}
	return lines
}

// checkCrashed opens the database a writer was killed on and checks it.
func checkCrashed(t *testing.T, path string, acks []string) {
	t.Helper()
	ctx := t.Context()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer db.Close()

	rows := func(query string) []string {
		t.Helper()
		rs, err := db.r.QueryContext(ctx, query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rs.Close()
		cols, _ := rs.Columns()
		var out []string
		for rs.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			var parts []string
			for _, v := range vals {
				parts = append(parts, v.String)
			}
			out = append(out, strings.Join(parts, " "))
		}
		if err := rs.Err(); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return out
	}
	if got := rows(`PRAGMA integrity_check`); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("integrity_check: %v", got)
	}
	if got := rows(`PRAGMA foreign_key_check`); len(got) != 0 {
		t.Fatalf("foreign_key_check: %v", got)
	}
	for what, query := range map[string]string{
		"runtimes whose versions are not exactly 1..latest": `
			SELECT r.id, r.latest_version, count(v.version), min(v.version), max(v.version)
			FROM runtimes r LEFT JOIN runtime_versions v ON v.runtime_id = r.id
			GROUP BY r.id
			HAVING count(v.version) != r.latest_version OR min(v.version) != 1 OR max(v.version) != r.latest_version`,
		"runtimes whose DEFAULT is missing or not at the latest version": `
			SELECT r.id, r.latest_version, e.live_version, e.target_version
			FROM runtimes r LEFT JOIN runtime_endpoints e ON e.runtime_id = r.id AND e.name = 'DEFAULT'
			WHERE e.name IS NULL OR e.live_version != r.latest_version OR e.target_version != r.latest_version`,
		"endpoints pinned past the latest version": `
			SELECT e.runtime_id, e.name, e.live_version, e.target_version FROM runtime_endpoints e
			JOIN runtimes r ON r.id = e.runtime_id
			WHERE e.live_version > r.latest_version OR e.target_version > r.latest_version`,
		"keys with more than one live incarnation": `
			SELECT runtime_id, endpoint, session_id, count(*) FROM sessions WHERE ended_at IS NULL
			GROUP BY runtime_id, endpoint, session_id HAVING count(*) > 1`,
		"keys whose epochs are not exactly 1..n": `
			SELECT runtime_id, endpoint, session_id, count(*), count(DISTINCT epoch), min(epoch), max(epoch)
			FROM sessions GROUP BY runtime_id, endpoint, session_id
			HAVING count(DISTINCT epoch) != count(*) OR min(epoch) != 1 OR max(epoch) != count(*)`,
		"live incarnations behind a newer epoch": `
			SELECT s.id, s.epoch FROM sessions s WHERE s.ended_at IS NULL AND s.epoch < (
				SELECT max(epoch) FROM sessions n
				WHERE n.runtime_id = s.runtime_id AND n.endpoint = s.endpoint AND n.session_id = s.session_id)`,
		"incarnations whose state disagrees with ended_at": `
			SELECT id, state, ended_at FROM sessions WHERE (state = 'terminated') != (ended_at IS NOT NULL)`,
	} {
		if got := rows(query); len(got) != 0 {
			t.Fatalf("%s: %v", what, got)
		}
	}

	// Every acknowledged write is there.
	for _, line := range acks {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("bad ack %q", line)
		}
		n := int64(0)
		if len(f) > 2 {
			if n, err = strconv.ParseInt(f[2], 10, 64); err != nil {
				t.Fatalf("bad ack %q", line)
			}
		}
		switch f[0] {
		case "claim":
			r, err := db.GetSession(ctx, f[1])
			if err != nil || r.Epoch != n {
				t.Fatalf("acked %q, found %+v, %v", line, r, err)
			}
		case "upd":
			r, err := db.GetSession(ctx, f[1])
			if err != nil || r.Invocations < n {
				t.Fatalf("acked %q, found %+v, %v", line, r, err)
			}
		case "end":
			r, err := db.GetSession(ctx, f[1])
			if err != nil || r.EndedAt.IsZero() {
				t.Fatalf("acked %q, found %+v, %v", line, r, err)
			}
		case "rt":
			rt, err := db.GetRuntime(ctx, f[1])
			if err != nil || int64(rt.LatestVersion) < n {
				t.Fatalf("acked %q, found %+v, %v", line, rt, err)
			}
		case "del":
			if _, err := db.GetRuntime(ctx, f[1]); !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("acked %q, runtime still there: %v", line, err)
			}
		default:
			t.Fatalf("unknown ack %q", line)
		}
	}
}
