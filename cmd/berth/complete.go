package main

import (
	"context"
	"time"

	"github.com/berth-dev/berth/client"
	"github.com/spf13/cobra"
)

// Shell completion (berth completion bash|zsh|fish|powershell) asks the
// server for runtime names and live session IDs. A server that does not
// answer within a second completes nothing.

type completer func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective)

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, time.Second)
}

func runtimeNames(cmd *cobra.Command, cf *clientFlags) []cobra.Completion {
	ctx, cancel := completionContext(cmd)
	defer cancel()
	rts, err := cf.client().AllRuntimes(ctx)
	if err != nil {
		return nil
	}
	out := make([]cobra.Completion, 0, len(rts))
	for _, rt := range rts {
		out = append(out, cobra.CompletionWithDesc(rt.AgentRuntimeName, "runtime"))
	}
	return out
}

func liveSessionIDs(cmd *cobra.Command, cf *clientFlags, runtime string) []cobra.Completion {
	ctx, cancel := completionContext(cmd)
	defer cancel()
	l, err := cf.client().ListSessions(ctx, client.SessionFilter{Runtime: runtime, State: "live", Limit: 1000})
	if err != nil {
		return nil
	}
	out := make([]cobra.Completion, 0, len(l.Sessions))
	for _, s := range l.Sessions {
		out = append(out, cobra.CompletionWithDesc(s.SessionID, s.Runtime+" "+s.State))
	}
	return out
}

// completeFirst completes the first argument only.
func completeFirst(list func(cmd *cobra.Command) []cobra.Completion) completer {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return list(cmd), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeRuntimeArg completes a RUNTIME argument.
func completeRuntimeArg(cf *clientFlags) completer {
	return completeFirst(func(cmd *cobra.Command) []cobra.Completion { return runtimeNames(cmd, cf) })
}

// completeSessionArg completes a SESSION argument, within --runtime if
// the command has it set.
func completeSessionArg(cf *clientFlags) completer {
	return completeFirst(func(cmd *cobra.Command) []cobra.Completion {
		rt, _ := cmd.Flags().GetString("runtime")
		return liveSessionIDs(cmd, cf, rt)
	})
}

// completeRuntimeFlag registers the completion of a --runtime flag.
func completeRuntimeFlag(cmd *cobra.Command, cf *clientFlags) {
	cmd.RegisterFlagCompletionFunc("runtime", func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return runtimeNames(cmd, cf), cobra.ShellCompDirectiveNoFileComp
	})
}
