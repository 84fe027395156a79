package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/berth-dev/berth/client"
	"github.com/spf13/cobra"
)

// clientFlags are shared by the client commands.
type clientFlags struct {
	endpoint string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.endpoint, "endpoint", "", "berth server URL (default $BERTH_ENDPOINT or "+client.DefaultEndpoint+")")
}

func (f *clientFlags) client() *client.Client { return &client.Client{Endpoint: f.endpoint} }

func newInvoke() *cobra.Command {
	var (
		cf                                    clientFlags
		runtime, sessionID, qualifier, userID string
		headers                               []string
	)
	cmd := &cobra.Command{
		Use:   "invoke --runtime NAME|ARN [flags] PAYLOAD|-",
		Short: "Invoke an agent runtime (InvokeAgentRuntime)",
		Long: `Invoke an agent runtime. PAYLOAD is the raw request body (usually JSON);
"-" reads it from standard input. SSE responses print event by event as they
arrive. The session ID goes to standard error so you can continue the session
with --session.`,
		Example: `  berth invoke --runtime tutorial '{"prompt": "How much is 2X5?"}'
  berth invoke --runtime tutorial --session "$SID" '{"prompt": "and that plus 34?"}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var payload io.Reader = strings.NewReader(args[0])
			if args[0] == "-" {
				payload = cmd.InOrStdin()
			}
			h := http.Header{}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, ":")
				if !ok {
					return fmt.Errorf("-H %q: want 'Name: value'", kv)
				}
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			out, err := cf.client().Invoke(cmd.Context(), client.InvokeInput{
				Runtime: runtime, Qualifier: qualifier, SessionID: sessionID,
				UserID: userID, Headers: h, Payload: payload,
			})
			if err != nil {
				return err
			}
			defer out.Body.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "session: %s\n", out.SessionID)
			w := cmd.OutOrStdout()
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
	cmd.Flags().StringVarP(&qualifier, "qualifier", "q", "", "endpoint name (default DEFAULT)")
	cmd.Flags().StringVarP(&userID, "user-id", "u", "", "runtime user ID (X-Amzn-Bedrock-AgentCore-Runtime-User-Id)")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "extra header 'Name: value' (repeatable)")
	cmd.MarkFlagRequired("runtime")
	return cmd
}

// printSSE prints each event's data as it arrives.
func printSSE(w io.Writer, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data:"); ok {
			fmt.Fprintln(w, strings.TrimPrefix(data, " "))
			if f, ok := w.(*os.File); ok {
				f.Sync()
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read stream: %w", err)
	}
	return nil
}

func newStopSession() *cobra.Command {
	var (
		cf                            clientFlags
		runtime, sessionID, qualifier string
	)
	cmd := &cobra.Command{
		Use:   "stop-session --runtime NAME|ARN --session ID",
		Short: "Stop a runtime session (StopRuntimeSession)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.client().StopSession(cmd.Context(), runtime, qualifier, sessionID); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped session %s\n", sessionID)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&runtime, "runtime", "r", "", "runtime name, ID or ARN")
	cmd.Flags().StringVarP(&sessionID, "session", "s", "", "session ID")
	cmd.Flags().StringVarP(&qualifier, "qualifier", "q", "", "endpoint name (default DEFAULT)")
	cmd.MarkFlagRequired("runtime")
	cmd.MarkFlagRequired("session")
	return cmd
}
