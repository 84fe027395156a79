package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// The model demo's own run is tested in examples/claude (a separate module
// with a fake model server); these tests cover how it finds credentials.
func TestModelAgentEnv(t *testing.T) {
	ctx := context.Background()
	lookup := func(env map[string]string) func(string) string {
		return func(k string) string { return env[k] }
	}
	tests := []struct {
		name     string
		provider string
		env      map[string]string
		missing  string            // a phrase of the reason to fall back
		want     map[string]string // entries the agent's env must have
	}{
		{"anthropic without a key", "anthropic", nil, "ANTHROPIC_API_KEY", nil},
		{"anthropic", "anthropic", map[string]string{"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://a", "BERTH_MODEL": "m", "HOME": "/root"}, "",
			map[string]string{"BERTH_MODEL_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://a", "BERTH_MODEL": "m"}},
		{"openai without a server", "openai", map[string]string{"BERTH_MODEL": "m"}, "OPENAI_BASE_URL", nil},
		{"openai without a model", "openai", map[string]string{"OPENAI_BASE_URL": "http://localhost:11434/v1"}, "BERTH_MODEL", nil},
		{"openai", "openai", map[string]string{"OPENAI_BASE_URL": "http://o/v1", "OPENAI_MODEL": "qwen3"}, "",
			map[string]string{"BERTH_MODEL_PROVIDER": "openai", "OPENAI_BASE_URL": "http://o/v1", "OPENAI_MODEL": "qwen3"}},
		{"bedrock API key", "bedrock", map[string]string{"AWS_BEARER_TOKEN_BEDROCK": "tok", "AWS_REGION": "eu-west-1"}, "",
			map[string]string{"BERTH_MODEL_PROVIDER": "bedrock", "AWS_BEARER_TOKEN_BEDROCK": "tok", "AWS_REGION": "eu-west-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, missing, err := modelAgentEnv(ctx, tc.provider, lookup(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if tc.missing != "" {
				if !strings.Contains(missing, tc.missing) || env != nil {
					t.Errorf("missing %q, env %v; want a reason naming %s", missing, env, tc.missing)
				}
				return
			}
			if missing != "" {
				t.Fatalf("missing %q, want none", missing)
			}
			for k, v := range tc.want {
				if env[k] != v {
					t.Errorf("%s=%q, want %q", k, env[k], v)
				}
			}
			if _, ok := env["HOME"]; ok {
				t.Error("unrelated variables were passed on")
			}
		})
	}
	if _, _, err := modelAgentEnv(ctx, "gemini", lookup(nil)); err == nil {
		t.Error("an unknown provider was accepted")
	}
}

// hermeticAWS points the AWS credential chain at nothing but env.
func hermeticAWS(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/berth-test/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/berth-test/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestModelAgentEnvResolvesAWSCredentials(t *testing.T) {
	hermeticAWS(t, map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDDEMO", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token", "AWS_REGION": "eu-central-1",
	})
	env, missing, err := modelAgentEnv(context.Background(), "bedrock", os.Getenv)
	if err != nil || missing != "" {
		t.Fatalf("%v %q", err, missing)
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDDEMO", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token", "AWS_REGION": "eu-central-1"} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
}

func TestModelAgentEnvWithoutAWSCredentials(t *testing.T) {
	hermeticAWS(t, nil)
	env, missing, err := modelAgentEnv(context.Background(), "bedrock", os.Getenv)
	if err != nil || !strings.Contains(missing, "AWS") || env != nil {
		t.Fatalf("env %v, missing %q, err %v; want a reason to fall back", env, missing, err)
	}
}
