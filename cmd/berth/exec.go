package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/spf13/cobra"
)

// exitCode makes berth exit with a code of its own, having said nothing:
// berth exec's command's.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newExec() *cobra.Command {
	var (
		cf                            clientFlags
		runtime, sessionID, qualifier string
		timeout                       int
	)
	cmd := &cobra.Command{
		Use:   "exec [--runtime] RUNTIME --session ID [flags] -- COMMAND [ARGS...]",
		Short: "Run a command in a session's sandbox (InvokeAgentRuntimeCommand)",
		Long: `Run a command inside a session's sandbox, beside its agent: the same
filesystem, environment and limits, as the sandbox's root, with no stdin. A
session ID with no live session starts one. The command's stdout and stderr
stream to berth's as they are produced, and berth exits with the command's
exit code (124 if it ran past --timeout and was killed).

One word after -- runs as a shell script (bash -c WORD), so pipes and
variables work; several words run as that command with those arguments.`,
		Example: `  berth exec tutorial --session "$SID" -- ls -la /tmp
  berth exec tutorial --session "$SID" -- 'env | sort | head'
  berth exec --runtime tutorial --session "$SID" --timeout 10 -- python3 -V`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash < 0 || dash == len(args) {
				return errors.New("give the command after --: berth exec RUNTIME --session ID -- COMMAND")
			}
			switch {
			case runtime == "" && dash != 1:
				return errors.New("name one runtime before --, or with --runtime")
			case runtime != "" && dash != 0:
				return errors.New("name the runtime once: before -- or with --runtime")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if runtime == "" {
				runtime = args[0]
			}
			words := args[dash:]
			text := words[0]
			if len(words) > 1 {
				text = shellJoin(words)
			}
			out, err := cf.client().Command(cmd.Context(), client.CommandInput{
				Runtime: runtime, Qualifier: qualifier, SessionID: sessionID, Command: text, Timeout: timeout,
			})
			if err != nil {
				return err
			}
			defer out.Body.Close()
			if sessionID == "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "session: %s\n", out.SessionID)
			}
			err = printCommand(cmd.OutOrStdout(), cmd.ErrOrStderr(), out.Body)
			if cmd.Context().Err() != nil {
				// Interrupted: berth killed the command when the request
				// went; exit as a shell does after SIGINT.
				return exitCode(130)
			}
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&runtime, "runtime", "r", "", "runtime name, ID or ARN (or give it before --)")
	cmd.Flags().StringVarP(&sessionID, "session", "s", "", "session ID (33-256 chars); empty starts a new session")
	cmd.Flags().StringVar(&sessionID, "session-id", "", "the same as --session")
	cmd.Flags().StringVarP(&qualifier, "qualifier", "q", "", "endpoint name (default DEFAULT)")
	cmd.Flags().IntVar(&timeout, "timeout", 0, fmt.Sprintf("seconds before berth kills the command (%d-%d; default %d)",
		api.MinCommandTimeout, api.MaxCommandTimeout, api.DefaultCommandTimeout))
	return cmd
}

// printCommand copies a command's output streams to stdout and stderr as
// its events arrive, and returns its exit code as an exitCode (nil for 0).
func printCommand(stdout, stderr io.Writer, body io.Reader) error {
	dec := eventstream.NewDecoder()
	buf := make([]byte, 0, api.MaxCommandEventBytes)
	for {
		m, err := dec.Decode(body, buf)
		if errors.Is(err, io.EOF) {
			return errors.New("the command's stream ended before the command did")
		}
		if err != nil {
			return fmt.Errorf("read the command's stream: %w", err)
		}
		if m.Headers.Get(api.EventHeaderMessageType).String() == api.MessageTypeException {
			var b api.ErrorBody
			json.Unmarshal(m.Payload, &b)
			t := api.ErrorTypeOfStream(m.Headers.Get(api.EventHeaderExceptionType).String())
			return &api.Error{Type: t, Message: b.Message, StatusCode: t.StatusCode()}
		}
		var c api.CommandChunk
		if err := json.Unmarshal(m.Payload, &c); err != nil {
			return fmt.Errorf("read the command's stream: %w", err)
		}
		switch {
		case c.ContentDelta != nil:
			if _, err := io.WriteString(stdout, c.ContentDelta.Stdout); err != nil {
				return err
			}
			if _, err := io.WriteString(stderr, c.ContentDelta.Stderr); err != nil {
				return err
			}
		case c.ContentStop != nil:
			if c.ContentStop.Status == api.CommandTimedOut {
				fmt.Fprintln(stderr, "berth: the command timed out and was killed")
			}
			if c.ContentStop.ExitCode == 0 {
				return nil
			}
			return exitCode(c.ContentStop.ExitCode)
		}
	}
}

// shellJoin quotes words for bash, so each reaches the command as it was.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
