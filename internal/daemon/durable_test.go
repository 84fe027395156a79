package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
)

type tutorialTurn struct {
	Answer   string `json:"answer"`
	Turn     int    `json:"turn"`
	Instance string `json:"instance"`
}

// TestSuspendAndResume: a durable session with suspend_after is ended
// early when idle (its sandbox freed) and resumes transparently from its
// saved state on the next call.
func TestSuspendAndResume(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		agent := buildTutorial(t)
		e := newEnv(t, func(c *config.Config) {
			c.Runtimes = append(c.Runtimes, config.Runtime{Name: "durable", Settings: registry.Settings{Command: []string{agent}, Sandbox: registry.Backend(backend), Sessions: registry.SessionPolicy{Durability: "state", SuspendAfter: config.Duration(500 * time.Millisecond), StateMaxBytes: 4096}}})
		})
		say := func(sid, prompt string) tutorialTurn {
			t.Helper()
			out, err := e.client.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
				AgentRuntimeArn: aws.String(e.arn("durable")), RuntimeSessionId: aws.String(sid),
				Payload: []byte(fmt.Sprintf(`{"prompt": %q, "user_id": "1"}`, prompt))})
			if err != nil {
				t.Fatalf("%q: %v", prompt, err)
			}
			defer out.Response.Close()
			var r tutorialTurn
			json.NewDecoder(out.Response).Decode(&r)
			return r
		}
		sid := newSessionID()
		say(sid, "How much is 2X5?")
		first := say(sid, "and that plus 34?")
		rec := liveRecord(t, e, sid)

		deadline := time.Now().Add(10 * time.Second)
		for liveRecordOK(e, sid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		ended, err := storeOf(t, e).GetSession(context.Background(), rec.ID)
		if err != nil || ended.EndReason != session.EndSuspended {
			t.Fatalf("idle durable session: %+v %v; want suspended", ended, err)
		}
		resumed := say(sid, "and plus 10?")
		if resumed.Instance == first.Instance || resumed.Turn != 3 || !strings.Contains(resumed.Answer, "54") {
			t.Fatalf("did not resume from saved state: %+v", resumed)
		}

		// The state cap holds: an oversize save is refused whole and the
		// saved state is intact.
		rec = liveRecord(t, e, sid)
		sock := filepath.Join(e.d.DataDir(), "run", rec.ID[:12], "state.sock")
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
		req, _ := http.NewRequest(http.MethodPut, "http://berth/state", bytes.NewReader(make([]byte, 5000)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("state socket: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversize state: %d", resp.StatusCode)
		}
		if r := say(sid, "and plus 1?"); !strings.Contains(r.Answer, "55") {
			t.Fatalf("state damaged by a refused save: %+v", r)
		}
	})
}

func liveRecordOK(e *env, sid string) bool {
	for _, in := range e.d.Sessions().Live() {
		if in.SessionID == sid {
			return true
		}
	}
	return false
}

func liveRecord(t *testing.T, e *env, sid string) session.Info {
	for _, in := range e.d.Sessions().Live() {
		if in.SessionID == sid {
			return in
		}
	}
	t.Fatalf("session %s not live", sid)
	return session.Info{}
}

// waitLive polls the session manager until sid's live session satisfies
// cond, and returns it. It fails if the session is not live, and after 30 s.
func waitLive(t *testing.T, e *env, sid, what string, cond func(session.Info) bool) session.Info {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		in := liveRecord(t, e, sid)
		if cond(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s: session is %+v", what, in)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type sessionGetter interface {
	GetSession(ctx context.Context, id string) (session.Record, error)
}

func storeOf(t *testing.T, e *env) sessionGetter { return e.d.Store() }
