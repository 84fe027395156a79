package main

import (
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
		all           bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sessions, newest first",
		Example: `  berth sessions list --state live
  berth sessions list --runtime tutorial --user alice --json`,
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
			if of.json {
				return printJSON(w, api.SessionList{Sessions: sessions, NextCursor: f.Cursor})
			}
			tw := table(w, "ID", "RUNTIME", "SESSION", "VERSION", "USER", "STATE", "CALLS", "CREATED", "LAST ACTIVE")
			for _, s := range sessions {
				state := s.State
				if s.EndReason != "" {
					state += " (" + s.EndReason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", s.ID, s.RuntimeID, shorten(s.SessionID, 40),
					s.Version, dash(s.UserID), state, s.Invocations, when(s.CreatedAt), when(s.LastActiveAt))
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
	cmd.Flags().StringVarP(&f.Endpoint, "qualifier", "q", "", "endpoint name")
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

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func newSessionsShow() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a session: state, timestamps, calls, live resource use and its log's tail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := of.client().GetSession(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if of.json {
				return printJSON(w, s)
			}
			tw := table(w, "FIELD", "VALUE")
			row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
			row("id", s.ID)
			row("runtime", s.RuntimeID)
			row("endpoint", s.Endpoint)
			row("session", s.SessionID)
			row("version", strconv.Itoa(s.Version))
			row("user", dash(s.UserID))
			row("state", s.State)
			if s.EndReason != "" {
				row("ended", s.EndReason+": "+s.EndDetail)
			}
			row("backend", s.Backend+" "+s.SandboxID)
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
	return cmd
}

func newSessionsStop() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a live session by its ID (for good, durable state included)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := of.client().StopSessionByID(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if of.json {
				return printJSON(cmd.OutOrStdout(), s)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped %s (session %s)\n", s.ID, s.SessionID)
			return nil
		},
	}
	of.register(cmd)
	return cmd
}

func newSessionsLogs() *cobra.Command {
	var (
		cf     clientFlags
		follow bool
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a session's agent log (stdout and stderr)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := cf.client().SessionLogs(cmd.Context(), args[0], tail, follow)
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
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the session ends")
	cmd.Flags().IntVar(&tail, "tail", 0, "start with the last N lines")
	return cmd
}
