// Command claude is the agent of AgentCore's "runtime context and session
// management" tutorial with its model: Claude Haiku 4.5 answering through
// tools (a calculator, the weather, the time), written in Go on berth's app
// SDK and charm.land/fantasy.
//
// Like the tutorial's Strands agent, it keeps the conversation in a
// package-level variable. It is per session only because the runtime gives
// every session its own process: ask "How much is 2X5?" then "and that plus
// 34?" in one session and the model sees the first answer when it works out
// 44; ask "and plus 10?" in a new session and it has nothing to add 10 to.
//
// The model is chosen by environment variables:
//
//	BERTH_MODEL_PROVIDER  bedrock (default), anthropic or openai
//	BERTH_MODEL           model ID; defaults to Claude Haiku 4.5
//	                      (bedrock: us.anthropic.claude-haiku-4-5-20251001-v1:0,
//	                      anthropic: claude-haiku-4-5-20251001); required for openai
//	BERTH_MODEL_BASE_URL  endpoint override for any provider
//	BERTH_MODEL_MAX_TOKENS  output tokens per model call (default 1024)
//
// and each provider's usual settings: the AWS credential chain and
// AWS_REGION (default us-east-1) or AWS_ENDPOINT_URL_BEDROCK_RUNTIME for
// Bedrock; ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL; OPENAI_BASE_URL (for
// example http://localhost:11434/v1 for Ollama) and OPENAI_API_KEY.
//
// It is a module of its own, so the model SDKs stay out of the berth
// binary. Run it alone (PORT defaults to 8080):
//
//	cd examples/claude && BERTH_MODEL_PROVIDER=anthropic go run .
//	curl -s localhost:8080/invocations \
//	  -H 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id: 0d9b6bd0-4a0a-4b8e-9b7e-1d2f3a4b5c6d' \
//	  -d '{"prompt": "How much is 2X5?", "user_id": "1"}'
//
// Add "stream": true to the payload to get the answer as Server-Sent Events,
// or run the tutorial's demonstrations with `berth demo --model anthropic`.
package main

import (
	"context"
	"log/slog"
	"os"
)

// session is this process's conversation, shared by every invocation it
// serves: under berth, one session's.
var session = newConversation()

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		logger.Error("configure the model", slog.Any("err", err))
		os.Exit(2)
	}
	model, err := cfg.languageModel(context.Background())
	if err != nil {
		logger.Error("open the model", slog.Any("err", err))
		os.Exit(1)
	}
	logger.Info("model", slog.String("provider", cfg.Provider), slog.String("model", cfg.Model),
		slog.String("base_url", cfg.BaseURL))
	if err := newAgent(session, model, cfg, logger).Run(); err != nil {
		logger.Error("agent stopped", slog.Any("err", err))
		os.Exit(1)
	}
}
