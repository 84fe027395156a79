package daemon_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
)

// commandRun is what one InvokeAgentRuntimeCommand streamed back.
type commandRun struct {
	// deltas are the output events in order, "out:" or "err:" and the text.
	deltas         []string
	stdout, stderr string
	started        bool
	exit           int32
	status         types.CommandExecutionStatus
	stopped        bool
	// streamErr is the error the stream ended with (an exception event).
	streamErr error
	// sessionID is the session header berth answered with.
	sessionID string
}

// command runs text in runtime's session through the Go SDK and reads the
// whole event stream; each chunk must carry exactly one member, in order.
// The SDK reports an error answer (before the stream) through the stream:
// command returns it as its error, and an exception event in streamErr.
func (e *env) command(ctx context.Context, runtime, sid, text string, timeout int32) (commandRun, error) {
	return e.commandOn(ctx, e.arn(runtime), sid, text, timeout)
}

func (e *env) commandOn(ctx context.Context, arn, sid, text string, timeout int32) (commandRun, error) {
	in := &bedrockagentcore.InvokeAgentRuntimeCommandInput{
		AgentRuntimeArn: aws.String(arn),
		Accept:          aws.String(api.ContentTypeEventStream),
		ContentType:     aws.String("application/json"),
		Body:            &types.InvokeAgentRuntimeCommandRequestBody{Command: aws.String(text)},
	}
	if timeout != 0 {
		in.Body.Timeout = aws.Int32(timeout)
	}
	if sid != "" {
		in.RuntimeSessionId = aws.String(sid)
	}
	out, err := e.client.InvokeAgentRuntimeCommand(ctx, in)
	if err != nil {
		return commandRun{}, err
	}
	var run commandRun
	stream := out.GetStream()
	defer stream.Close()
	reply := <-out.GetInitialReply()
	if raw, ok := awsmiddleware.GetRawResponse(reply.ResultMetadata).(*smithyhttp.Response); ok && raw.StatusCode == 200 {
		run.sessionID = raw.Header.Get(api.HeaderSessionID)
		if ct := raw.Header.Get("Content-Type"); ct != api.ContentTypeEventStream {
			e.t.Errorf("Content-Type %q, want %q", ct, api.ContentTypeEventStream)
		}
	} else {
		for range stream.Events() {
			e.t.Error("events after an error answer")
		}
		return run, stream.Err()
	}
	for ev := range stream.Events() {
		c, ok := ev.(*types.InvokeAgentRuntimeCommandStreamOutputMemberChunk)
		if !ok {
			e.t.Fatalf("event %T, want a chunk", ev)
		}
		v := c.Value
		members := 0
		if v.ContentStart != nil {
			members++
			if run.started || len(run.deltas) > 0 || run.stopped {
				e.t.Errorf("contentStart after other events")
			}
			run.started = true
		}
		if d := v.ContentDelta; d != nil {
			members++
			if !run.started || run.stopped {
				e.t.Errorf("contentDelta outside contentStart…contentStop")
			}
			if (d.Stdout == nil) == (d.Stderr == nil) {
				e.t.Errorf("contentDelta with stdout %v and stderr %v: want exactly one", d.Stdout, d.Stderr)
			}
			if d.Stdout != nil {
				run.stdout += *d.Stdout
				run.deltas = append(run.deltas, "out:"+*d.Stdout)
			}
			if d.Stderr != nil {
				run.stderr += *d.Stderr
				run.deltas = append(run.deltas, "err:"+*d.Stderr)
			}
		}
		if s := v.ContentStop; s != nil {
			members++
			if !run.started || run.stopped {
				e.t.Errorf("contentStop out of order")
			}
			run.stopped, run.exit, run.status = true, aws.ToInt32(s.ExitCode), s.Status
		}
		if members != 1 {
			e.t.Errorf("a chunk with %d members, want 1", members)
		}
	}
	run.streamErr = stream.Err()
	return run, nil
}

func withCommandRuntimes(c *config.Config) {
	off := false
	base := c.Runtimes[0]
	nocmd := base
	nocmd.Name, nocmd.Settings.Commands = "nocommands", &off
	c.Runtimes = append(c.Runtimes, nocmd)
}

func TestCommandThroughGoSDK(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		sid := newSessionID()

		// A command on a new session starts it; the agent's environment
		// and working directory are the command's.
		run, err := e.command(context.Background(), "echo", sid, `echo "token=$BERTH_WIRE_TOKEN"; echo oops >&2; exit 7`, 0)
		if err != nil {
			t.Fatal(err)
		}
		if run.streamErr != nil || !run.stopped || run.exit != 7 || run.status != types.CommandExecutionStatusCompleted {
			t.Fatalf("stream %+v", run)
		}
		if run.stdout != "token="+e.token+"\n" || run.stderr != "oops\n" {
			t.Fatalf("stdout %q, stderr %q", run.stdout, run.stderr)
		}
		if run.sessionID != sid {
			t.Fatalf("session header %q, want %q", run.sessionID, sid)
		}
		// The command's text, not its output, is in the session's log.
		var logText string
		for _, in := range e.d.Sessions().Live() {
			if in.SessionID == sid {
				b, _ := os.ReadFile(e.d.Sessions().LogPath(in.RuntimeID, in.ID))
				logText = string(b)
			}
		}
		if !strings.Contains(logText, `echo \"token=$BERTH_WIRE_TOKEN\"`) || strings.Contains(logText, e.token) {
			t.Fatalf("session log %q: want the command's text and not its output", logText)
		}
		// The invocation that follows finds the session the command started.
		base := e.agents()
		if r := e.echo(sid); r.Invocations != 1 {
			t.Fatalf("the agent counted %d invocations, want 1: the command must not start another sandbox", r.Invocations)
		}
		if n := e.agents(); n != base {
			t.Fatalf("%d agent processes after the invocation, %d before", n, base)
		}

		// Output is interleaved as it is produced.
		run, err = e.command(context.Background(), "echo", sid,
			`for i in 1 2 3; do echo o$i; sleep 0.2; echo e$i >&2; sleep 0.2; done`, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"out:o1\n", "err:e1\n", "out:o2\n", "err:e2\n", "out:o3\n", "err:e3\n"}
		if strings.Join(run.deltas, "|") != strings.Join(want, "|") || run.exit != 0 {
			t.Fatalf("deltas %q (exit %d), want %q", run.deltas, run.exit, want)
		}

		// The timeout kills the command's whole tree, and says so.
		start := time.Now()
		run, err = e.command(context.Background(), "echo", sid, `echo before; (sleep 60; echo never) & sleep 60`, 1)
		if err != nil {
			t.Fatal(err)
		}
		if run.status != types.CommandExecutionStatusTimedOut || run.exit != api.ExitCodeTimedOut || run.stdout != "before\n" {
			t.Fatalf("timed-out command: %+v", run)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Fatalf("a 1 s timeout took %s", took)
		}
		e.waitAgents(base)

		// Large output arrives whole, in events under the cap.
		run, err = e.command(context.Background(), "echo", sid, `head -c 1000000 /dev/zero | tr '\0' x`, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(run.stdout) != 1_000_000 || strings.Trim(run.stdout, "x") != "" || len(run.deltas) < 1_000_000/(api.MaxCommandEventBytes) {
			t.Fatalf("%d bytes in %d events", len(run.stdout), len(run.deltas))
		}
	})
}

func TestCommandClientCancelKillsTree(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		e := newEnv(t, withBackend(backend))
		sid := newSessionID()
		e.echo(sid)
		base := e.agents()

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out, err := e.client.InvokeAgentRuntimeCommand(ctx, &bedrockagentcore.InvokeAgentRuntimeCommandInput{
			AgentRuntimeArn:  aws.String(e.arn("echo")),
			RuntimeSessionId: aws.String(sid),
			Body: &types.InvokeAgentRuntimeCommandRequestBody{
				Command: aws.String(`echo started; (sleep 300) & (setsid sleep 300 &) ; sleep 300`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		stream := out.GetStream()
		// Output streams before the command ends: wait for its first line.
		for ev := range stream.Events() {
			if d := ev.(*types.InvokeAgentRuntimeCommandStreamOutputMemberChunk).Value.ContentDelta; d != nil {
				if aws.ToString(d.Stdout) != "started\n" {
					t.Fatalf("first output %q", aws.ToString(d.Stdout))
				}
				break
			}
		}
		// The command's processes show up (one may be mid-exec, its
		// environment unreadable for a moment).
		deadline := time.Now().Add(10 * time.Second)
		for e.agents() <= base {
			if time.Now().After(deadline) {
				t.Fatalf("%d processes while the command runs, %d before it", e.agents(), base)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		stream.Close()
		e.waitAgents(base)
		// The session lives on.
		if r := e.echo(sid); r.Invocations != 2 {
			t.Fatalf("the agent counted %d invocations, want 2", r.Invocations)
		}
	})
}

func TestCommandErrors(t *testing.T) {
	e := newEnv(t, withCommandRuntimes)
	ctx := context.Background()
	sid := newSessionID()
	for _, c := range []struct {
		name, runtime, command string
		timeout                int32
		code                   string
		status                 int
	}{
		{"unknown runtime", "", "true", 0, "ResourceNotFoundException", 404},
		{"empty command", "echo", "", 0, "ValidationException", 400},
		{"oversize command", "echo", strings.Repeat("é", api.MaxCommandLen+1), 0, "ValidationException", 400},
		{"timeout too long", "echo", "true", api.MaxCommandTimeout + 1, "ValidationException", 400},
		{"timeout too short", "echo", "true", -1, "ValidationException", 400},
		{"commands off", "nocommands", "true", 0, "AccessDeniedException", 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			arn := "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/nosuch-0123456789"
			if c.runtime != "" {
				arn = e.arn(c.runtime)
			}
			_, err := e.commandOn(ctx, arn, sid, c.command, c.timeout)
			wantAPIError(t, err, c.code, c.status)
		})
	}
	// A command at the limit is accepted.
	run, err := e.command(ctx, "echo", sid, "true #"+strings.Repeat("é", api.MaxCommandLen-6), 0)
	if err != nil || run.exit != 0 || !run.stopped {
		t.Fatalf("a command of %d characters: %+v, %v", api.MaxCommandLen, run, err)
	}
}

func TestCommandDisabledRuntimeStartsNothing(t *testing.T) {
	e := newEnv(t, withCommandRuntimes, func(c *config.Config) {
		for i := range c.Runtimes {
			c.Runtimes[i].Sandbox = registry.BackendProcess
		}
	})
	_, err := e.command(context.Background(), "nocommands", newSessionID(), "true", 0)
	wantAPIError(t, err, "AccessDeniedException", 403)
	if n := e.agents(); n != 0 {
		t.Fatalf("%d agent processes: a refused command started a session", n)
	}
}

func TestCommandSessionStoppedMidStream(t *testing.T) {
	e := newEnv(t)
	sid := newSessionID()
	got := make(chan commandRun, 1)
	go func() {
		run, err := e.command(context.Background(), "echo", sid, "echo up; sleep 60", 0)
		if err != nil {
			t.Error(err)
		}
		got <- run
	}()
	// Wait for the command to run: its session is then live.
	deadline := time.Now().Add(10 * time.Second)
	for e.agents() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := e.client.StopRuntimeSession(context.Background(), &bedrockagentcore.StopRuntimeSessionInput{
		AgentRuntimeArn: aws.String(e.arn("echo")), RuntimeSessionId: aws.String(sid)})
	if err != nil {
		t.Fatal(err)
	}
	run := <-got
	var rce *types.RuntimeClientError
	if !errors.As(run.streamErr, &rce) || run.stopped || run.stdout != "up\n" {
		t.Fatalf("a command whose session stopped: %+v; want its output, then a runtimeClientError exception", run)
	}
	e.waitAgents(0)
}
