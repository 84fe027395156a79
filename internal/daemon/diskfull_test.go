package daemon_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/google/uuid"
)

// TestDiskFull runs berth on a 64 MB tmpfs (room for the test agent's
// code snapshot) and fills it. New work must fail
// with a retryable ThrottlingException naming the full disk, never an
// internal error; the health check must say so; sessions already running
// must go on; and once space is freed berth must take new work again with
// its store intact and holding every write it acknowledged.
func TestDiskFull(t *testing.T) {
	data := t.TempDir()
	var missing error
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", data).CombinedOutput(); err != nil {
		missing = fmt.Errorf("mount a tmpfs: %v: %s", err, out)
	}
	testenv.Require(t, testenv.Root, missing)
	t.Cleanup(func() { exec.Command("umount", "-l", data).Run() })

	ctx := context.Background()
	dir := codeDir(t)
	c := startCP(t, data, "process", uuid.NewString())
	var runtimes, sessions []string // acknowledged writes
	create := func(name string) error {
		out, err := c.ctl.CreateAgentRuntime(ctx, c.createInput(name, dir, "v1"))
		if err == nil {
			runtimes = append(runtimes, aws.ToString(out.AgentRuntimeId))
		}
		return err
	}
	invoke := func(sid string) error {
		out, err := c.dp.InvokeAgentRuntime(ctx, &bedrockagentcore.InvokeAgentRuntimeInput{
			AgentRuntimeArn: aws.String("fromconfig"), RuntimeSessionId: aws.String(sid), Payload: []byte(`{"op":"echo"}`)})
		if err == nil {
			out.Response.Close()
			sessions = append(sessions, sid)
		}
		return err
	}
	health := func() (int, api.Health) {
		resp, err := http.Get(c.d.URL() + api.PathHealth)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h api.Health
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h
	}
	// diskFull checks a failed call is the retryable disk-full error.
	diskFull := func(what string, err error) {
		t.Helper()
		var ae smithy.APIError
		var re *smithyhttp.ResponseError
		if !errors.As(err, &ae) || !errors.As(err, &re) || ae.ErrorCode() != string(api.ErrThrottling) ||
			ae.ErrorMessage() != errdefs.DiskFullMessage || re.HTTPStatusCode() != http.StatusTooManyRequests {
			t.Fatalf("%s on a full disk: %v; want 429 ThrottlingException %q", what, err, errdefs.DiskFullMessage)
		}
	}

	for i := range 3 {
		if err := create(fmt.Sprintf("before_%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	live := newSessionID()
	for _, sid := range []string{live, newSessionID()} {
		if err := invoke(sid); err != nil {
			t.Fatal(err)
		}
	}
	if code, h := health(); code != http.StatusOK || h.Status != api.HealthOK || h.DataDisk.Full {
		t.Fatalf("health before the disk filled: %d %+v", code, h)
	}

	filler := fill(t, data)
	if code, h := health(); code != http.StatusServiceUnavailable || h.Status != api.HealthDegraded ||
		!h.DataDisk.Full || len(h.Problems) != 1 || h.Problems[0] != errdefs.DiskFullMessage {
		t.Fatalf("health on a full disk: %d %+v", code, h)
	}
	t.Logf("health on a full disk: %+v", func() api.Health { _, h := health(); return h }())
	// Every write either lands or is refused as disk full; keep writing
	// until both kinds of call have been refused.
	var runtimeErr, sessionErr error
	for i := 0; i < 200 && (runtimeErr == nil || sessionErr == nil); i++ {
		if err := create(fmt.Sprintf("full_%d", i)); err != nil {
			diskFull("CreateAgentRuntime", err)
			runtimeErr = err
		}
		if err := invoke(newSessionID()); err != nil {
			diskFull("InvokeAgentRuntime in a new session", err)
			sessionErr = err
		}
	}
	if runtimeErr == nil || sessionErr == nil {
		t.Fatalf("200 writes on a full disk; runtime error %v, session error %v", runtimeErr, sessionErr)
	}
	t.Logf("a caller sees: %v", sessionErr)
	// A running session needs no new space to answer.
	if err := invoke(live); err != nil {
		t.Fatalf("the live session on a full disk: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, h := health(); code != http.StatusOK || h.Status != api.HealthOK {
		t.Fatalf("health once space is freed: %d %+v", code, h)
	}
	if err := create("after"); err != nil {
		t.Fatalf("create a runtime once space is freed: %v", err)
	}
	if err := invoke(newSessionID()); err != nil {
		t.Fatalf("a new session once space is freed: %v", err)
	}
	c.close()

	path := filepath.Join(data, "berth.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var check string
	err = raw.QueryRow("PRAGMA integrity_check").Scan(&check)
	raw.Close()
	if err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range runtimes {
		if _, err := db.GetRuntime(ctx, id); err != nil {
			t.Errorf("acknowledged runtime %s: %v", id, err)
		}
	}
	recs, _, err := db.ListSessions(ctx, session.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, r := range recs {
		stored[r.SessionID] = true
	}
	for _, sid := range sessions {
		if !stored[sid] {
			t.Errorf("acknowledged session %s has no record", sid)
		}
	}
	t.Logf("%d runtimes and %d sessions acknowledged, all stored", len(runtimes), len(sessions))
}

// fill writes a file into dir until its disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errdefs.NoSpace(err) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			return path
		}
	}
}
