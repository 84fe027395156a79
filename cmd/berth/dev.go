package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/spf13/cobra"
)

// devPoll is how often berth dev looks for changed files: polling the
// agent's directory needs no watcher API and is cheap at a project's size.
const devPoll = 500 * time.Millisecond

func newDev() *cobra.Command {
	var cfgPath, listen, build string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Serve berth.yaml's agents, rebuilding them as their files change",
		Long: `Serve the runtimes of a config file (default berth.yaml) on loopback, and watch
their working directories. When a file changes, berth dev runs the build
step, if there is one (--build, or "go build" for a Go module whose command
is a binary in it, as berth init writes), and says so: new sessions start
the new code, while live sessions keep the code they started with until
they end or you stop them; berth dev lists them rather than kill them.`,
		Example: `  berth init --lang go myagent && cd myagent && berth dev`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			cfg.Listen = listen
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			steps := devBuilds(cfg, build)
			for _, s := range steps {
				if err := s.run(cmd.Context(), out); err != nil {
					return err
				}
			}
			log, err := newLogger(errOut, "", slog.LevelInfo)
			if err != nil {
				return err
			}
			d, err := daemon.Start(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "berth listening on %s (dev: watching %d director%s)\n", d.URL(), len(steps), map[bool]string{true: "y", false: "ies"}[len(steps) == 1])
			c := &client.Client{Endpoint: d.URL()}
			watchDone := make(chan struct{})
			go func() { // owned here: waited for below
				defer close(watchDone)
				devWatch(cmd.Context(), out, c, steps)
			}()
			select {
			case <-cmd.Context().Done():
			case err = <-d.Err():
			}
			<-watchDone
			cerr := d.Close(context.WithoutCancel(cmd.Context()))
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			return cerr
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "berth.yaml", "config file declaring the runtimes")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8787", "listen address")
	cmd.Flags().StringVar(&build, "build", "", "shell command that builds the agents after a change (run in each runtime's workdir)")
	return cmd
}

// devStep is one runtime's watched directory and how to rebuild it.
type devStep struct {
	runtime, dir string
	build        []string // nil: nothing to build
	output       string   // the build's output, not a change of its own
}

func (s devStep) run(ctx context.Context, out io.Writer) error {
	if s.build == nil {
		return nil
	}
	fmt.Fprintf(out, "%s: %s\n", s.runtime, strings.Join(s.build, " "))
	c := exec.CommandContext(ctx, s.build[0], s.build[1:]...)
	c.Dir = s.dir
	if b, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", s.runtime, err, b)
	}
	return nil
}

// devBuilds picks each runtime's build step.
func devBuilds(cfg config.Config, build string) []devStep {
	var steps []devStep
	for _, rt := range cfg.Runtimes {
		if rt.Workdir == "" {
			continue
		}
		s := devStep{runtime: rt.Name, dir: rt.Workdir}
		bin := ""
		if len(rt.Command) > 0 && strings.HasPrefix(rt.Command[0], "./") {
			bin = filepath.Join(rt.Workdir, rt.Command[0])
		}
		switch {
		case build != "":
			s.build = []string{"sh", "-c", build}
		case bin != "" && fileExists(filepath.Join(rt.Workdir, "go.mod")):
			s.build = []string{"go", "build", "-o", rt.Command[0], "."}
		}
		s.output = bin
		steps = append(steps, s)
	}
	return steps
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// devWatch polls the steps' directories until ctx ends; a change
// rebuilds and reports.
func devWatch(ctx context.Context, out io.Writer, c *client.Client, steps []devStep) {
	last := make([]string, len(steps))
	for i, s := range steps {
		last[i] = treeState(s)
	}
	t := time.NewTicker(devPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, s := range steps {
			now := treeState(s)
			if now == last[i] {
				continue
			}
			if err := s.run(ctx, out); err != nil {
				fmt.Fprintf(out, "%s: the build failed; sessions keep the previous code:\n%v\n", s.runtime, err)
				last[i] = treeState(s)
				continue
			}
			last[i] = treeState(s) // the build's own output is not a change
			fmt.Fprintf(out, "%s: code changed; new sessions run it\n", s.runtime)
			l, err := c.ListSessions(ctx, client.SessionFilter{Runtime: s.runtime, State: "live", Limit: 1000})
			if err != nil || len(l.Sessions) == 0 {
				continue
			}
			fmt.Fprintf(out, "%s: %d live session(s) keep the code they started with until they end:\n", s.runtime, len(l.Sessions))
			for _, ss := range l.Sessions {
				fmt.Fprintf(out, "  berth sessions stop %s\n", ss.SessionID)
			}
		}
	}
}

// treeState sums up a directory's files (name, size, time) so a change
// shows; it skips hidden directories (.git, berth's .berth), node_modules
// and the build's output.
func treeState(s devStep) string {
	var b strings.Builder
	filepath.WalkDir(s.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() && p != s.dir && (strings.HasPrefix(e.Name(), ".") || e.Name() == "node_modules" || e.Name() == "__pycache__") {
			return filepath.SkipDir
		}
		if e.IsDir() || p == s.output {
			return nil
		}
		if info, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}
