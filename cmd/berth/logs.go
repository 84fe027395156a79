package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/spf13/cobra"
)

// logsPoll is how often berth logs -f RUNTIME looks for new sessions.
const logsPoll = time.Second

func newLogs() *cobra.Command {
	var (
		cf     clientFlags
		follow bool
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "logs [-f] RUNTIME|SESSION",
		Short: "Print the agent logs of a runtime's live sessions, or of one session",
		Long: `Print agent logs (stdout and stderr). Given a runtime, print the logs of its
live sessions, each line prefixed by its session ID; with -f keep following
them, and the sessions that start meanwhile, until interrupted. Given a
session (a runtime session ID or an incarnation's ID), print its log; with -f
until it ends.`,
		Example: `  berth logs -f tutorial
  berth logs --tail 20 "$SID"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c := cf.client()
			w := cmd.OutOrStdout()
			live, err := c.ListSessions(ctx, client.SessionFilter{Runtime: args[0], State: "live", Limit: 1000})
			var ae *api.Error
			if errors.As(err, &ae) && ae.Type == api.ErrResourceNotFound {
				// Not a runtime: a session.
				r, err := c.SessionLogs(ctx, args[0], tail, follow)
				if err != nil {
					return err
				}
				defer r.Close()
				if _, err := io.Copy(w, r); err != nil && ctx.Err() == nil {
					return err
				}
				return nil
			}
			if err != nil {
				return err
			}
			t := &runtimeTail{c: c, w: w, follow: follow, seen: map[string]bool{}}
			return t.run(ctx, args[0], live.Sessions, tail)
		},
	}
	cf.register(cmd)
	cmd.ValidArgsFunction = completeFirst(func(cmd *cobra.Command) []cobra.Completion {
		return append(runtimeNames(cmd, &cf), liveSessionIDs(cmd, &cf, "")...)
	})
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing as the logs grow")
	cmd.Flags().IntVar(&tail, "tail", 0, "start each log with its last N lines")
	return cmd
}

// runtimeTail prints the logs of a runtime's sessions, line by line,
// each prefixed by its session ID.
type runtimeTail struct {
	c      *client.Client
	follow bool
	seen   map[string]bool // incarnation IDs being printed; run's goroutine only

	mu sync.Mutex // guards w: whole lines from many sessions
	w  io.Writer
}

func (t *runtimeTail) run(ctx context.Context, runtime string, sessions []api.Session, tail int) error {
	if !t.follow {
		// One after the other, oldest first: the output reads in order.
		for i := len(sessions) - 1; i >= 0; i-- {
			if err := t.print(ctx, sessions[i], tail); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(s api.Session, tail int) {
		t.seen[s.ID] = true
		wg.Go(func() {
			if err := t.print(ctx, s, tail); err != nil && ctx.Err() == nil {
				t.line(s.SessionID, "berth: "+err.Error())
			}
		})
	}
	for i := len(sessions) - 1; i >= 0; i-- {
		start(sessions[i], tail)
	}
	tick := time.NewTicker(logsPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		l, err := t.c.ListSessions(ctx, client.SessionFilter{Runtime: runtime, State: "live", Limit: 1000})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := len(l.Sessions) - 1; i >= 0; i-- {
			if s := l.Sessions[i]; !t.seen[s.ID] {
				start(s, 0) // a new session: all of it
			}
		}
	}
}

// print copies one session's log, prefixing each line.
func (t *runtimeTail) print(ctx context.Context, s api.Session, tail int) error {
	r, err := t.c.SessionLogs(ctx, s.ID, tail, t.follow)
	if err != nil {
		return err
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.line(s.SessionID, sc.Text())
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

func (t *runtimeTail) line(sessionID, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s | %s\n", sessionID, text)
}
