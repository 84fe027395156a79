package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/spf13/cobra"
)

func newServe() *cobra.Command {
	var (
		cfgPath, listen, dataDir, logLevel string
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
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
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
			fmt.Fprintf(out, "point AWS SDKs here with AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=%s\n", d.URL())
			fmt.Fprintf(out, "and the control plane with AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL=%s\n", d.URL())
			select {
			case <-cmd.Context().Done():
				log.Info("shutting down")
			case err := <-d.Err():
				d.Close(cmd.Context())
				return fmt.Errorf("serve: %w", err)
			}
			return d.Close(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (YAML) declaring runtimes")
	cmd.Flags().StringVar(&listen, "listen", config.DefaultListen, "listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", config.DefaultDataDir, "data directory (store, sandboxes, logs)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
