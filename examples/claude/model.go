package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"charm.land/fantasy"
	"charm.land/fantasy/providers/anthropic"
	"charm.land/fantasy/providers/bedrock"
	"charm.land/fantasy/providers/openaicompat"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// Providers, chosen with BERTH_MODEL_PROVIDER.
const (
	ProviderBedrock   = "bedrock"
	ProviderAnthropic = "anthropic"
	ProviderOpenAI    = "openai"
)

// Claude Haiku 4.5: Bedrock's US cross-region inference profile, and the
// Anthropic API's model ID. An OpenAI-compatible server has no default.
const (
	DefaultBedrockModel   = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
	DefaultAnthropicModel = "claude-haiku-4-5-20251001"
	defaultBedrockRegion  = "us-east-1"
	defaultOpenAIBaseURL  = "https://api.openai.com/v1"
	defaultMaxTokens      = 1024
)

// Environment variables the agent reads. The provider-specific ones are
// the names each provider's own tools use.
const (
	EnvProvider  = "BERTH_MODEL_PROVIDER"   // bedrock (default), anthropic or openai
	EnvModel     = "BERTH_MODEL"            // model ID override
	EnvBaseURL   = "BERTH_MODEL_BASE_URL"   // endpoint override, any provider
	EnvMaxTokens = "BERTH_MODEL_MAX_TOKENS" // output cap per model call

	envBedrockEndpoint  = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
	envAnthropicKey     = "ANTHROPIC_API_KEY"
	envAnthropicBaseURL = "ANTHROPIC_BASE_URL"
	envOpenAIKey        = "OPENAI_API_KEY"
	envOpenAIBaseURL    = "OPENAI_BASE_URL"
	envOpenAIModel      = "OPENAI_MODEL"
)

var errConfig = errors.New("model configuration")

// modelConfig says which model the agent talks to, and where.
type modelConfig struct {
	Provider  string
	Model     string
	BaseURL   string // empty: the provider's public endpoint
	APIKey    string // Anthropic and OpenAI; Bedrock uses the AWS credential chain
	MaxTokens int64
}

// configFromEnv reads the model configuration through getenv.
func configFromEnv(getenv func(string) string) (modelConfig, error) {
	c := modelConfig{
		Provider:  strings.ToLower(cmp.Or(strings.TrimSpace(getenv(EnvProvider)), ProviderBedrock)),
		Model:     getenv(EnvModel),
		BaseURL:   getenv(EnvBaseURL),
		MaxTokens: defaultMaxTokens,
	}
	if s := getenv(EnvMaxTokens); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("%w: %s=%q is not a positive integer", errConfig, EnvMaxTokens, s)
		}
		c.MaxTokens = n
	}
	switch c.Provider {
	case ProviderBedrock:
		c.Model = cmp.Or(c.Model, DefaultBedrockModel)
		c.BaseURL = cmp.Or(c.BaseURL, getenv(envBedrockEndpoint))
	case ProviderAnthropic:
		c.Model = cmp.Or(c.Model, DefaultAnthropicModel)
		c.BaseURL = cmp.Or(c.BaseURL, getenv(envAnthropicBaseURL))
		c.APIKey = getenv(envAnthropicKey)
	case ProviderOpenAI:
		c.Model = cmp.Or(c.Model, getenv(envOpenAIModel))
		c.BaseURL = cmp.Or(c.BaseURL, getenv(envOpenAIBaseURL), defaultOpenAIBaseURL)
		c.APIKey = getenv(envOpenAIKey)
		if c.Model == "" {
			return c, fmt.Errorf("%w: provider openai needs a model: set %s (for example llama3.2 on Ollama)", errConfig, EnvModel)
		}
	default:
		return c, fmt.Errorf("%w: %s=%q: want %s, %s or %s", errConfig, EnvProvider, c.Provider,
			ProviderBedrock, ProviderAnthropic, ProviderOpenAI)
	}
	return c, nil
}

// String names the model for logs and replies.
func (c modelConfig) String() string { return c.Provider + "/" + c.Model }

// languageModel builds the fantasy model for c. Bedrock goes through
// fantasy's bedrock provider, which is the Anthropic SDK's Bedrock path:
// InvokeModel and InvokeModelWithResponseStream with Anthropic's message
// body, signed with SigV4 from the AWS credential chain.
func (c modelConfig) languageModel(ctx context.Context) (fantasy.LanguageModel, error) {
	var (
		p   fantasy.Provider
		err error
	)
	switch c.Provider {
	case ProviderBedrock:
		// fantasy loads the AWS config too, but quietly skips Bedrock when
		// that fails; loading it here first turns that into an error and
		// gives a region to a chain that has none.
		awsCfg, lerr := awsconfig.LoadDefaultConfig(ctx)
		if lerr != nil {
			return nil, fmt.Errorf("load AWS config: %w", lerr)
		}
		opts := []bedrock.Option{bedrock.WithRegion(cmp.Or(awsCfg.Region, defaultBedrockRegion))}
		if c.BaseURL != "" {
			opts = append(opts, bedrock.WithBaseURL(c.BaseURL))
		}
		p, err = bedrock.New(opts...)
	case ProviderAnthropic:
		opts := []anthropic.Option{anthropic.WithAPIKey(c.APIKey)}
		if c.BaseURL != "" {
			opts = append(opts, anthropic.WithBaseURL(c.BaseURL))
		}
		p, err = anthropic.New(opts...)
	case ProviderOpenAI:
		opts := []openaicompat.Option{openaicompat.WithBaseURL(c.BaseURL)}
		if c.APIKey != "" {
			opts = append(opts, openaicompat.WithAPIKey(c.APIKey))
		}
		p, err = openaicompat.New(opts...)
	default:
		return nil, fmt.Errorf("%w: unknown provider %q", errConfig, c.Provider)
	}
	if err != nil {
		return nil, fmt.Errorf("new %s provider: %w", c.Provider, err)
	}
	m, err := p.LanguageModel(ctx, c.Model)
	if err != nil {
		return nil, fmt.Errorf("open model %s: %w", c, err)
	}
	return m, nil
}
