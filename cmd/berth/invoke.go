package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/coder/websocket"
	"github.com/spf13/cobra"
)

// clientFlags are shared by the client commands.
type clientFlags struct {
	endpoint string
	bearer   string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.endpoint, "endpoint", "", "berth server URL (default $BERTH_ENDPOINT or "+client.DefaultEndpoint+")")
	cmd.Flags().StringVar(&f.bearer, "bearer-token", bearerFromEnv(),
		"send this bearer token (a runtime with a JWT authorizer) instead of signing with AWS credentials (default $BERTH_BEARER_TOKEN)")
}

// client signs its requests with SigV4 from the AWS credential chain, or
// sends the bearer token.
func (f *clientFlags) client() *client.Client {
	return &client.Client{Endpoint: f.endpoint, HTTPClient: httpClient(f.bearer)}
}

// baseURL is the server URL the client commands use.
func (f *clientFlags) baseURL() string {
	for _, u := range []string{f.endpoint, os.Getenv("BERTH_ENDPOINT"), client.DefaultEndpoint} {
		if u != "" {
			return strings.TrimRight(u, "/")
		}
	}
	return client.DefaultEndpoint
}

func newInvoke() *cobra.Command {
	var (
		cf                                    clientFlags
		runtime, sessionID, qualifier, userID string
		headers                               []string
		ws, quiet, raw                        bool
		output                                string
	)
	cmd := &cobra.Command{
		Use:   "invoke --runtime NAME|ARN [flags] PAYLOAD|-",
		Short: "Invoke an agent runtime (InvokeAgentRuntime)",
		Long: `Invoke an agent runtime. PAYLOAD is the request body, JSON; "@FILE" reads
it from a file and "-" from standard input. A payload that is not JSON is
refused here unless --raw sends it as it is. SSE responses print event by
event as they arrive. The session ID goes to standard error so you can
continue the session with --session; --session last continues the last
session this command started or continued on the runtime (remembered per
server and runtime in your cache directory). -o json prints one JSON object
instead: the session ID, the status, the content type and the body.

With --ws, connect to the runtime's WebSocket (/runtimes/{arn}/ws) instead:
PAYLOAD goes out as one text message, and each message from the agent prints
as it arrives (text with a newline after it, binary as raw bytes) until the
agent closes the socket. Interrupt to close it yourself.`,
		Example: `  berth invoke --runtime tutorial '{"prompt": "How much is 2X5?"}'
  berth invoke --runtime tutorial --session last '{"prompt": "and that plus 34?"}'
  berth invoke --runtime tutorial @prompt.json -o json
  berth invoke --ws --runtime voice '{"prompt": "hello"}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			payload, err := readPayload(cmd.InOrStdin(), args[0], raw)
			if err != nil {
				return err
			}
			last := lastSessions{key: cf.baseURL() + " " + runtime}
			if sessionID == "last" {
				if sessionID = last.get(); sessionID == "" {
					return fmt.Errorf("--session last: no session of %s remembered; start one without --session", runtime)
				}
			}
			h := http.Header{}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, ":")
				if !ok {
					return fmt.Errorf("-H %q: want 'Name: value'", kv)
				}
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			in := client.InvokeInput{
				Runtime: runtime, Qualifier: qualifier, SessionID: sessionID,
				UserID: userID, Headers: h, Payload: payload,
			}
			if ws {
				return invokeWS(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cf.baseURL(), httpClient(cf.bearer), in)
			}
			// A new session may take a while to start (a cold start).
			stop := progress(cmd.ErrOrStderr(), !quiet && isTerminal(cmd.ErrOrStderr()), "waiting for "+runtime)
			if in.SessionID == "" {
				in.SessionID = client.NewSessionID() // to name it if it fails to start
			}
			c := cf.client()
			out, err := c.Invoke(cmd.Context(), in)
			stop()
			if err != nil {
				return explainStartFailure(cmd.Context(), c, runtime, in.SessionID, err)
			}
			defer out.Body.Close()
			last.set(out.SessionID)
			w := cmd.OutOrStdout()
			if output == "json" {
				return printEnvelope(w, out)
			}
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "session: %s\n", out.SessionID)
			}
			if strings.HasPrefix(out.ContentType, "text/event-stream") {
				return printSSE(w, out.Body)
			}
			if _, err := io.Copy(w, out.Body); err != nil {
				return fmt.Errorf("read response: %w", err)
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&runtime, "runtime", "r", "", "runtime name, ID or ARN")
	cmd.Flags().StringVarP(&sessionID, "session", "s", "", "session ID to continue (33-256 chars); empty starts a new session")
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "endpoint name (default DEFAULT)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the agent's answer: no session ID, no progress")
	cmd.Flags().StringVarP(&userID, "user-id", "u", "", "runtime user ID (X-Amzn-Bedrock-AgentCore-Runtime-User-Id)")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "extra header 'Name: value' (repeatable)")
	cmd.Flags().BoolVar(&ws, "ws", false, "talk to the runtime over its WebSocket (/ws) instead of /invocations")
	cmd.Flags().BoolVar(&raw, "raw", false, "send the payload as it is, JSON or not")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (the agent's answer as it comes) or json (an envelope with the session ID and status)")
	cmd.MarkFlagRequired("runtime")
	completeRuntimeFlag(cmd, &cf)
	cmd.RegisterFlagCompletionFunc("session", func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		rt, _ := cmd.Flags().GetString("runtime")
		return liveSessionIDs(cmd, &cf, rt), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// readPayload is the body PAYLOAD names: itself, "@FILE" or "-" (stdin).
// Unless raw, it must be JSON: a shell's quoting mistake is caught here,
// not by the agent.
func readPayload(stdin io.Reader, arg string, raw bool) (io.Reader, error) {
	var src io.Reader = strings.NewReader(arg)
	switch {
	case arg == "-":
		src = stdin
	case strings.HasPrefix(arg, "@"):
		f, err := os.Open(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		defer f.Close()
		src = f
	}
	if raw && arg == "-" {
		return src, nil // streams
	}
	data, err := io.ReadAll(src)
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	if !raw && !json.Valid(data) {
		return nil, fmt.Errorf("the payload is not JSON (%.60q); fix it, or send it as it is with --raw", data)
	}
	return bytes.NewReader(data), nil
}

// printEnvelope prints the answer as one JSON object. A JSON body stays
// JSON; an SSE stream becomes its events' data; anything else a string.
func printEnvelope(w io.Writer, out *client.InvokeOutput) error {
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	env := struct {
		SessionID   string `json:"sessionId"`
		StatusCode  int    `json:"statusCode"`
		ContentType string `json:"contentType"`
		Body        any    `json:"body,omitempty"`
		Events      []any  `json:"events,omitempty"`
	}{SessionID: out.SessionID, StatusCode: out.StatusCode, ContentType: out.ContentType}
	asJSON := func(b []byte) any {
		if json.Valid(b) {
			return json.RawMessage(b)
		}
		return string(b)
	}
	if strings.HasPrefix(out.ContentType, "text/event-stream") {
		env.Events = []any{}
		for line := range strings.Lines(string(data)) {
			if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:"); ok {
				env.Events = append(env.Events, asJSON([]byte(strings.TrimPrefix(d, " "))))
			}
		}
	} else if len(data) > 0 {
		env.Body = asJSON(data)
	}
	return printJSON(w, env)
}

// lastSessions remembers, per server and runtime, the last session invoke
// used, for --session last. A failure to read or write it only loses the
// memory.
type lastSessions struct {
	key string
}

func (l lastSessions) path() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "berth", "last-sessions.json")
}

func (l lastSessions) load() map[string]string {
	m := map[string]string{}
	if p := l.path(); p != "" {
		if data, err := os.ReadFile(p); err == nil {
			json.Unmarshal(data, &m)
		}
	}
	return m
}

func (l lastSessions) get() string { return l.load()[l.key] }

func (l lastSessions) set(sessionID string) {
	p := l.path()
	if p == "" {
		return
	}
	m := l.load()
	if m[l.key] == sessionID {
		return
	}
	m[l.key] = sessionID
	data, _ := json.Marshal(m)
	if os.MkdirAll(filepath.Dir(p), 0o700) == nil {
		os.WriteFile(p, data, 0o600)
	}
}

// printSSE prints each event's data as it arrives.
func printSSE(w io.Writer, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data:"); ok {
			// Unbuffered: each event reaches the terminal or pipe as it comes.
			fmt.Fprintln(w, strings.TrimPrefix(data, " "))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read stream: %w", err)
	}
	return nil
}

// invokeWS sends the payload over the runtime's WebSocket and prints what
// comes back until the agent closes the socket.
func invokeWS(ctx context.Context, stdout, stderr io.Writer, base string, hc *http.Client, in client.InvokeInput) error {
	payload, err := io.ReadAll(in.Payload)
	if err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", base, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return fmt.Errorf("endpoint %q: want an http or https URL", base)
	}
	// The runtime (often an ARN, with a "/") is one escaped path segment.
	prefix := strings.TrimRight(u.Path, "/")
	u.Path = prefix + "/runtimes/" + in.Runtime + "/ws"
	u.RawPath = prefix + "/runtimes/" + url.PathEscape(in.Runtime) + "/ws"
	if in.Qualifier != "" {
		u.RawQuery = url.Values{"qualifier": {in.Qualifier}}.Encode()
	}
	if in.SessionID == "" {
		in.SessionID = client.NewSessionID()
	}
	h := in.Headers.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(api.HeaderSessionID, in.SessionID)
	if in.UserID != "" {
		h.Set(api.HeaderUserID, in.UserID)
	}

	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: h, HTTPClient: hc})
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			return wsRefusal(resp)
		}
		return fmt.Errorf("connect to %s: %w", u.Redacted(), err)
	}
	defer c.CloseNow()
	c.SetReadLimit(api.MaxPayloadBytes)
	sid := resp.Header.Get(api.HeaderSessionID)
	if sid == "" {
		sid = in.SessionID
	}
	fmt.Fprintf(stderr, "session: %s\n", sid)

	if err := c.Write(ctx, websocket.MessageText, payload); err != nil {
		return fmt.Errorf("send payload: %w", err)
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			switch {
			case ctx.Err() != nil:
				c.Close(websocket.StatusNormalClosure, "")
				return nil
			case errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure:
				return nil
			case errors.As(err, &ce):
				return fmt.Errorf("the socket closed with %d %s", int(ce.Code), ce.Reason)
			default:
				return fmt.Errorf("read from the socket: %w", err)
			}
		}
		if typ == websocket.MessageText {
			data = append(data, '\n')
		}
		if _, err := stdout.Write(data); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
}

// wsRefusal turns a refused upgrade into the AgentCore error it carries.
func wsRefusal(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var b api.ErrorBody
	json.Unmarshal(data, &b)
	t := resp.Header.Get(api.HeaderErrorType)
	if t == "" {
		t = string(api.ErrInternalServer)
	}
	if b.Message == "" {
		b.Message = strings.TrimSpace(string(data))
	}
	return &api.Error{Type: api.SanitizeErrorType(t), Message: b.Message,
		StatusCode: resp.StatusCode, RequestID: resp.Header.Get(api.HeaderAWSRequestID)}
}

func newStopSession() *cobra.Command {
	var (
		cf                            clientFlags
		runtime, sessionID, qualifier string
		quiet                         bool
	)
	cmd := &cobra.Command{
		Use:   "stop-session --runtime NAME|ARN --session ID",
		Short: "Stop a runtime session (StopRuntimeSession)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.client().StopSession(cmd.Context(), runtime, qualifier, sessionID); err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintf(cmd.OutOrStdout(), "stopped session %s\n", sessionID)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&runtime, "runtime", "r", "", "runtime name, ID or ARN")
	cmd.Flags().StringVarP(&sessionID, "session", "s", "", "session ID")
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "endpoint name (default DEFAULT)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on success")
	cmd.MarkFlagRequired("runtime")
	completeRuntimeFlag(cmd, &cf)
	cmd.RegisterFlagCompletionFunc("session", func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		rt, _ := cmd.Flags().GetString("runtime")
		return liveSessionIDs(cmd, &cf, rt), cobra.ShellCompDirectiveNoFileComp
	})
	cmd.MarkFlagRequired("session")
	return cmd
}

// startFailure is a session that did not start, with what the caller may
// read of why: the command, its directory and the end of the agent's log.
type startFailure struct {
	err    error
	detail string
}

func (e *startFailure) Error() string { return e.err.Error() + "\n" + e.detail }
func (e *startFailure) Unwrap() error { return e.err }

// startFailureLines is how much of a failed agent's log invoke shows.
const startFailureLines = 10

// explainStartFailure adds, to an agent's failure to start, what the
// caller is allowed to read of it (admins: the command; the session's
// owner: its log). Anything it cannot read is left out.
func explainStartFailure(ctx context.Context, c *client.Client, runtime, sessionID string, err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Type != api.ErrRuntimeClient || !strings.Contains(ae.Message, "agent failed to start") {
		return err
	}
	var b strings.Builder
	if rt, rerr := c.GetRuntime(ctx, runtime, ""); rerr == nil && len(rt.BerthCommand) > 0 {
		fmt.Fprintf(&b, "  command: %s\n  in:      %s\n", strings.Join(rt.BerthCommand, " "), dash(rt.BerthWorkdir))
	}
	if s, serr := c.GetSession(ctx, sessionID); serr == nil && len(s.LogTail) > 0 {
		tail := s.LogTail[max(0, len(s.LogTail)-startFailureLines):]
		fmt.Fprintf(&b, "  the agent's log ends:\n    %s\n", strings.Join(tail, "\n    "))
	}
	if b.Len() == 0 {
		return err
	}
	return &startFailure{err: err, detail: b.String()}
}
