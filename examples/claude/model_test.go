package main

import (
	"errors"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want modelConfig
	}{
		{"bedrock by default", nil,
			modelConfig{Provider: ProviderBedrock, Model: DefaultBedrockModel, MaxTokens: defaultMaxTokens}},
		{"bedrock endpoint from the AWS variable", map[string]string{envBedrockEndpoint: "http://127.0.0.1:9"},
			modelConfig{Provider: ProviderBedrock, Model: DefaultBedrockModel, BaseURL: "http://127.0.0.1:9", MaxTokens: defaultMaxTokens}},
		{"anthropic", map[string]string{EnvProvider: "Anthropic", envAnthropicKey: "k"},
			modelConfig{Provider: ProviderAnthropic, Model: DefaultAnthropicModel, APIKey: "k", MaxTokens: defaultMaxTokens}},
		{"berth base URL wins", map[string]string{EnvProvider: ProviderAnthropic, envAnthropicBaseURL: "http://a", EnvBaseURL: "http://b"},
			modelConfig{Provider: ProviderAnthropic, Model: DefaultAnthropicModel, BaseURL: "http://b", MaxTokens: defaultMaxTokens}},
		{"openai with a model", map[string]string{EnvProvider: ProviderOpenAI, EnvModel: "qwen3", envOpenAIBaseURL: "http://localhost:11434/v1"},
			modelConfig{Provider: ProviderOpenAI, Model: "qwen3", BaseURL: "http://localhost:11434/v1", MaxTokens: defaultMaxTokens}},
		{"openai defaults to the public API", map[string]string{EnvProvider: ProviderOpenAI, envOpenAIModel: "gpt-4.1-mini", envOpenAIKey: "k"},
			modelConfig{Provider: ProviderOpenAI, Model: "gpt-4.1-mini", BaseURL: defaultOpenAIBaseURL, APIKey: "k", MaxTokens: defaultMaxTokens}},
		{"model and token overrides", map[string]string{EnvModel: "anthropic.claude-sonnet-4", EnvMaxTokens: "256"},
			modelConfig{Provider: ProviderBedrock, Model: "anthropic.claude-sonnet-4", MaxTokens: 256}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := configFromEnv(func(k string) string { return tc.env[k] })
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	for _, env := range []map[string]string{
		{EnvProvider: "gemini"},
		{EnvProvider: ProviderOpenAI},
		{EnvMaxTokens: "0"},
		{EnvMaxTokens: "lots"},
	} {
		if _, err := configFromEnv(func(k string) string { return env[k] }); !errors.Is(err, errConfig) {
			t.Errorf("%v: error %v, want a configuration error", env, err)
		}
	}
}
