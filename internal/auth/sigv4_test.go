package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/berth-dev/berth/api"
)

const testARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/tutorial-AbCdEfGhIj"

// testKeys writes a credentials file with alice and bob.
func testKeys(t *testing.T) (*Keyring, Key, Key) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials")
	alice, err := CreateProfile(path, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := CreateProfile(path, "bob")
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKeyring(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, alice, bob
}

func newTestAuth(t *testing.T, keys *Keyring, now func() time.Time) *Authenticator {
	t.Helper()
	a, err := New(Options{Mode: ModeSigV4, Keys: keys, Region: "us-east-1", SpoolDir: t.TempDir(), MaxBody: 8 << 20,
		Policy: Policy{Admins: []string{"alice"}}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// invocation is a request as the Go SDK sends InvokeAgentRuntime: the ARN
// escaped into one path segment.
func invocation(t *testing.T, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8787/runtimes/"+url.PathEscape(testARN)+"/invocations?qualifier=DEFAULT",
		bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(api.HeaderSessionID, "a-session-id-that-is-long-enough-0123456789")
	return r
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sign signs r as a client with key at t.
func sign(t *testing.T, r *http.Request, key Key, payloadHash string, at time.Time, region string) {
	t.Helper()
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey},
		r, payloadHash, Service, region, at)
	if err != nil {
		t.Fatal(err)
	}
}

// serverSide turns a client request into what berth's handler receives.
func serverSide(t *testing.T, r *http.Request) *http.Request {
	t.Helper()
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			t.Fatal(err)
		}
	}
	s := httptest.NewRequest(r.Method, r.URL.RequestURI(), bytes.NewReader(body))
	s.Host = r.URL.Host
	for k, v := range r.Header {
		s.Header[k] = v
	}
	s.ContentLength = int64(len(body))
	if len(body) == 0 {
		s.ContentLength = 0
	}
	return s
}

func wantType(t *testing.T, err error, typ api.ErrorType, contains string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) || ae.Type != typ {
		t.Fatalf("err = %v, want %s", err, typ)
	}
	if !strings.Contains(ae.Msg, contains) {
		t.Errorf("message %q does not say %q", ae.Msg, contains)
	}
}

func TestSigV4HeaderSignatures(t *testing.T) {
	keys, alice, bob := testKeys(t)
	now := time.Now()
	a := newTestAuth(t, keys, func() time.Time { return now })
	body := []byte(`{"prompt":"hi"}`)

	t.Run("right key", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now, "us-east-1")
		s := serverSide(t, r)
		c, err := a.Authenticate(s)
		if err != nil {
			t.Fatal(err)
		}
		if c.Principal != (Principal{Kind: KindSigV4, Name: "alice"}) || !c.SigV4 {
			t.Fatalf("caller %+v", c)
		}
		// The handler still reads the whole body.
		got, _ := io.ReadAll(s.Body)
		if !bytes.Equal(got, body) {
			t.Errorf("body after verification %q", got)
		}
	})
	t.Run("second principal", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, bob, hashOf(body), now, "us-east-1")
		c, err := a.Authenticate(serverSide(t, r))
		if err != nil || c.Principal.Name != "bob" {
			t.Fatalf("caller %+v, %v", c, err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, Key{AccessKeyID: alice.AccessKeyID, SecretAccessKey: bob.SecretAccessKey}, hashOf(body), now, "us-east-1")
		_, err := a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrInvalidSignature, "does not match the signature you provided")
	})
	t.Run("unknown key", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, NewKey("mallory"), hashOf(body), now, "us-east-1")
		_, err := a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrUnrecognizedClient, "security token included in the request is invalid")
	})
	t.Run("ten minutes stale", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now.Add(-10*time.Minute), "us-east-1")
		_, err := a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrInvalidSignature, "Signature expired")
	})
	t.Run("ten minutes ahead", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now.Add(10*time.Minute), "us-east-1")
		_, err := a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrInvalidSignature, "Signature not yet current")
	})
	t.Run("four minutes off", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now.Add(-4*time.Minute), "us-east-1")
		if _, err := a.Authenticate(serverSide(t, r)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("other region", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now, "eu-west-1")
		_, err := a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrInvalidSignature, "valid region")
	})
	t.Run("other service", func(t *testing.T) {
		r := invocation(t, body)
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: alice.AccessKeyID, SecretAccessKey: alice.SecretAccessKey},
			r, hashOf(body), "s3", "us-east-1", now)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrInvalidSignature, "correct service")
	})
	t.Run("altered body", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now, "us-east-1")
		s := serverSide(t, r)
		s.Body = io.NopCloser(strings.NewReader(`{"prompt":"rm -rf"}`))
		_, err := a.Authenticate(s)
		wantType(t, err, api.ErrInvalidSignature, "does not match")
	})
	t.Run("altered path", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now, "us-east-1")
		s := serverSide(t, r)
		s.URL.Path = "/runtimes/other/invocations"
		s.URL.RawPath = ""
		_, err := a.Authenticate(s)
		wantType(t, err, api.ErrInvalidSignature, "does not match")
	})
	t.Run("altered signed header", func(t *testing.T) {
		r := invocation(t, body)
		sign(t, r, alice, hashOf(body), now, "us-east-1")
		s := serverSide(t, r)
		s.Header.Set(api.HeaderSessionID, "another-session-id-that-is-long-enough-0123")
		_, err := a.Authenticate(s)
		wantType(t, err, api.ErrInvalidSignature, "does not match")
	})
	t.Run("session token", func(t *testing.T) {
		r := invocation(t, body)
		err := v4.NewSigner().SignHTTP(context.Background(),
			aws.Credentials{AccessKeyID: alice.AccessKeyID, SecretAccessKey: alice.SecretAccessKey, SessionToken: "tok"},
			r, hashOf(body), Service, "us-east-1", now)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Authenticate(serverSide(t, r))
		wantType(t, err, api.ErrUnrecognizedClient, "AWS_SESSION_TOKEN")
	})
	t.Run("no credential", func(t *testing.T) {
		s := serverSide(t, invocation(t, body))
		s.Header.Set("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00")
		s.Header.Set("X-Amz-Date", now.UTC().Format(amzDateFormat))
		_, err := a.Authenticate(s)
		wantType(t, err, api.ErrIncompleteSignature, "'Credential'")
	})
	t.Run("unsigned", func(t *testing.T) {
		c, err := a.Authenticate(serverSide(t, invocation(t, body)))
		if err != nil || c.Principal.Authenticated() || c.SigV4 {
			t.Fatalf("caller %+v, %v: an unsigned request is nobody", c, err)
		}
	})
}

// A client that sends X-Amz-Content-Sha256 keeps its stream: the body is
// checked as it passes, and one that does not match never arrives whole.
func TestSigV4StreamedPayloadHash(t *testing.T) {
	keys, alice, _ := testKeys(t)
	now := time.Now()
	a := newTestAuth(t, keys, func() time.Time { return now })
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB

	r := invocation(t, body)
	r.Header.Set("X-Amz-Content-Sha256", hashOf(body))
	sign(t, r, alice, hashOf(body), now, "us-east-1")
	s := serverSide(t, r)
	if _, err := a.Authenticate(s); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(s.Body); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}

	r = invocation(t, body)
	r.Header.Set("X-Amz-Content-Sha256", hashOf(body))
	sign(t, r, alice, hashOf(body), now, "us-east-1")
	s = serverSide(t, r)
	tampered := bytes.Clone(body)
	tampered[len(tampered)-1] ^= 1
	s.Body = io.NopCloser(bytes.NewReader(tampered))
	if _, err := a.Authenticate(s); err != nil {
		t.Fatalf("the headers are signed, so the call goes on until the body ends: %v", err)
	}
	got, err := io.ReadAll(s.Body)
	if !errors.Is(err, ErrPayloadHash) {
		t.Fatalf("reading a tampered body: %v", err)
	}
	if len(got) >= len(body) {
		t.Errorf("the tampered body arrived whole (%d bytes) before the error", len(got))
	}

	// UNSIGNED-PAYLOAD: the signature covers the headers alone.
	r = invocation(t, body)
	r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
	sign(t, r, alice, unsignedPayload, now, "us-east-1")
	if _, err := a.Authenticate(serverSide(t, r)); err != nil {
		t.Fatal(err)
	}
}

// A body the signature covers without a hash header is read whole before
// anything goes on: in memory when small, spooled to a file (removed on
// Close) when large, refused past the limit.
func TestSigV4BufferedBodies(t *testing.T) {
	keys, alice, _ := testKeys(t)
	now := time.Now()
	spool := t.TempDir()
	a, err := New(Options{Mode: ModeSigV4, Keys: keys, Region: "us-east-1", SpoolDir: spool, MaxBody: 3 << 20,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2<<20+17)
	rand.Read(big)
	r := invocation(t, big)
	sign(t, r, alice, hashOf(big), now, "us-east-1")
	s := serverSide(t, r)
	if _, err := a.Authenticate(s); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(spool); len(ents) != 1 {
		t.Fatalf("spool holds %d files, want the one body", len(ents))
	}
	got, err := io.ReadAll(s.Body)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("replayed %d bytes, %v", len(got), err)
	}
	s.Body.Close()
	if ents, _ := os.ReadDir(spool); len(ents) != 0 {
		t.Errorf("spool holds %d files after Close", len(ents))
	}

	huge := make([]byte, 3<<20+1)
	r = invocation(t, huge)
	sign(t, r, alice, hashOf(huge), now, "us-east-1")
	_, err = a.Authenticate(serverSide(t, r))
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		t.Fatalf("a body past the limit: %v", err)
	}
	if ents, _ := os.ReadDir(spool); len(ents) != 0 {
		t.Errorf("spool holds %d files after a refused body", len(ents))
	}
}

// presign presigns a WebSocket connect as the Go SDK's signer does.
func presign(t *testing.T, key Key, at time.Time, expires int, host string) *http.Request {
	t.Helper()
	u := "http://" + host + "/runtimes/" + url.PathEscape(testARN) + "/ws?qualifier=DEFAULT&X-Amzn-Bedrock-AgentCore-Runtime-Session-Id=a-session-id-that-is-long-enough-0123456789&X-Amz-Expires=" + strconv.Itoa(expires)
	r, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey},
		r, unsignedPayload, Service, "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	su, _ := url.Parse(signed)
	s := httptest.NewRequest(http.MethodGet, su.RequestURI(), nil)
	s.Host = su.Host
	return s
}

func TestSigV4Presigned(t *testing.T) {
	keys, alice, _ := testKeys(t)
	now := time.Now()
	a := newTestAuth(t, keys, func() time.Time { return now })

	s := presign(t, alice, now, 5, "127.0.0.1:8787")
	c, err := a.Authenticate(s)
	if err != nil || c.Principal.Name != "alice" {
		t.Fatalf("presigned: %+v, %v", c, err)
	}

	for name, alter := range map[string]func(q url.Values){
		"session":   func(q url.Values) { q.Set(api.HeaderSessionID, "another-session-id-that-is-long-enough-0123") },
		"qualifier": func(q url.Values) { q.Set("qualifier", "stable") },
		"expiry":    func(q url.Values) { q.Set("X-Amz-Expires", "9") },
		"added":     func(q url.Values) { q.Set("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Role", "admin") },
	} {
		t.Run("altered "+name, func(t *testing.T) {
			s := presign(t, alice, now, 5, "127.0.0.1:8787")
			q := s.URL.Query()
			alter(q)
			s.URL.RawQuery = q.Encode()
			_, err := a.Authenticate(s)
			wantType(t, err, api.ErrInvalidSignature, "does not match")
		})
	}
	t.Run("expired", func(t *testing.T) {
		s := presign(t, alice, now.Add(-6*time.Second), 5, "127.0.0.1:8787")
		_, err := a.Authenticate(s)
		wantType(t, err, api.ErrInvalidSignature, "Signature expired")
	})
	t.Run("signed for the host without its port", func(t *testing.T) {
		s := presign(t, alice, now, 5, "127.0.0.1")
		s.Host = "127.0.0.1:8787"
		if _, err := a.Authenticate(s); err != nil {
			t.Fatalf("AWS's Python SDK signs url.hostname: %v", err)
		}
	})
	t.Run("header and query", func(t *testing.T) {
		s := presign(t, alice, now, 5, "127.0.0.1:8787")
		s.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
		_, err := a.Authenticate(s)
		wantType(t, err, api.ErrInvalidSignature, "Only one auth mechanism")
	})
}
