package attacktest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/attacktest"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/google/uuid"
)

func TestMain(m *testing.M) {
	linux.MaybeRunInit()
	os.Exit(m.Run())
}

// target is a berth under attack, as an attacker on its port sees it.
type target struct {
	url      string
	dataDir  string
	codeRoot string
	agentDir string // a valid agent directory under the code root
	outside  string // a directory an attacker would like to reach
	token    string // in every agent's environment, to find them on the host
}

const attackToken = "BERTH_ATTACK_TOKEN"

func startTarget(t *testing.T, mutate ...func(*config.Config)) *target {
	t.Helper()
	testenv.Require(t, testenv.Linux, linux.Available())
	agent := sandboxtest.BuildAgent(t)
	tg := &target{dataDir: t.TempDir(), codeRoot: t.TempDir(), outside: t.TempDir(), token: uuid.NewString()}
	tg.agentDir = filepath.Join(tg.codeRoot, "agent")
	if err := os.MkdirAll(tg.agentDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tg.agentDir, "testagent"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = tg.dataDir
	cfg.CodeRoots = []string{tg.codeRoot}
	cfg.StartTimeout = config.Duration(20 * time.Second)
	cfg.PingInterval = config.Duration(200 * time.Millisecond)
	cfg.StopGrace = config.Duration(time.Second)
	cfg.BodyIdleTimeout = config.Duration(time.Second)
	cfg.IdleTimeout = config.Duration(time.Second)
	cfg.Runtimes = []config.Runtime{
		{Name: "plain", Settings: registry.Settings{Command: []string{agent}, Env: map[string]string{attackToken: tg.token}}},
		{Name: "capped", Settings: registry.Settings{Command: []string{agent},
			Sessions: registry.SessionPolicy{MaxSessions: 2}}},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start berth: %v", err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	tg.url = d.URL()
	return tg
}

// answer is what came back: the status and AgentCore error type.
type answer struct {
	status  int
	errType string
	message string
	err     error
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s %q %v", a.status, a.errType, a.message, a.err)
}

func (tg *target) send(method, path string, header http.Header, body string) answer {
	req, err := http.NewRequest(method, tg.url+path, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	return do(req)
}

// do sends req and reads the answer.
func do(req *http.Request) answer {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	var b api.ErrorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	json.Unmarshal(data, &b)
	return answer{status: resp.StatusCode, errType: resp.Header.Get(api.HeaderErrorType), message: b.Message}
}

func (a answer) is(typ api.ErrorType) bool {
	return a.err == nil && a.errType == string(typ) && a.status == typ.StatusCode()
}

func createBody(name string, artifact map[string]any, extra map[string]any) string {
	in := map[string]any{
		"agentRuntimeName":     name,
		"agentRuntimeArtifact": artifact,
		"roleArn":              "arn:aws:iam::123456789012:role/x",
		"networkConfiguration": map[string]any{"networkMode": "PUBLIC"},
	}
	for k, v := range extra {
		in[k] = v
	}
	b, _ := json.Marshal(in)
	return string(b)
}

func code(prefix string, entry ...string) map[string]any {
	return map[string]any{"codeConfiguration": map[string]any{
		"code":       map[string]any{"s3": map[string]any{"bucket": api.LocalBucket, "prefix": prefix}},
		"runtime":    "PYTHON_3_12",
		"entryPoint": entry,
	}}
}

func (tg *target) runtimeNames(t *testing.T) []string {
	t.Helper()
	resp, err := http.Post(tg.url+api.PathRuntimes, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list api.AgentRuntimeList
	json.NewDecoder(resp.Body).Decode(&list)
	var names []string
	for _, rt := range list.AgentRuntimes {
		names = append(names, rt.AgentRuntimeName)
	}
	return names
}

func TestAttacks(t *testing.T) {
	tg := startTarget(t)
	var l attacktest.Ledger
	defer l.Report(t)
	before := tg.runtimeNames(t)

	t.Run("control plane", func(t *testing.T) { controlPlaneAttacks(t, tg, &l) })
	t.Run("data plane input", func(t *testing.T) { inputAttacks(t, tg, &l) })
	t.Run("edge", func(t *testing.T) { edgeAttacks(t, tg, &l) })
	t.Run("slow clients", func(t *testing.T) { slowClientAttacks(t, tg, &l) })
	t.Run("floods and caps", func(t *testing.T) { floodAttacks(t, tg, &l) })

	// Nothing was left behind: no runtime was created by any attack.
	if after := tg.runtimeNames(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("runtimes before the attacks %v, after %v", before, after)
	}

	// The same berth with authentication on: callers without keys, with
	// wrong or stale ones, with keys but no right to what they ask.
	at := startAuthTarget(t)
	authBefore := at.runtimeNamesAs(t, "ops")
	t.Run("authentication", func(t *testing.T) { authAttacks(t, at, &l) })
	t.Run("commands", func(t *testing.T) { commandAttacks(t, tg, at, &l) })
	if after := at.runtimeNamesAs(t, "ops"); strings.Join(after, ",") != strings.Join(authBefore, ",") {
		t.Errorf("runtimes before the authentication attacks %v, after %v", authBefore, after)
	}
}

func controlPlaneAttacks(t *testing.T, tg *target, l *attacktest.Ledger) {
	pwned := filepath.Join(tg.outside, "pwned")
	// A symlink in the code root that leads out of it, and an entry point
	// that is a symlink to a host binary.
	escape := filepath.Join(tg.codeRoot, "escape")
	if err := os.Symlink("/etc", escape); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(tg.codeRoot, "linked")
	os.MkdirAll(linked, 0o755)
	if err := os.Symlink("/bin/sh", filepath.Join(linked, "agent")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what string
		body string
	}{
		{"the reported RCE: host perl, prefix /etc, process backend by tag", createBody("evil1",
			code("/etc", "/usr/bin/perl", "-esystem(q{id > "+pwned+"})"),
			map[string]any{"tags": map[string]string{"berth:sandbox": "process"}})},
		{"process backend by tag, valid code", createBody("evil2", code(tg.agentDir, "testagent"),
			map[string]any{"tags": map[string]string{"berth:sandbox": "process"}})},
		{"host network by tag", createBody("evil3", code(tg.agentDir, "testagent"),
			map[string]any{"tags": map[string]string{"berth:network": "host"}})},
		{"process backend by berthSettings", createBody("evil4", code(tg.agentDir, "testagent"),
			map[string]any{"berthSettings": map[string]any{"sandbox": "process"}})},
		{"host network by berthSettings", createBody("evil5", code(tg.agentDir, "testagent"),
			map[string]any{"berthSettings": map[string]any{"network": "host"}})},
		{"a mount of the host root", createBody("evil6", code(tg.agentDir, "testagent"),
			map[string]any{"berthSettings": map[string]any{"mounts": []map[string]any{{"source": "/", "target": "/host"}}}})},
		{"limits above the ceiling", createBody("evil7", code(tg.agentDir, "testagent"),
			map[string]any{"berthSettings": map[string]any{"limits": map[string]any{"memoryBytes": int64(1) << 40, "pids": 1 << 20}}})},
		{"a warm pool of a thousand sandboxes", createBody("evil8", code(tg.agentDir, "testagent"),
			map[string]any{"berthSettings": map[string]any{"sessions": map[string]any{"warmPool": 1000}}})},
		{"absolute entry point", createBody("evil9", code(tg.agentDir, "/bin/sh", "-c"), nil)},
		{"entry point climbing out with ..", createBody("evil10", code(tg.agentDir, "../../../../bin/sh"), nil)},
		{"entry point symlinked to a host binary", createBody("evil11", code(linked, "agent"), nil)},
		{"prefix outside the code roots", createBody("evil12", code("/usr/bin", "perl"), nil)},
		{"prefix climbing out with ..", createBody("evil13", code(tg.codeRoot+"/../../etc", "passwd"), nil)},
		{"prefix through a symlink out of the code root", createBody("evil14", code(escape, "passwd"), nil)},
		{"prefix through /proc/self/root", createBody("evil15", code("/proc/self/root"+tg.agentDir, "testagent"), nil)},
		{"prefix of berth's data dir", createBody("evil16", code(tg.dataDir, "berth.db"), nil)},
		{"prefix inside berth's data dir", createBody("evil17", code(filepath.Join(tg.dataDir, "logs"), "x"), nil)},
		{"prefix of the host root", createBody("evil18", code("/", "bin/sh"), nil)},
		{"a relative prefix", createBody("evil19", code("etc", "passwd"), nil)},
		{"an image pulled from berth's own loopback", createBody("evil22", map[string]any{"containerConfiguration": map[string]any{
			"containerUri": "127.0.0.1:8787/team/agent:v1"}}, nil)},
		{"an image pulled from the cloud metadata address", createBody("evil23", map[string]any{"containerConfiguration": map[string]any{
			"containerUri": "169.254.169.254/latest/meta-data:v1"}}, nil)},
		{"malformed JSON", `{"agentRuntimeName":"evil20",`},
		{"a body of 2 MB", createBody("evil21", code(tg.agentDir, "testagent"), map[string]any{"description": strings.Repeat("x", 2<<20)})},
	}
	for _, c := range cases {
		a := tg.send(http.MethodPut, api.PathRuntimes, http.Header{"Content-Type": {"application/json"}}, c.body)
		l.Attack(t, "create runtime: "+c.what, a.is(api.ErrValidation), a)
	}
	// The RCE's second request finds no runtime, and nothing ran.
	a := tg.send(http.MethodPost, "/runtimes/evil1/invocations", nil, "{}")
	l.Attack(t, "invoke the refused RCE runtime", a.is(api.ErrResourceNotFound), a)
	if _, err := os.Stat(pwned); err == nil {
		t.Errorf("the RCE wrote %s", pwned)
	}
}

func inputAttacks(t *testing.T, tg *target, l *attacktest.Ledger) {
	sid := "attack-" + uuid.NewString()
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}, api.HeaderSessionID: {sid}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	arn := func(region, account string) string {
		return url.PathEscape(fmt.Sprintf("arn:aws:bedrock-agentcore:%s:%s:runtime/%s", region, account, registry.StableID("plain")))
	}
	cases := []struct {
		what string
		path string
		h    http.Header
		want api.ErrorType
	}{
		{"an ARN of another account", "/runtimes/" + arn("us-east-1", "999999999999") + "/invocations", hdr(), api.ErrResourceNotFound},
		{"an ARN of another region", "/runtimes/" + arn("eu-west-1", config.DefaultAccount) + "/invocations", hdr(), api.ErrResourceNotFound},
		{"an ARN of another service", "/runtimes/" + url.PathEscape("arn:aws:s3:us-east-1:"+config.DefaultAccount+":runtime/"+registry.StableID("plain")) + "/invocations", hdr(), api.ErrResourceNotFound},
		{"a malformed qualifier", "/runtimes/plain/invocations?qualifier=%zz", hdr(), api.ErrValidation},
		{"a qualifier that is no endpoint name", "/runtimes/plain/invocations?qualifier=" + url.QueryEscape("../DEFAULT"), hdr(), api.ErrValidation},
		{"a session ID carrying an attribute separator", "/runtimes/plain/invocations",
			hdr(api.HeaderSessionID, strings.Repeat("a", 33)+",service.name=billing"), api.ErrValidation},
		{"a session ID of 32 characters", "/runtimes/plain/invocations", hdr(api.HeaderSessionID, strings.Repeat("a", 32)), api.ErrValidation},
		{"a custom header of 5 KB", "/runtimes/plain/invocations", hdr(api.HeaderCustomPrefix+"Big", strings.Repeat("x", 5<<10)), api.ErrValidation},
		{"an allow-listed-looking x-amz header smuggled as custom", "/runtimes/plain/invocations",
			hdr(api.HeaderCustomPrefix+"A", strings.Repeat("y", 4<<10+1)), api.ErrValidation},
		{"a user ID of 2 KB", "/runtimes/plain/invocations", hdr(api.HeaderUserID, strings.Repeat("u", 2048)), api.ErrValidation},
	}
	many := hdr()
	for i := range 21 {
		many.Set(api.HeaderCustomPrefix+"H"+strconv.Itoa(i), "v")
	}
	cases = append(cases, struct {
		what string
		path string
		h    http.Header
		want api.ErrorType
	}{"21 custom headers", "/runtimes/plain/invocations", many, api.ErrValidation})
	for _, c := range cases {
		a := tg.send(http.MethodPost, c.path, c.h, "{}")
		l.Attack(t, c.what, a.is(c.want), a)
	}
	// A long runtime reference is refused, and the answer does not echo it
	// back; one past the header cap never reaches berth.
	long := "/runtimes/" + strings.Repeat("A", 100<<10) + "/invocations"
	a := tg.send(http.MethodPost, long, hdr(), "{}")
	l.Attack(t, "a 100 KB runtime reference, echoed back", a.is(api.ErrResourceNotFound) && len(a.message) < 1024, a.status)
	a = tg.send(http.MethodPost, "/runtimes/"+strings.Repeat("A", 900<<10)+"/invocations", hdr(), "{}")
	l.Attack(t, "a 900 KB runtime reference", a.err == nil && a.status == http.StatusRequestHeaderFieldsTooLarge, a)
	// Headers past the server's cap are cut by net/http before berth.
	a = tg.send(http.MethodPost, "/runtimes/plain/invocations", hdr("X-Padding", strings.Repeat("p", 200<<10)), "{}")
	l.Attack(t, "a header block of 200 KB", a.err == nil && a.status == http.StatusRequestHeaderFieldsTooLarge, a)
}

func edgeAttacks(t *testing.T, tg *target, l *attacktest.Ledger) {
	sid := "attack-" + uuid.NewString()
	for _, c := range []struct {
		what   string
		method string
		path   string
		h      http.Header
		body   string
	}{
		{"DNS rebinding: invoke through attacker.example", http.MethodPost, "/runtimes/plain/invocations",
			http.Header{"Host": {"attacker.example"}, api.HeaderSessionID: {sid}}, "{}"},
		{"DNS rebinding: create a runtime through attacker.example", http.MethodPut, api.PathRuntimes,
			http.Header{"Host": {"attacker.example:8787"}}, createBody("rebind", code(tg.agentDir, "testagent"), nil)},
		{"DNS rebinding: list sessions through attacker.example", http.MethodGet, api.PathSessions,
			http.Header{"Host": {"attacker.example"}}, ""},
		{"cross-site request from a web page", http.MethodPost, "/runtimes/plain/invocations",
			http.Header{"Origin": {"http://attacker.example"}, api.HeaderSessionID: {sid}}, "{}"},
		{"cross-site runtime creation", http.MethodPut, api.PathRuntimes,
			http.Header{"Origin": {"http://attacker.example"}, "Content-Type": {"text/plain"}}, createBody("csrf", code(tg.agentDir, "testagent"), nil)},
		{"a web page's WebSocket to an agent", http.MethodGet, "/runtimes/plain/ws",
			http.Header{"Origin": {"http://attacker.example"}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"},
				"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, api.HeaderSessionID: {sid}}, ""},
		{"a null Origin (sandboxed iframe)", http.MethodPost, "/runtimes/plain/invocations",
			http.Header{"Origin": {"null"}, api.HeaderSessionID: {sid}}, "{}"},
		{"a cross-site form stopping a session through the console", http.MethodPost, "/console/sessions/" + sid + "/stop",
			http.Header{"Origin": {"http://attacker.example"}, "Content-Type": {"application/x-www-form-urlencoded"}}, ""},
		{"the console's origin with another port (another local site)", http.MethodPost, "/console/sessions/" + sid + "/stop",
			http.Header{"Origin": {"http://127.0.0.1:1"}, "Content-Type": {"application/x-www-form-urlencoded"}}, ""},
	} {
		a := tg.send(c.method, c.path, c.h, c.body)
		l.Attack(t, c.what, a.is(api.ErrAccessDenied), a)
	}
}

// slowClientAttacks trickle a body and hold idle connections; berth's
// timeouts are 1 s here.
func slowClientAttacks(t *testing.T, tg *target, l *attacktest.Ledger) {
	addr := strings.TrimPrefix(tg.url, "http://")
	trickle := func(what, head string, send func(c net.Conn)) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, head)
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			send(c)
		}()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = io.ReadAll(bufio.NewReader(c))
		cut := time.Since(start)
		// 10 s is net/http's header timeout; the body and idle timeouts
		// here are 1 s.
		l.Attack(t, what, err == nil && cut <= 11*time.Second, fmt.Sprintf("connection held %s (err %v)", cut, err))
		c.Close()
		<-done
	}
	sid := "attack-" + uuid.NewString()
	trickle("a body sent one byte every 3 s",
		"POST /runtimes/plain/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
			api.HeaderSessionID+": "+sid+"\r\nContent-Length: 100\r\n\r\n",
		func(c net.Conn) {
			for range 5 {
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
				time.Sleep(3 * time.Second)
			}
		})
	trickle("a chunked body that never ends",
		"POST /runtimes/plain/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
			api.HeaderSessionID+": "+sid+"\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
		func(net.Conn) {})
	trickle("a connection that never sends a request", "", func(net.Conn) {})
	// A keep-alive connection left idle after a call is closed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	idleStart := time.Now()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = br.ReadByte()
	l.Attack(t, "an idle keep-alive connection", err == io.EOF && time.Since(idleStart) < 5*time.Second,
		fmt.Sprintf("closed after %s (%v)", time.Since(idleStart), err))
	// The trickled calls gave their call slots back: the session idles.
	a := tg.send(http.MethodPost, "/runtimes/plain/invocations", http.Header{api.HeaderSessionID: {sid}}, `{"op":"echo"}`)
	l.Attack(t, "a trickled call holding the session", a.err == nil && a.status == http.StatusOK, a)
}

func floodAttacks(t *testing.T, tg *target, l *attacktest.Ledger) {
	// A runtime's own cap: its third session is refused, the first two
	// go on.
	var first []string
	for i := range 3 {
		sid := fmt.Sprintf("capped-%d-%s", i, uuid.NewString())
		a := tg.send(http.MethodPost, "/runtimes/capped/invocations", http.Header{api.HeaderSessionID: {sid}}, `{"op":"echo"}`)
		if i < 2 {
			if a.status != http.StatusOK {
				t.Fatalf("session %d of capped: %v", i, a)
			}
			first = append(first, sid)
			continue
		}
		l.Attack(t, "a session past the runtime's max_sessions", a.is(api.ErrServiceQuota), a)
	}
	for _, sid := range first {
		if a := tg.send(http.MethodPost, "/runtimes/capped/invocations", http.Header{api.HeaderSessionID: {sid}}, `{"op":"echo"}`); a.status != http.StatusOK {
			t.Errorf("a live session of capped stopped working after the cap: %v", a)
		}
	}

	// 300 new session IDs at once: the pace of new sessions holds.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	var (
		mu                         sync.Mutex
		served, throttled, started int
		other                      []answer
	)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			a := tg.send(http.MethodPost, "/runtimes/plain/invocations",
				http.Header{api.HeaderSessionID: {fmt.Sprintf("flood-%03d-%s", i, uuid.NewString())}}, `{"op":"echo"}`)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case a.status == http.StatusOK:
				served++
			case a.is(api.ErrThrottling):
				throttled++
			case a.is(api.ErrRuntimeClient):
				// Admitted, but its sandbox did not start in time on a
				// machine this loaded: admitted all the same.
				started++
			default:
				other = append(other, a)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapInuse) - int64(heapBefore)
	// Bursts of 50, then 25 a second.
	allowed := 50 + int(25*took.Seconds()) + 1
	l.Attack(t, "300 new sessions at once", served+started <= allowed && throttled > 0 && len(other) == 0,
		fmt.Sprintf("%d served, %d admitted but slow to start, %d throttled, %d other %v in %s", served, started, throttled, len(other), other, took))
	testenv.Report(t, "session flood", fmt.Sprintf("300 new sessions in %s: %d admitted, %d refused (ThrottlingException); berth's heap grew %.1f MB",
		took.Round(time.Millisecond), served+started, throttled, float64(grew)/(1<<20)))
	if grew > 64<<20 {
		t.Errorf("the flood grew berth's heap by %d MB", grew>>20)
	}

	// Every sandbox carries the default limits: the flood's sessions could
	// not take the host between them.
	checkDefaultLimits(t, tg)
}

// checkDefaultLimits finds a flood session's agent on the host and reads
// its cgroup's limits: the runtime set none, so berth's defaults (2 GiB,
// 512 pids) apply.
func checkDefaultLimits(t *testing.T, tg *target) {
	pids, err := sandboxtest.ProcsWithEnv(attackToken + "=" + tg.token)
	if err != nil || len(pids) == 0 {
		t.Fatalf("find a flood session's agent: %v %v", pids, err)
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var files []string
		switch {
		case parts[1] == "pids":
			files = []string{"/sys/fs/cgroup/pids" + parts[2] + "/pids.max"}
		case parts[1] == "memory":
			files = []string{"/sys/fs/cgroup/memory" + parts[2] + "/memory.limit_in_bytes"}
		case parts[1] == "":
			files = []string{"/sys/fs/cgroup/unified" + parts[2] + "/pids.max", "/sys/fs/cgroup/unified" + parts[2] + "/memory.max",
				"/sys/fs/cgroup" + parts[2] + "/pids.max", "/sys/fs/cgroup" + parts[2] + "/memory.max"}
		}
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) != "max" {
				found[filepath.Base(f)] = strings.TrimSpace(string(b))
			}
		}
	}
	if found["pids.max"] != "512" {
		t.Errorf("agent %d: pids.max %q, want the default 512 (%v)", pids[0], found["pids.max"], found)
	}
	mem := strconv.Itoa(2 << 30)
	if found["memory.max"] != mem && found["memory.limit_in_bytes"] != mem {
		t.Errorf("agent %d: memory limit %v, want the default 2 GiB", pids[0], found)
	}
}
