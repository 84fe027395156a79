package auth

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/berth-dev/berth/api"
)

// SigV4 verification re-signs a copy of the request with the AWS SDK's
// own signer, using the secret of the key the request names, and compares
// signatures. berth never builds a canonical request itself: whatever the
// SDKs agree on, the SDK's signer computes.

// Service is the signing name of both AgentCore planes.
const Service = "bedrock-agentcore"

const (
	sigv4Algorithm = "AWS4-HMAC-SHA256"
	amzDateFormat  = "20060102T150405Z"
	// MaxSkew is how far a signature's time may stray from berth's clock.
	MaxSkew = 5 * time.Minute
	// MaxPresignExpiry caps a presigned URL's X-Amz-Expires.
	MaxPresignExpiry = time.Hour
	unsignedPayload  = "UNSIGNED-PAYLOAD"
)

var hexHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

type sigv4Verifier struct {
	keys     *Keyring
	region   string
	now      func() time.Time
	spoolDir string
	maxBody  int64
	log      *slog.Logger
}

// sigv4Request is what a request's signature claims.
type sigv4Request struct {
	accessKeyID, date, region, service, terminator string
	signedHeaders                                  []string
	signature                                      string
	amzDate                                        string
	t                                              time.Time
	expires                                        time.Duration // presigned only
}

func isPresigned(r *http.Request) bool {
	q := r.URL.RawQuery
	return strings.Contains(q, "X-Amz-Algorithm=") || strings.Contains(q, "X-Amz-Signature=") ||
		strings.Contains(q, "X-Amz-Credential=")
}

// verify checks r's SigV4 signature, in its Authorization header or, when
// presigned, its query, and returns the principal whose key made it.
func (v *sigv4Verifier) verify(r *http.Request, presigned bool) (Principal, error) {
	var (
		sr  sigv4Request
		err error
	)
	if presigned {
		sr, err = parsePresigned(r.URL.Query())
	} else {
		sr, err = parseAuthorization(r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date"))
	}
	if err != nil {
		return Principal{}, err
	}
	key, ok := v.keys.Lookup(sr.accessKeyID)
	if !ok {
		return Principal{}, authErr(api.ErrUnrecognizedClient, msgUnrecognizedClient)
	}
	if err := v.checkScope(sr); err != nil {
		return Principal{}, err
	}
	if presigned && r.URL.Query().Get("X-Amz-Security-Token") != "" || !presigned && r.Header.Get("X-Amz-Security-Token") != "" {
		return Principal{}, authErr(api.ErrUnrecognizedClient,
			"%s berth's keys have no session token: unset AWS_SESSION_TOKEN when using them.", msgUnrecognizedClient)
	}
	if err := v.checkTime(sr, presigned); err != nil {
		return Principal{}, err
	}
	if !slices.Contains(sr.signedHeaders, "host") {
		return Principal{}, authErr(api.ErrInvalidSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	payload, err := v.payloadHash(r, presigned)
	if err != nil {
		return Principal{}, err
	}
	creds := aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey}
	if presigned {
		err = v.checkPresigned(r, sr, creds, payload)
	} else {
		err = v.checkHeaders(r, sr, creds, payload)
	}
	if err != nil {
		return Principal{}, err
	}
	return Principal{Kind: KindSigV4, Name: key.Name}, nil
}

// parseAuthorization reads "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/
// SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(h, amzDate string) (sigv4Request, error) {
	_, params, _ := strings.Cut(strings.TrimSpace(h), " ")
	fields := map[string]string{}
	for p := range strings.SplitSeq(params, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok {
			fields[k] = strings.TrimSpace(val)
		}
	}
	var missing []string
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			missing = append(missing, "Authorization header requires '"+k+"' parameter.")
		}
	}
	if amzDate == "" {
		missing = append(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header; berth reads X-Amz-Date.")
	}
	if len(missing) > 0 {
		return sigv4Request{}, authErr(api.ErrIncompleteSignature, "%s", strings.Join(missing, " "))
	}
	return newSigv4Request(fields["Credential"], fields["SignedHeaders"], fields["Signature"], amzDate)
}

// parsePresigned reads a presigned URL's X-Amz-* query parameters.
func parsePresigned(q url.Values) (sigv4Request, error) {
	if alg := q.Get("X-Amz-Algorithm"); alg != sigv4Algorithm {
		return sigv4Request{}, authErr(api.ErrIncompleteSignature, "X-Amz-Algorithm must be %s, not %q", sigv4Algorithm, clip(alg, 40))
	}
	var missing []string
	for _, k := range []string{"X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date", "X-Amz-Expires"} {
		if q.Get(k) == "" {
			missing = append(missing, "AWS query-string parameters must include '"+k+"'.")
		}
	}
	if len(missing) > 0 {
		return sigv4Request{}, authErr(api.ErrIncompleteSignature, "%s", strings.Join(missing, " "))
	}
	sr, err := newSigv4Request(q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date"))
	if err != nil {
		return sr, err
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > MaxPresignExpiry {
		return sr, authErr(api.ErrIncompleteSignature, "X-Amz-Expires must be a number of seconds from 1 to %d", int(MaxPresignExpiry/time.Second))
	}
	sr.expires = time.Duration(secs) * time.Second
	return sr, nil
}

func newSigv4Request(credential, signedHeaders, signature, amzDate string) (sigv4Request, error) {
	parts := strings.Split(credential, "/")
	if len(parts) != 5 {
		return sigv4Request{}, authErr(api.ErrIncompleteSignature,
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", clip(credential, 200))
	}
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return sigv4Request{}, authErr(api.ErrIncompleteSignature, "X-Amz-Date must be in ISO 8601 basic format (%s), got %q", amzDateFormat, clip(amzDate, 40))
	}
	return sigv4Request{
		accessKeyID: parts[0], date: parts[1], region: parts[2], service: parts[3], terminator: parts[4],
		signedHeaders: strings.Split(signedHeaders, ";"), signature: signature, amzDate: amzDate, t: t,
	}, nil
}

func (v *sigv4Verifier) checkScope(sr sigv4Request) error {
	switch {
	case sr.terminator != "aws4_request":
		return authErr(api.ErrInvalidSignature, "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.", clip(sr.terminator, 40))
	case sr.service != Service:
		return authErr(api.ErrInvalidSignature, "Credential should be scoped to correct service: '%s'.", Service)
	case sr.region != v.region:
		return authErr(api.ErrInvalidSignature, "Credential should be scoped to a valid region. (berth serves region %s; set AWS_REGION=%s)", v.region, v.region)
	case sr.date != sr.t.Format("20060102"):
		return authErr(api.ErrInvalidSignature,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			clip(sr.date, 20), sr.t.Format("20060102"), sr.amzDate)
	}
	return nil
}

func (v *sigv4Verifier) checkTime(sr sigv4Request, presigned bool) error {
	now := v.now().UTC()
	switch {
	case sr.t.After(now.Add(MaxSkew)):
		return authErr(api.ErrInvalidSignature, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			sr.amzDate, now.Add(MaxSkew).Format(amzDateFormat), now.Format(amzDateFormat))
	case presigned && now.After(sr.t.Add(sr.expires)):
		return authErr(api.ErrInvalidSignature, "Signature expired: %s is now earlier than %s (the URL was presigned at %s for %d seconds)",
			sr.t.Add(sr.expires).Format(amzDateFormat), now.Format(amzDateFormat), sr.amzDate, int(sr.expires/time.Second))
	case !presigned && sr.t.Before(now.Add(-MaxSkew)):
		return authErr(api.ErrInvalidSignature, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
			sr.amzDate, now.Add(-MaxSkew).Format(amzDateFormat), now.Format(amzDateFormat))
	}
	return nil
}

// payloadHash is the payload hash the signature covers: the value the
// client sent in X-Amz-Content-Sha256 (checked against the body as it
// streams), UNSIGNED-PAYLOAD for presigned URLs, or, when the client sent
// none (the Go SDK and boto3 send none for this service), the hash of the
// body read here.
func (v *sigv4Verifier) payloadHash(r *http.Request, presigned bool) (string, error) {
	if presigned {
		if h := r.URL.Query().Get("X-Amz-Content-Sha256"); h != "" {
			return h, nil
		}
		return unsignedPayload, nil
	}
	switch h := r.Header.Get("X-Amz-Content-Sha256"); {
	case h == "":
		return v.readBody(r)
	case h == unsignedPayload:
		return h, nil
	case hexHashRE.MatchString(h):
		r.Body = newHashCheck(r.Body, h)
		return h, nil
	default:
		return "", authErr(api.ErrIncompleteSignature,
			"x-amz-content-sha256 must be the payload's SHA-256 in hex or UNSIGNED-PAYLOAD; berth takes no streaming (chunked) signatures")
	}
}

// scheme is the scheme the client used, as the signer strips its default
// port from Host.
func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// signable is a copy of r that carries exactly the headers the client
// signed, for the signer to sign again.
func signable(r *http.Request, sr sigv4Request, host, rawQuery string) *http.Request {
	c := &http.Request{
		Method: r.Method,
		URL: &url.URL{Scheme: scheme(r), Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath,
			RawQuery: rawQuery},
		Host:   host,
		Header: http.Header{},
	}
	for _, h := range sr.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			// The signer signs the length from ContentLength, and only
			// when it is positive.
			c.ContentLength = r.ContentLength
		default:
			k := textproto.CanonicalMIMEHeaderKey(h)
			if vals := r.Header.Values(k); len(vals) > 0 {
				c.Header[k] = vals
			}
		}
	}
	return c
}

func (v *sigv4Verifier) checkHeaders(r *http.Request, sr sigv4Request, creds aws.Credentials, payload string) error {
	c := signable(r, sr, r.Host, r.URL.RawQuery)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, c, payload, sr.service, sr.region, sr.t); err != nil {
		return authErr(api.ErrInvalidSignature, "%s", msgSignatureMismatch)
	}
	_, params, _ := strings.Cut(c.Header.Get("Authorization"), " ")
	var gotHeaders, gotSig string
	for p := range strings.SplitSeq(params, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "SignedHeaders":
			gotHeaders = val
		case "Signature":
			gotSig = val
		}
	}
	return v.compare(sr, gotHeaders, gotSig)
}

func (v *sigv4Verifier) checkPresigned(r *http.Request, sr sigv4Request, creds aws.Credentials, payload string) error {
	q := r.URL.Query()
	q.Del("X-Amz-Signature")
	// AWS's Python SDK presigns WebSocket URLs for the host without its
	// port (generate_presigned_url signs url.hostname); AWS's own
	// endpoints use the default port, berth's seldom do.
	hosts := []string{r.Host}
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		hosts = append(hosts, h)
	}
	// A URL that names no payload hash was signed over UNSIGNED-PAYLOAD
	// (botocore) or, by a signer that hashes the empty body of a GET, over
	// that hash (JS v3's SignatureV4.presign).
	payloads := []string{payload}
	if payload == unsignedPayload && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		payloads = append(payloads, emptySHA256)
	}
	var err error
	for _, host := range hosts {
		for _, p := range payloads {
			c := signable(r, sr, host, q.Encode())
			signed, _, serr := v4.NewSigner().PresignHTTP(context.Background(), creds, c, p, sr.service, sr.region, sr.t,
				func(o *v4.SignerOptions) { o.DisableHeaderHoisting = true })
			if serr != nil {
				return authErr(api.ErrInvalidSignature, "%s", msgSignatureMismatch)
			}
			u, perr := url.Parse(signed)
			if perr != nil {
				return authErr(api.ErrInvalidSignature, "%s", msgSignatureMismatch)
			}
			if err = v.compare(sr, u.Query().Get("X-Amz-SignedHeaders"), u.Query().Get("X-Amz-Signature")); err == nil {
				return nil
			}
		}
	}
	return err
}

// emptySHA256 is the SHA-256 of no bytes.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// compare checks the signer's result against what the client sent, in
// constant time.
func (v *sigv4Verifier) compare(sr sigv4Request, signedHeaders, signature string) error {
	want := strings.Join(sr.signedHeaders, ";")
	if signedHeaders != want {
		// The SDK's signer never signs some headers (User-Agent,
		// X-Amzn-Trace-Id, Expect, Transfer-Encoding); a client that did
		// cannot be verified by re-signing.
		v.log.Info("signed headers berth's signer does not reproduce", "client", want, "signer", signedHeaders)
		return authErr(api.ErrInvalidSignature, "%s (berth verifies by re-signing with the AWS SDK's signer, which signs %s where the request signed %s)",
			msgSignatureMismatch, clip(signedHeaders, 200), clip(want, 200))
	}
	if subtle.ConstantTimeCompare([]byte(signature), []byte(sr.signature)) != 1 {
		return authErr(api.ErrInvalidSignature, "%s", msgSignatureMismatch)
	}
	return nil
}
