package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/spf13/cobra"
)

func newSessions() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List, inspect, stop and tail sessions (berth's API; AgentCore has none)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newSessionsList(), newSessionsShow(), newSessionsStop(), newSessionsLogs())
	return cmd
}

func newSessionsList() *cobra.Command {
	var (
		of            outputFlags
		f             client.SessionFilter
		after, before string
		all, quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sessions, newest first",
		Long: `List session incarnations, newest first. SESSION is the runtime session ID
(what invoke prints and --session takes); every sessions command accepts it,
or the incarnation's ID (the last column) for one that ended and came back.`,
		Example: `  berth sessions list --state live
  berth sessions list --runtime tutorial --user alice --json
  berth sessions list -q --state live | xargs -n1 berth sessions stop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, b := range []struct {
				flag string
				dst  *time.Time
			}{{after, &f.CreatedAfter}, {before, &f.CreatedBefore}} {
				if b.flag == "" {
					continue
				}
				t, err := parseWhen(b.flag)
				if err != nil {
					return err
				}
				*b.dst = t
			}
			c := of.client()
			var sessions []api.Session
			for {
				page, err := c.ListSessions(cmd.Context(), f)
				if err != nil {
					return err
				}
				sessions = append(sessions, page.Sessions...)
				if !all || page.NextCursor == "" {
					f.Cursor = page.NextCursor
					break
				}
				f.Cursor = page.NextCursor
			}
			w := cmd.OutOrStdout()
			if of.structured() {
				return of.print(w, api.SessionList{Sessions: sessions, NextCursor: f.Cursor})
			}
			if quiet {
				for _, s := range sessions {
					fmt.Fprintln(w, s.ID)
				}
				return nil
			}
			// IDs are printed whole: they are there to be copied.
			tw := table(w, "SESSION", "RUNTIME", "ENDPOINT", "VERSION", "USER", "STATE", "CALLS", "CREATED", "LAST ACTIVE", "ID")
			for _, s := range sessions {
				state := s.State
				if s.EndReason != "" {
					state += " (" + s.EndReason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", s.SessionID, s.Runtime, s.Endpoint,
					s.Version, dash(s.UserID), state, s.Invocations, when(s.CreatedAt), when(s.LastActiveAt), s.ID)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if f.Cursor != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s (or --all)\n", f.Cursor)
			}
			return nil
		},
	}
	of.register(cmd)
	cmd.Flags().StringVarP(&f.Runtime, "runtime", "r", "", "runtime name, ID or ARN")
	completeRuntimeFlag(cmd, &of.clientFlags)
	cmd.Flags().StringVar(&f.Endpoint, "qualifier", "", "endpoint name")
	cmd.Flags().StringVarP(&f.Session, "session", "s", "", "runtime session ID: its incarnations")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the incarnations' IDs")
	cmd.Flags().StringVar(&f.State, "state", "", "live, starting, active, idle or terminated")
	cmd.Flags().StringVarP(&f.User, "user", "u", "", "runtime user ID")
	cmd.Flags().StringVar(&after, "since", "", "created after: RFC 3339 time or a duration ago (1h)")
	cmd.Flags().StringVar(&before, "until", "", "created before: RFC 3339 time or a duration ago")
	cmd.Flags().IntVar(&f.Limit, "limit", 50, "page size")
	cmd.Flags().StringVar(&f.Cursor, "cursor", "", "continue a listing from its cursor")
	cmd.Flags().BoolVar(&all, "all", false, "follow cursors to the end")
	return cmd
}

func parseWhen(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 1h", s)
	}
	return t, nil
}

// sessionRef is how the session commands name a session: a runtime
// session ID or an incarnation's ID, optionally within one runtime.
type sessionRef struct {
	runtime string
}

func (f *sessionRef) register(cmd *cobra.Command, cf *clientFlags) {
	cmd.Flags().StringVarP(&f.runtime, "runtime", "r", "", "the runtime the session ID belongs to (default: whichever used it last)")
	completeRuntimeFlag(cmd, cf)
	cmd.ValidArgsFunction = completeSessionArg(cf)
}

// resolve names the session arg refers to as the server takes it: the
// arg itself, or with --runtime the ID of that runtime's latest
// incarnation of the session ID.
func (f *sessionRef) resolve(ctx context.Context, c *client.Client, arg string) (string, error) {
	if f.runtime == "" {
		return arg, nil
	}
	l, err := c.ListSessions(ctx, client.SessionFilter{Runtime: f.runtime, Session: arg, Limit: 1})
	if err != nil {
		return "", err
	}
	if len(l.Sessions) == 0 {
		return "", fmt.Errorf("runtime %s has no session %s", f.runtime, arg)
	}
	return l.Sessions[0].ID, nil
}

func newSessionsShow() *cobra.Command {
	var (
		of  outputFlags
		ref sessionRef
	)
	cmd := &cobra.Command{
		Use:   "show SESSION",
		Short: "Show a session: state, timestamps, calls, live resource use and its log's tail",
		Long:  "Show a session. SESSION is a runtime session ID (its latest incarnation) or an incarnation's ID.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := of.client()
			id, err := ref.resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			s, err := c.GetSession(cmd.Context(), id)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if of.structured() {
				return of.print(w, s)
			}
			tw := table(w, "FIELD", "VALUE")
			row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
			row("id", s.ID)
			row("runtime", s.Runtime+" ("+s.RuntimeID+")")
			row("endpoint", s.Endpoint)
			row("session", s.SessionID)
			row("version", strconv.Itoa(s.Version))
			row("user", dash(s.UserID))
			row("state", s.State)
			if s.EndReason != "" {
				row("ended", s.EndReason+": "+s.EndDetail)
			}
			row("backend", s.Backend+" "+s.SandboxID)
			if im := s.Image; im != nil {
				v := im.Ref + " " + im.Digest
				if im.Platform != "" {
					v += " (" + im.Platform
					if im.Emulated {
						v += ", emulated under qemu-user"
					}
					v += ")"
				}
				row("image", v)
			}
			row("created", when(s.CreatedAt))
			row("last active", when(s.LastActiveAt))
			row("expires", when(s.ExpiresAt))
			row("ended at", when(s.EndedAt))
			row("calls", strconv.FormatInt(s.Invocations, 10))
			if s.InFlight > 0 || s.Busy {
				row("in flight", fmt.Sprintf("%d (busy: %v)", s.InFlight, s.Busy))
			}
			if u := s.Usage; u != nil {
				row("memory", fmt.Sprintf("%.1f MiB", float64(u.MemoryBytes)/(1<<20)))
				row("cpu", fmt.Sprintf("%.2fs", u.CPUSeconds))
				row("pids", strconv.FormatInt(u.Pids, 10))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(s.LogTail) > 0 {
				fmt.Fprintln(w, "\nlog (tail):")
				fmt.Fprintln(w, "  "+strings.Join(s.LogTail, "\n  "))
			}
			return nil
		},
	}
	of.register(cmd)
	ref.register(cmd, &of.clientFlags)
	return cmd
}

func newSessionsStop() *cobra.Command {
	var (
		of  outputFlags
		ref sessionRef
	)
	cmd := &cobra.Command{
		Use:   "stop SESSION",
		Short: "Stop a live session (for good, durable state included)",
		Long:  "Stop a live session. SESSION is a runtime session ID (its latest incarnation) or an incarnation's ID.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := of.client()
			id, err := ref.resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			s, err := c.StopSessionByID(cmd.Context(), id)
			if err != nil {
				return err
			}
			if of.structured() {
				return of.print(cmd.OutOrStdout(), s)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped session %s of %s (%s)\n", s.SessionID, s.Runtime, s.ID)
			return nil
		},
	}
	of.register(cmd)
	ref.register(cmd, &of.clientFlags)
	return cmd
}

func newSessionsLogs() *cobra.Command {
	var (
		cf     clientFlags
		ref    sessionRef
		follow bool
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "logs SESSION",
		Short: "Print a session's agent log (stdout and stderr)",
		Long: `Print a session's agent log. SESSION is a runtime session ID (its latest
incarnation) or an incarnation's ID. berth logs also tails a whole runtime.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client()
			id, err := ref.resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			r, err := c.SessionLogs(cmd.Context(), id, tail, follow)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(cmd.OutOrStdout(), r)
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	cf.register(cmd)
	ref.register(cmd, &cf)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the session ends")
	cmd.Flags().IntVar(&tail, "tail", 0, "start with the last N lines")
	return cmd
}
