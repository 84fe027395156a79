package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/config"
)

// The client commands sign their requests with SigV4, as an AWS SDK
// would, with credentials from the usual AWS chain (the environment, then
// the shared credentials and config files and AWS_PROFILE). Without
// credentials they go unsigned, which a berth with authentication off
// accepts. The signing lives here, not in package client, which stays
// standard library only: client.Client takes the transport.

// signingTransport signs each request it sends.
type signingTransport struct {
	next http.RoundTripper

	once   sync.Once
	creds  aws.CredentialsProvider // nil: no credentials found
	region string
	err    error
}

// load finds credentials and the region once, on the first request.
func (t *signingTransport) load(ctx context.Context) {
	t.once.Do(func() {
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled))
		if err != nil {
			t.err = fmt.Errorf("AWS configuration: %w", err)
			return
		}
		t.region = cfg.Region
		if t.region == "" {
			t.region = config.DefaultRegion
		}
		if cfg.Credentials == nil {
			return
		}
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			return // no credentials: send unsigned
		}
		t.creds = cfg.Credentials
	})
}

func (t *signingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") != "" {
		return t.next.RoundTrip(r) // a bearer token the caller set
	}
	t.load(r.Context())
	if t.err != nil {
		return nil, t.err
	}
	if t.creds == nil {
		return t.next.RoundTrip(r)
	}
	creds, err := t.creds.Retrieve(r.Context())
	if err != nil {
		return nil, fmt.Errorf("AWS credentials: %w", err)
	}
	hash, err := payloadHash(r)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("X-Amz-Content-Sha256", hash)
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, r, hash, auth.Service, t.region, time.Now()); err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	return t.next.RoundTrip(r)
}

// payloadHash hashes a body the request can replay; a stream (a payload
// from standard input) goes as UNSIGNED-PAYLOAD rather than be held in
// memory.
func payloadHash(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		sum := sha256.Sum256(nil)
		return hex.EncodeToString(sum[:]), nil
	}
	if r.GetBody == nil {
		return "UNSIGNED-PAYLOAD", nil
	}
	body, err := r.GetBody()
	if err != nil {
		return "", fmt.Errorf("read payload: %w", err)
	}
	defer body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("read payload: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// httpClient is the client commands' HTTP client: it signs, or sends a
// bearer token when one is given.
func httpClient(bearer string) *http.Client {
	var t http.RoundTripper = &signingTransport{next: http.DefaultTransport}
	if bearer != "" {
		t = bearerTransport{next: http.DefaultTransport, token: bearer}
	}
	return &http.Client{Transport: t}
}

// bearerTransport sends a bearer token, for runtimes with a JWT authorizer.
type bearerTransport struct {
	next  http.RoundTripper
	token string
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// bearerFromEnv is the token --bearer-token defaults to.
func bearerFromEnv() string { return os.Getenv("BERTH_BEARER_TOKEN") }
