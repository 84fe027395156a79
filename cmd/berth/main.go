// Command berth is the self-hosted, AgentCore-compatible agent runtime:
// the server, its client commands and the demo, in one binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth-dev/berth/api"
	"github.com/spf13/cobra"
)

// version is set by the linker: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func main() {
	runChild() // re-exec'd helper steps never return
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ae *api.Error
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		if errors.As(err, &ae) {
			fmt.Fprintf(os.Stderr, "berth: %s (%d): %s\n", ae.Type, ae.StatusCode, ae.Message)
		} else {
			fmt.Fprintln(os.Stderr, "berth:", err)
		}
		var sf *startFailure
		if errors.As(err, &sf) {
			fmt.Fprint(os.Stderr, sf.detail)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "A self-hosted agent runtime that speaks Amazon Bedrock AgentCore's wire protocol",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetVersionTemplate("berth {{.Version}}\n")
	root.AddCommand(newServe(), newInvoke(), newExec(), newStopSession(), newDemo(), newVersion())
	root.AddCommand(newRuntimes(), newSessions(), newImages(), newLogs(), newInit(), newDev(), newCredentials())
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print berth's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "berth", version)
		},
	}
}
