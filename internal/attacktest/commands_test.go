package attacktest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/attacktest"
	"github.com/google/uuid"
)

// commandAttacks: InvokeAgentRuntimeCommand runs a shell in a session, so
// every way to aim it where the caller may not invoke must be refused, and
// a command must stay inside its sandbox.
func commandAttacks(t *testing.T, tg *target, at *authTarget, l *attacktest.Ledger) {
	sid := func() http.Header {
		return http.Header{api.HeaderSessionID: {"attack-" + uuid.NewString()}, "Content-Type": {"application/json"}}
	}
	cmd := func(text string) string {
		b, _ := json.Marshal(api.CommandRequest{Command: text})
		return string(b)
	}
	path := func(rt string) string { return "/runtimes/" + rt + "/" + api.PathCommands }

	// Without authentication: the sandbox holds.
	secret := filepath.Join(tg.outside, "secret")
	if err := os.WriteFile(secret, []byte("host-secret-"+tg.token), 0o600); err != nil {
		t.Fatal(err)
	}
	out, exit, a := runCommand(t, tg.url+path("plain"), sid(), cmd("cat "+secret+"; ls "+tg.outside))
	l.Attack(t, "a command reads a host file outside its sandbox", a.status == 200 && exit > 0 && !strings.Contains(out, tg.token), out)
	a = tg.send(http.MethodPost, path("plain"), sid(), `{"command":"`+strings.Repeat("x", 2*api.MaxCommandLen)+`"}`)
	l.Attack(t, "an oversize command", a.is(api.ErrValidation), a)
	a = tg.send(http.MethodPost, path("plain"), sid(), `{"command":"true","timeout":86400}`)
	l.Attack(t, "a command asking for a day", a.is(api.ErrValidation), a)

	// With authentication: the same rights as invoking.
	alice, bob := at.as("alice"), at.as("bob")
	a = at.send(http.MethodPost, path("plain"), sid(), cmd("true"))
	l.Attack(t, "an unsigned command", a.is(api.ErrMissingAuthToken), a)
	a = bob.send(t, at.target, http.MethodPost, path("private"), sid(), cmd("true"))
	l.Attack(t, "a command on a runtime the caller may not invoke", a.is(api.ErrAccessDenied), a)
	req := alice.request(t, http.MethodPost, at.url+path("plain"), sid(), cmd("true"))
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader(cmd("rm -rf /"))), int64(len(cmd("rm -rf /")))
	a = do(req)
	l.Attack(t, "a signed command replayed with another command", a.is(api.ErrInvalidSignature), a)
	a = at.send(http.MethodPost, path("jwt"), sid(), cmd("true"))
	l.Attack(t, "a command on a JWT runtime without a token", a.is(api.ErrUnauthorized), a)

	own := sid()
	if a := alice.send(t, at.target, http.MethodPost, "/runtimes/bound/invocations", own, `{"op":"echo"}`); a.status != 200 {
		t.Fatalf("alice's session: %v", a)
	}
	a = bob.send(t, at.target, http.MethodPost, path("bound"), own, cmd("true"))
	l.Attack(t, "a command in another principal's bound session", a.is(api.ErrAccessDenied), a)
	as := own.Clone()
	as.Set(api.HeaderUserID, "sigv4:alice")
	a = bob.send(t, at.target, http.MethodPost, path("bound"), as, cmd("true"))
	l.Attack(t, "a command in another principal's bound session, with her identity as user ID", a.is(api.ErrAccessDenied), a)
}

// runCommand sends an unsigned command and reads its stream: the output of
// both streams and the exit code (-1 without a contentStop).
func runCommand(t *testing.T, url string, h http.Header, body string) (string, int, answer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", -1, answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, errType: resp.Header.Get(api.HeaderErrorType)}
	if resp.StatusCode != 200 {
		return "", -1, a
	}
	var out strings.Builder
	exit := -1
	dec := eventstream.NewDecoder()
	for {
		m, err := dec.Decode(resp.Body, nil)
		if err != nil {
			break
		}
		var c api.CommandChunk
		json.Unmarshal(m.Payload, &c)
		if d := c.ContentDelta; d != nil {
			out.WriteString(d.Stdout + d.Stderr)
		}
		if s := c.ContentStop; s != nil {
			exit = s.ExitCode
		}
	}
	return out.String(), exit, a
}
