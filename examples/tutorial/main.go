// Command tutorial is the agent from AgentCore's "Understanding runtime
// context and session management" tutorial, rebuilt on berth's Go SDK and
// without a model, so it runs anywhere and its answers are deterministic.
//
// Like the tutorial's Python agent, it keeps its conversation in a
// package-level variable. Nothing keys that memory by session: it is per
// session only because the runtime gives every session its own process. Ask
// "How much is 2X5?" then "and that plus 34?" in one session and it answers
// 10, then 44; ask "and plus 10?" in a new session and it has no previous
// result to work with.
//
// Run it with berth, or alone (PORT defaults to 8080):
//
//	go run ./examples/tutorial
//	curl -s localhost:8080/invocations \
//	  -H 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id: 0d9b6bd0-4a0a-4b8e-9b7e-1d2f3a4b5c6d' \
//	  -d '{"prompt": "How much is 2X5?", "user_id": "1"}'
//
// Add "stream": true to the payload to get the answer as Server-Sent Events.
package main

import (
	"log/slog"
	"os"
)

// conversation is this process's memory, shared by every invocation it
// serves: under berth, one session's.
var conversation memory

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := newAgent(&conversation, logger).Run(); err != nil {
		logger.Error("agent stopped", slog.Any("err", err))
		os.Exit(1)
	}
}
