package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
)

// The client against a recorded berth: testdata/golden holds one HTTP
// exchange per client call, recorded from a real berth server by
// record_test.go (see testdata/README.md). The replay checks the client
// sends exactly the recorded request and decodes the recorded answer,
// errors included; each step's checks ran against the real server when
// it was recorded.

// goldenCodeDir stands for the agent directory of the recording.
const goldenCodeDir = "/srv/berth/agents/golden"

// goldenSession is the session the scenario invokes.
const goldenSession = "golden-session-0123456789abcdef0123456789"

// exchange is one recorded request and its answer.
type exchange struct {
	Name    string `json:"name"`
	Request struct {
		Method string      `json:"method"`
		Path   string      `json:"path"`
		Query  string      `json:"query,omitempty"`
		Header http.Header `json:"header,omitempty"`
		Body   body        `json:"body,omitempty"`
	} `json:"request"`
	// Volatile names top-level JSON members of the request body that
	// differ on every call (a fresh clientToken): present, but not equal.
	Volatile []string `json:"volatile,omitempty"`
	Response struct {
		Status int         `json:"status"`
		Header http.Header `json:"header,omitempty"`
		Body   body        `json:"body,omitempty"`
	} `json:"response"`
}

// body is a message body: JSON kept as JSON, so the files read well, and
// anything else as a string.
type body []byte

func (b body) MarshalJSON() ([]byte, error) {
	if len(b) > 0 && json.Valid(b) {
		var out bytes.Buffer
		if err := json.Compact(&out, b); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	return json.Marshal(string(b))
}

func (b *body) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*b = body(s)
		return nil
	}
	*b = append(body(nil), data...)
	return nil
}

// compact is b without insignificant whitespace, when b is JSON.
func (b body) compact() string {
	var out bytes.Buffer
	if json.Compact(&out, b) == nil {
		return out.String()
	}
	return string(b)
}

// ignoredHeaders are set by the HTTP transport, not the client or server
// code: they are neither recorded nor compared.
var ignoredHeaders = []string{"User-Agent", "Accept-Encoding", "Content-Length", "Date"}

func cleanHeader(h http.Header) http.Header {
	h = h.Clone()
	for _, k := range ignoredHeaders {
		delete(h, k)
	}
	return h
}

// state carries what one step learns to the next.
type state struct {
	runtimeID, runtimeARN string
	sessionID             string // berth's incarnation ID of goldenSession
	configRuntime         string // the config runtime's name
	nextToken, firstName  string // the first page of runtimes
}

// step is one client call and what must hold of its answer.
type step struct {
	name string
	// volatile is what the call sends differently every time.
	volatile []string
	run      func(ctx context.Context, c *client.Client, st *state) error
}

// wantAPIError checks err is an AgentCore error of type typ with status,
// message and request ID.
func wantAPIError(err error, typ api.ErrorType) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("got %v, want a %s", err, typ)
	}
	if ae.Type != typ || ae.StatusCode != typ.StatusCode() || ae.Message == "" || ae.RequestID == "" {
		return fmt.Errorf("got %+v, want a %s with status %d, a message and a request ID", ae, typ, typ.StatusCode())
	}
	return nil
}

func check(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func ptr[T any](v T) *T { return &v }

// scenario exercises every client call, with answers and errors.
func scenario(codeDir string) []step {
	return []step{
		{name: "create-runtime", run: func(ctx context.Context, c *client.Client, st *state) error {
			rt, err := c.CreateRuntime(ctx, client.RuntimeInput{
				AgentRuntimeName:           "golden",
				Description:                ptr("recorded for the client's tests"),
				AgentRuntimeArtifact:       api.LocalCode(codeDir, "PYTHON_3_12", "agent"),
				EnvironmentVariables:       map[string]string{"MODE": "golden"},
				LifecycleConfiguration:     &api.Lifecycle{IdleRuntimeSessionTimeout: ptr(300), MaxLifetime: ptr(3600)},
				RequestHeaderConfiguration: &api.RequestHeaderConfiguration{RequestHeaderAllowlist: []string{"X-Tenant-Id"}},
				ProtocolConfiguration:      &api.ProtocolConfiguration{ServerProtocol: "HTTP"},
				NetworkConfiguration:       &api.NetworkConfiguration{NetworkMode: "PUBLIC"},
				Tags:                       map[string]string{"team": "berth"},
				BerthSettings:              &api.BerthSettings{Limits: &api.Limits{CPU: 0.5}},
			})
			if err != nil {
				return err
			}
			st.runtimeID, st.runtimeARN = rt.AgentRuntimeID, rt.AgentRuntimeArn
			return check(strings.HasPrefix(rt.AgentRuntimeID, "golden-") && rt.AgentRuntimeName == "golden" && rt.AgentRuntimeVersion == "1" &&
				rt.Status == api.StatusReady && strings.HasSuffix(rt.AgentRuntimeArn, ":runtime/"+rt.AgentRuntimeID) && !rt.CreatedAt.IsZero(),
				"created %+v", rt)
		}},
		{name: "create-runtime-taken-name", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.CreateRuntime(ctx, client.RuntimeInput{AgentRuntimeName: "golden", AgentRuntimeArtifact: api.LocalCode(codeDir, "PYTHON_3_12", "agent")})
			return wantAPIError(err, api.ErrConflict)
		}},
		{name: "create-runtime-invalid", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.CreateRuntime(ctx, client.RuntimeInput{AgentRuntimeName: "short", AgentRuntimeArtifact: api.LocalCode(codeDir, "PYTHON_3_12", "agent"),
				LifecycleConfiguration: &api.Lifecycle{MaxLifetime: ptr(30)}})
			if err := wantAPIError(err, api.ErrValidation); err != nil {
				return err
			}
			return check(strings.Contains(err.Error(), "lifecycleConfiguration.maxLifetime"), "the error names no member: %v", err)
		}},
		{name: "get-runtime", run: func(ctx context.Context, c *client.Client, st *state) error {
			rt, err := c.GetRuntime(ctx, st.runtimeID, "")
			if err != nil {
				return err
			}
			return check(rt.AgentRuntimeName == "golden" && rt.AgentRuntimeVersion == "1" && rt.BerthSource == "api" &&
				rt.AgentRuntimeArtifact.Code.Code.S3.Prefix == codeDir && rt.EnvironmentVariables["MODE"] == "golden" &&
				*rt.LifecycleConfiguration.IdleRuntimeSessionTimeout == 300 && rt.BerthSettings.Limits.CPU == 0.5 &&
				slices.Equal(rt.RequestHeaderConfiguration.RequestHeaderAllowlist, []string{"X-Tenant-Id"}) &&
				slices.Equal(rt.BerthCommand, []string{"./agent"}), "got %+v", rt)
		}},
		{name: "update-runtime", run: func(ctx context.Context, c *client.Client, st *state) error {
			rt, err := c.UpdateRuntime(ctx, st.runtimeARN, client.RuntimeInput{
				AgentRuntimeName:     "ignored", // not part of an update: the client drops it
				Tags:                 map[string]string{"dropped": "too"},
				AgentRuntimeArtifact: api.LocalCode(codeDir, "PYTHON_3_12", "agent", "--v2"),
			})
			if err != nil {
				return err
			}
			return check(rt.AgentRuntimeID == st.runtimeID && rt.AgentRuntimeVersion == "2" && !rt.LastUpdatedAt.IsZero(), "updated %+v", rt)
		}},
		{name: "get-runtime-version", run: func(ctx context.Context, c *client.Client, st *state) error {
			rt, err := c.GetRuntime(ctx, "golden", "1")
			if err != nil {
				return err
			}
			return check(rt.AgentRuntimeID == st.runtimeID && rt.AgentRuntimeVersion == "1" && len(rt.BerthCommand) == 1, "got %+v", rt)
		}},
		{name: "list-runtimes-page-1", run: func(ctx context.Context, c *client.Client, st *state) error {
			rts, next, err := c.ListRuntimes(ctx, client.ListOptions{MaxResults: 1})
			if err != nil {
				return err
			}
			st.nextToken = next
			if len(rts) == 1 {
				st.firstName = rts[0].AgentRuntimeName
			}
			return check(len(rts) == 1 && next != "", "page 1: %+v, next %q", rts, next)
		}},
		{name: "list-runtimes-page-2", run: func(ctx context.Context, c *client.Client, st *state) error {
			rts, next, err := c.ListRuntimes(ctx, client.ListOptions{MaxResults: 1, NextToken: st.nextToken})
			if err != nil || len(rts) != 1 {
				return check(false, "page 2: %+v %v", rts, err)
			}
			names := []string{st.firstName, rts[0].AgentRuntimeName}
			return check(next == "" && slices.Contains(names, "golden") && slices.Contains(names, st.configRuntime), "pages: %v, next %q", names, next)
		}},
		{name: "list-runtime-versions", run: func(ctx context.Context, c *client.Client, st *state) error {
			vs, next, err := c.ListRuntimeVersions(ctx, st.runtimeID, client.ListOptions{})
			if err != nil {
				return err
			}
			return check(len(vs) == 2 && vs[0].AgentRuntimeVersion == "1" && vs[1].AgentRuntimeVersion == "2" && next == "", "versions %+v", vs)
		}},
		{name: "create-endpoint", run: func(ctx context.Context, c *client.Client, st *state) error {
			e, err := c.CreateEndpoint(ctx, st.runtimeID, client.EndpointInput{Name: "prod", AgentRuntimeVersion: ptr("1"), Description: ptr("pinned")})
			if err != nil {
				return err
			}
			return check(e.Name == "prod" && e.EndpointName == "" && e.LiveVersion == "1" && e.TargetVersion == "1" && e.Description == "pinned" &&
				e.AgentRuntimeArn == st.runtimeARN && strings.HasSuffix(e.AgentRuntimeEndpointArn, "/runtime-endpoint/prod"), "created %+v", e)
		}},
		{name: "update-endpoint", run: func(ctx context.Context, c *client.Client, st *state) error {
			e, err := c.UpdateEndpoint(ctx, st.runtimeID, "prod", client.EndpointInput{Name: "dropped", AgentRuntimeVersion: ptr("2")})
			if err != nil {
				return err
			}
			return check(e.Name == "prod" && e.LiveVersion == "2" && e.Description == "pinned", "updated %+v", e)
		}},
		{name: "get-endpoint", run: func(ctx context.Context, c *client.Client, st *state) error {
			e, err := c.GetEndpoint(ctx, st.runtimeARN, "prod")
			if err != nil {
				return err
			}
			return check(e.Name == "prod" && e.LiveVersion == "2" && e.Status == api.StatusReady, "got %+v", e)
		}},
		{name: "list-endpoints", run: func(ctx context.Context, c *client.Client, st *state) error {
			es, _, err := c.ListEndpoints(ctx, st.runtimeID, client.ListOptions{MaxResults: 10})
			if err != nil {
				return err
			}
			return check(len(es) == 2 && es[0].Name == "DEFAULT" && es[0].LiveVersion == "2" && es[1].Name == "prod", "endpoints %+v", es)
		}},
		{name: "delete-endpoint", run: func(ctx context.Context, c *client.Client, st *state) error {
			return c.DeleteEndpoint(ctx, st.runtimeID, "prod")
		}},
		{name: "get-deleted-endpoint", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.GetEndpoint(ctx, st.runtimeID, "prod")
			return wantAPIError(err, api.ErrResourceNotFound)
		}},
		{name: "invoke", run: func(ctx context.Context, c *client.Client, st *state) error {
			out, err := c.Invoke(ctx, client.InvokeInput{
				Runtime:   st.configRuntime,
				Qualifier: "DEFAULT",
				SessionID: goldenSession,
				UserID:    "user-1",
				Headers:   http.Header{api.HeaderCustomPrefix + "Tenant": {"blue"}},
				Payload:   strings.NewReader(`{"prompt":"How much is 2X5?","user_id":"1"}`),
			})
			if err != nil {
				return err
			}
			defer out.Body.Close()
			data, err := io.ReadAll(out.Body)
			if err != nil {
				return err
			}
			return check(out.StatusCode == 200 && out.SessionID == goldenSession && strings.HasPrefix(out.ContentType, "application/json") &&
				strings.Contains(string(data), "10"), "invoke: %+v %s", out, data)
		}},
		{name: "invoke-short-session", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.Invoke(ctx, client.InvokeInput{Runtime: st.configRuntime, SessionID: "too-short", Payload: strings.NewReader("{}")})
			if err := wantAPIError(err, api.ErrValidation); err != nil {
				return err
			}
			return check(strings.Contains(err.Error(), "runtimeSessionId"), "the error names no member: %v", err)
		}},
		{name: "invoke-unknown-runtime", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.Invoke(ctx, client.InvokeInput{Runtime: "ghost", SessionID: goldenSession, Payload: strings.NewReader("{}")})
			return wantAPIError(err, api.ErrResourceNotFound)
		}},
		{name: "list-sessions", run: func(ctx context.Context, c *client.Client, st *state) error {
			l, err := c.ListSessions(ctx, client.SessionFilter{Runtime: st.configRuntime, State: "live", User: "user-1", Limit: 5})
			if err != nil {
				return err
			}
			if err := check(len(l.Sessions) == 1 && l.Sessions[0].SessionID == goldenSession && l.Sessions[0].Invocations == 1, "sessions %+v", l); err != nil {
				return err
			}
			st.sessionID = l.Sessions[0].ID
			return nil
		}},
		{name: "get-session", run: func(ctx context.Context, c *client.Client, st *state) error {
			s, err := c.GetSession(ctx, st.sessionID)
			if err != nil {
				return err
			}
			return check(s.SessionID == goldenSession && s.UserID == "user-1" && s.Endpoint == "DEFAULT" && s.State != "terminated", "session %+v", s)
		}},
		{name: "session-logs", run: func(ctx context.Context, c *client.Client, st *state) error {
			r, err := c.SessionLogs(ctx, st.sessionID, 5, false)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			return err
		}},
		{name: "stop-session", volatile: []string{"clientToken"}, run: func(ctx context.Context, c *client.Client, st *state) error {
			return c.StopSession(ctx, st.configRuntime, "DEFAULT", goldenSession)
		}},
		{name: "stop-stopped-session", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.StopSessionByID(ctx, st.sessionID)
			return wantAPIError(err, api.ErrResourceNotFound)
		}},
		{name: "delete-runtime", run: func(ctx context.Context, c *client.Client, st *state) error {
			return c.DeleteRuntime(ctx, st.runtimeARN)
		}},
		{name: "get-deleted-runtime", run: func(ctx context.Context, c *client.Client, st *state) error {
			_, err := c.GetRuntime(ctx, st.runtimeID, "")
			return wantAPIError(err, api.ErrResourceNotFound)
		}},
	}
}

// goldenConfigRuntime is the name of the recording's config runtime.
const goldenConfigRuntime = "echo"

func goldenDir() string { return filepath.Join("testdata", "golden") }

func goldenFile(i int, name string) string {
	return filepath.Join(goldenDir(), fmt.Sprintf("%02d-%s.json", i+1, name))
}

// replayer serves the recorded exchanges in order and checks each request.
type replayer struct {
	t         *testing.T
	exchanges []exchange
	next      int
}

func (rp *replayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := rp.t
	if rp.next >= len(rp.exchanges) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "no more exchanges", http.StatusTeapot)
		return
	}
	x := rp.exchanges[rp.next]
	rp.next++
	got, _ := io.ReadAll(r.Body)
	want := x.Request
	if r.Method != want.Method || r.URL.EscapedPath() != want.Path || r.URL.RawQuery != want.Query {
		t.Errorf("%s: sent %s %s?%s, berth was sent %s %s?%s", x.Name, r.Method, r.URL.EscapedPath(), r.URL.RawQuery, want.Method, want.Path, want.Query)
	}
	if h := cleanHeader(r.Header); !headersEqual(h, want.Header) {
		t.Errorf("%s: sent headers %v, berth was sent %v", x.Name, h, want.Header)
	}
	if err := bodiesMatch(body(got), want.Body, x.Volatile); err != nil {
		t.Errorf("%s: %v", x.Name, err)
	}
	for k, v := range x.Response.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(x.Response.Status)
	w.Write(x.Response.Body)
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// bodiesMatch compares a request body with the recorded one; volatile
// members must be there but may differ.
func bodiesMatch(got, want body, volatile []string) error {
	if len(volatile) == 0 {
		if got.compact() != want.compact() {
			return fmt.Errorf("sent body %s, berth was sent %s", got, want)
		}
		return nil
	}
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("sent body %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		return fmt.Errorf("recorded body %s: %v", want, err)
	}
	for _, k := range volatile {
		gs, ok1 := g[k].(string)
		ws, ok2 := w[k].(string)
		if !ok1 || !ok2 || len(gs) != len(ws) {
			return fmt.Errorf("%s: sent %v, berth was sent %v", k, g[k], w[k])
		}
		delete(g, k)
		delete(w, k)
	}
	gj, _ := json.Marshal(g)
	wj, _ := json.Marshal(w)
	if string(gj) != string(wj) {
		return fmt.Errorf("sent body %s, berth was sent %s", got, want)
	}
	return nil
}

func loadGolden(t *testing.T, steps []step) []exchange {
	t.Helper()
	var xs []exchange
	for i, s := range steps {
		data, err := os.ReadFile(goldenFile(i, s.name))
		if err != nil {
			t.Fatalf("%v (record the exchanges again: see testdata/README.md)", err)
		}
		var x exchange
		if err := json.Unmarshal(data, &x); err != nil {
			t.Fatalf("%s: %v", goldenFile(i, s.name), err)
		}
		if x.Name != s.name || !slices.Equal(x.Volatile, s.volatile) {
			t.Fatalf("%s holds %q, volatile %v", goldenFile(i, s.name), x.Name, x.Volatile)
		}
		xs = append(xs, x)
	}
	files, _ := filepath.Glob(filepath.Join(goldenDir(), "*.json"))
	if len(files) != len(steps) {
		t.Fatalf("%d golden files for %d steps", len(files), len(steps))
	}
	return xs
}

// TestClientAgainstRecordedBerth replays the recorded exchanges.
func TestClientAgainstRecordedBerth(t *testing.T) {
	steps := scenario(goldenCodeDir)
	rp := &replayer{t: t, exchanges: loadGolden(t, steps)}
	srv := httptest.NewServer(rp)
	defer srv.Close()
	c := &client.Client{Endpoint: srv.URL + "/", HTTPClient: srv.Client()}
	st := &state{configRuntime: goldenConfigRuntime}
	for i, s := range steps {
		if err := s.run(t.Context(), c, st); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if rp.next != i+1 {
			t.Fatalf("%s made %d requests, want 1", s.name, rp.next-i)
		}
	}
}

// A decoded error carries the type, status, message and request ID, from
// the header or, failing that, the body's __type (as AWS services send it).
func TestDecodeErrorShapes(t *testing.T) {
	for _, tc := range []struct {
		header http.Header
		status int
		body   string
		want   api.Error
	}{
		{http.Header{api.HeaderErrorType: {"ThrottlingException"}, api.HeaderAWSRequestID: {"r1"}}, 429, `{"message":"slow down"}`,
			api.Error{Type: api.ErrThrottling, Message: "slow down", StatusCode: 429, RequestID: "r1"}},
		{http.Header{}, 404, `{"__type":"com.amazonaws.bedrockagentcore#ResourceNotFoundException:http://x","message":"gone"}`,
			api.Error{Type: api.ErrResourceNotFound, Message: "gone", StatusCode: 404}},
		{http.Header{api.HeaderErrorType: {"ValidationException:http://internal.amazon.com/"}}, 400, "not json\n",
			api.Error{Type: api.ErrValidation, Message: "not json", StatusCode: 400}},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for k, v := range tc.header {
				w.Header()[k] = v
			}
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}))
		c := &client.Client{Endpoint: srv.URL, HTTPClient: srv.Client()}
		_, err := c.GetRuntime(t.Context(), "x", "")
		srv.Close()
		var ae *api.Error
		if !errors.As(err, &ae) || *ae != tc.want {
			t.Errorf("%s: got %#v, want %#v", tc.body, err, tc.want)
		}
	}
}
