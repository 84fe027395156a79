package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/spf13/cobra"
)

func newServe() *cobra.Command {
	var (
		cfgPath, listen, dataDir, logLevel string
		logFormat                          string
		insecureNoAuth, initCredentials    bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the berth server",
		Long: `Run the berth server: the AgentCore data plane (InvokeAgentRuntime,
StopRuntimeSession) for the runtimes declared in --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Default()
			if cfgPath != "" {
				var err error
				if cfg, err = config.Load(cfgPath); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			if cmd.Flags().Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			cfg.InsecureNoAuth = insecureNoAuth
			var created *auth.Key
			if initCredentials {
				var err error
				if created, err = initAuth(&cfg); err != nil {
					return err
				}
			}
			if insecureNoAuth && cfg.Auth == nil && !config.LoopbackListen(cfg.Listen) {
				fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: --insecure-no-auth: %s serves WITHOUT AUTHENTICATION; anyone who reaches it can run code as this user\n", cfg.Listen)
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log, err := newLogger(cmd.ErrOrStderr(), logFormat, lvl)
			if err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				// berth's live heap is small (tens of MB for a thousand
				// sessions) while every proxied call allocates: a higher
				// GC target buys about a quarter more throughput for a few
				// MB. GOGC in the environment overrides it.
				debug.SetGCPercent(400)
			}
			d, err := daemon.Start(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "berth listening on %s\n", d.URL())
			for _, rt := range d.Runtimes() {
				fmt.Fprintf(out, "  runtime %-20s %s\n", rt.Name, rt.ARN)
			}
			if created != nil {
				fmt.Fprintf(out, "created principal %s (an admin) in %s; export these to call berth with it:\n", created.Name, cfg.Auth.CredentialsFile)
				scheme, _, _ := strings.Cut(d.URL(), "://")
				printExports(out, *created, cfg.Region, reachable(scheme, d.Addr()))
			} else {
				fmt.Fprintf(out, "point AWS SDKs here with AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=%s\n", d.URL())
				fmt.Fprintf(out, "and the control plane with AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL=%s\n", d.URL())
			}
			// SIGHUP re-reads the credentials file (berth also notices
			// when it changes).
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			for {
				select {
				case <-cmd.Context().Done():
					log.Info("shutting down")
					return d.Close(cmd.Context())
				case err := <-d.Err():
					d.Close(cmd.Context())
					return fmt.Errorf("serve: %w", err)
				case <-hup:
					d.ReloadCredentials()
				}
			}
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (YAML) declaring runtimes")
	cmd.Flags().StringVar(&listen, "listen", config.DefaultListen, "listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", config.DefaultDataDir, "data directory (store, sandboxes, logs)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&logFormat, "log-format", "", "log format: text or json (default text on a terminal, else json)")
	cmd.Flags().BoolVar(&insecureNoAuth, "insecure-no-auth", false,
		"serve a non-loopback --listen without an auth section: anyone who reaches the port can run code")
	cmd.Flags().BoolVar(&initCredentials, "init-credentials", false,
		"turn on SigV4 authentication with a credentials file in the data dir (unless the config has an auth section), "+
			"creating it with a fresh admin key if missing, and print the variables to export")
	return cmd
}

// initAuth makes sure berth starts with authentication on and a key to
// use: without an auth section it turns on sigv4 with the credentials
// file <data_dir>/credentials and an admin named admin; a missing file is
// created with a fresh key for the first admin, which it returns.
func initAuth(cfg *config.Config) (*auth.Key, error) {
	if cfg.Auth == nil {
		dir, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("resolve data dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		cfg.Auth = &config.Auth{Mode: auth.ModeSigV4, CredentialsFile: filepath.Join(dir, "credentials"), Admins: []string{"admin"}}
	}
	a := cfg.Auth
	if a.Mode == auth.ModeNone {
		return nil, errors.New("--init-credentials: the config says auth.mode: none")
	}
	if a.CredentialsFile == "" {
		return nil, errors.New("--init-credentials: the config's auth section names no credentials_file")
	}
	if _, err := os.Stat(a.CredentialsFile); err == nil {
		return nil, nil // keys exist: use them
	}
	name := "admin"
	if len(a.Admins) > 0 {
		name = a.Admins[0]
	} else {
		a.Admins = []string{name}
	}
	key, err := auth.CreateProfile(a.CredentialsFile, name)
	if err != nil {
		return nil, err
	}
	return &key, nil
}

// newLogger logs to w in format: text for people, JSON lines for
// collectors; by default text only when w is a terminal.
func newLogger(w io.Writer, format string, lvl slog.Level) (*slog.Logger, error) {
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
