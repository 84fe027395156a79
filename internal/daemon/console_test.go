package daemon_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/testenv"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browser is a headless Chromium driven over the DevTools protocol, which
// collects every error the page reports and accepts every confirm().
type browser struct {
	ctx context.Context

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	testenv.Require(t, testenv.Chromium, err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root, where Chromium's own sandbox refuses to start
		chromedp.WindowSize(1400, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			b.addError("exception: " + ev.ExceptionDetails.Error())
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.APITypeError {
				b.addError(fmt.Sprintf("console.error: %v", ev.Args))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError {
				b.addError("log: " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		case *page.EventJavascriptDialogOpening:
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(true))
		}
	})
	if err := chromedp.Run(ctx, cdplog.Enable()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) addError(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, s)
}

func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(b.ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// screenshot keeps the page as a test artifact (go test -artifacts).
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	var png []byte
	b.run(t, "screenshot", chromedp.FullScreenshot(&png, 100))
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestConsoleInChromium: the console loads without a single browser
// error; its sessions table shows a session an AWS SDK client made; the
// session's page shows a line its agent logs while the page is open; and
// the stop button, once confirmed, ends a session.
func TestConsoleInChromium(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	sid := newSessionID()
	e.echo(sid)

	var table string
	b.run(t, "open the console",
		chromedp.Navigate(e.d.URL()+"/console"),
		chromedp.WaitVisible("#sessions"),
		chromedp.Text("#sessions tbody", &table, chromedp.ByQuery),
	)
	if !strings.Contains(table, sid) || !strings.Contains(table, "echo") {
		t.Fatalf("the sessions table lacks %s of echo:\n%s", sid, table)
	}
	var runtimes string
	b.run(t, "read the runtimes", chromedp.Text("#runtimes tbody", &runtimes, chromedp.ByQuery))
	if !strings.Contains(runtimes, "echo") || !strings.Contains(runtimes, "DEFAULT") {
		t.Fatalf("the runtimes table:\n%s", runtimes)
	}
	var charts int
	b.run(t, "count the charts", chromedp.Evaluate(`document.querySelectorAll("figure.chart svg").length`, &charts))
	if charts != 4 {
		t.Errorf("%d charts, want 4 (calls, errors, latency, active sessions)", charts)
	}
	b.screenshot(t, "console-home.png")

	// The session's page follows its log: a line the agent writes while
	// the page is open appears.
	row := `tr[data-session="` + sid + `"]`
	b.run(t, "open the session",
		chromedp.Click(row+" a", chromedp.ByQuery),
		chromedp.WaitVisible("#log"),
		chromedp.Poll(`document.getElementById("log").textContent.includes("testagent: stdout start")`, nil,
			chromedp.WithPollingTimeout(20*time.Second)),
	)
	if _, err := e.client.StopRuntimeSession(context.Background(), &bedrockagentcore.StopRuntimeSessionInput{
		AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(sid)}); err != nil {
		t.Fatal(err)
	}
	b.run(t, "see the agent's goodbye arrive",
		chromedp.Poll(`document.getElementById("log").textContent.includes("testagent: received SIGTERM")`, nil,
			chromedp.WithPollingTimeout(20*time.Second)))
	b.screenshot(t, "console-session.png")

	// The stop button, confirmed, ends a live session.
	other := newSessionID()
	e.echo(other)
	var state string
	b.run(t, "stop a session from the console",
		chromedp.Navigate(e.d.URL()+"/console?state=live"),
		chromedp.WaitVisible(`tr[data-session="`+other+`"] button.stop`),
		chromedp.Click(`tr[data-session="`+other+`"] button.stop`, chromedp.ByQuery),
		chromedp.WaitVisible("#state"),
		chromedp.Text("#state", &state, chromedp.ByQuery),
	)
	if !strings.HasPrefix(state, "terminated (stopped") {
		t.Errorf("after the stop the page says %q", state)
	}
	recs, _, err := e.d.Store().ListSessions(context.Background(), session.Filter{SessionID: other})
	if err != nil || len(recs) != 1 || recs[0].EndReason != session.EndStopped {
		t.Fatalf("the stopped session's record: %+v, %v", recs, err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) > 0 {
		t.Errorf("the browser reported errors:\n%s", strings.Join(b.errors, "\n"))
	}
}
