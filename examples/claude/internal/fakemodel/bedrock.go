package fakemodel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Amazon Bedrock's InvokeModel (POST /model/{modelId}/invoke) and
// InvokeModelWithResponseStream (.../invoke-with-response-stream) for
// Anthropic models: the Messages API body without model and stream, with
// anthropic_version; a JSON answer, or the answer's stream events each
// wrapped in a "chunk" event of the AWS event-stream binary framing.

// BedrockVersion is the anthropic_version Bedrock requires.
const BedrockVersion = "bedrock-2023-05-31"

func (s *Server) bedrock(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, kind, format string, args ...any) {
		msg := s.problem("bedrock: "+format, args...)
		w.Header().Set("X-Amzn-ErrorType", kind)
		writeJSON(w, status, map[string]string{"message": msg})
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(http.StatusBadRequest, "ValidationException", "read body: %v", err)
		return
	}
	if err := s.verifySigV4(r, body); err != nil {
		fail(http.StatusForbidden, "InvalidSignatureException", "%v", err)
		return
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		fail(http.StatusBadRequest, "ValidationException", "decode body: %v", err)
		return
	}
	for _, k := range []string{"model", "stream"} {
		if _, ok := keys[k]; ok {
			fail(http.StatusBadRequest, "ValidationException", "extraneous key [%s] is not permitted", k)
			return
		}
	}
	var in anthropicRequest
	if err := json.Unmarshal(body, &in); err != nil {
		fail(http.StatusBadRequest, "ValidationException", "decode body: %v", err)
		return
	}
	if in.AnthropicVersion != BedrockVersion {
		fail(http.StatusBadRequest, "ValidationException", "anthropic_version %q, want %q", in.AnthropicVersion, BedrockVersion)
		return
	}
	req, err := in.normalize()
	if err != nil {
		fail(http.StatusBadRequest, "ValidationException", "%v", err)
		return
	}
	req.Wire, req.Model = WireBedrock, r.PathValue("model")
	req.Stream = strings.HasSuffix(r.URL.Path, "/invoke-with-response-stream")
	req = s.answer(req, "toolu_bdrk_")
	msg := s.anthropicResponse(req)
	if !req.Stream {
		w.Header().Set("X-Amzn-Bedrock-Input-Token-Count", strconv.Itoa(msg.Usage.InputTokens))
		w.Header().Set("X-Amzn-Bedrock-Output-Token-Count", strconv.Itoa(msg.Usage.OutputTokens))
		writeJSON(w, http.StatusOK, msg)
		return
	}

	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.Header().Set("X-Amzn-Bedrock-Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	events := anthropicEvents(msg)
	for i, ev := range events {
		data := ev.Data
		if i == len(events)-1 {
			// Bedrock adds its metrics to message_stop.
			data, _ = json.Marshal(map[string]any{"type": ev.Type, "amazon-bedrock-invocationMetrics": map[string]int{
				"inputTokenCount": msg.Usage.InputTokens, "outputTokenCount": msg.Usage.OutputTokens,
				"invocationLatency": 1, "firstByteLatency": 1,
			}})
		}
		chunk, _ := json.Marshal(map[string]string{
			"bytes": base64.StdEncoding.EncodeToString(data),
			"p":     strings.Repeat("x", i%7), // Bedrock pads chunks to hide their length
		})
		frame := eventStreamMessage([][2]string{
			{":event-type", "chunk"},
			{":content-type", "application/json"},
			{":message-type", "event"},
		}, chunk)
		if _, err := w.Write(frame); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// eventStreamMessage frames one message of the AWS event-stream encoding:
//
//	total length (4) | headers length (4) | prelude CRC32 (4)
//	headers: name length (1) | name | type 7 = string (1) | value length (2) | value
//	payload | message CRC32 (4)
func eventStreamMessage(headers [][2]string, payload []byte) []byte {
	var hdr bytes.Buffer
	for _, h := range headers {
		hdr.WriteByte(byte(len(h[0])))
		hdr.WriteString(h[0])
		hdr.WriteByte(7)
		_ = binary.Write(&hdr, binary.BigEndian, uint16(len(h[1])))
		hdr.WriteString(h[1])
	}
	total := 12 + hdr.Len() + len(payload) + 4
	msg := make([]byte, 0, total)
	msg = binary.BigEndian.AppendUint32(msg, uint32(total))
	msg = binary.BigEndian.AppendUint32(msg, uint32(hdr.Len()))
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg[:8]))
	msg = append(msg, hdr.Bytes()...)
	msg = append(msg, payload...)
	return binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
}

// verifySigV4 checks r's AWS Signature Version 4 for service "bedrock":
// the access key, region and service of the credential scope, then the
// signature itself, by signing the same request again with the secret.
func (s *Server) verifySigV4(r *http.Request, body []byte) error {
	const algorithm = "AWS4-HMAC-SHA256 "
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, algorithm) {
		return fmt.Errorf("authorization %q is not SigV4", auth)
	}
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(auth, algorithm), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return fmt.Errorf("credential %q is not key/date/region/service/aws4_request", fields["Credential"])
	}
	if key, region, service := scope[0], scope[2], scope[3]; key != s.cfg.AWSAccessKey || region != s.cfg.AWSRegion || service != "bedrock" {
		return fmt.Errorf("credential scope %s/%s/%s, want %s/%s/bedrock", key, region, service, s.cfg.AWSAccessKey, s.cfg.AWSRegion)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("x-amz-date: %w", err)
	}
	if d := time.Since(at); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("x-amz-date %s is %s away", at, d)
	}

	// Sign a copy carrying only the signed headers, as the client did.
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	again := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: http.Header{}}
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host", "x-amz-date":
		case "content-length":
			again.ContentLength = r.ContentLength
		default:
			again.Header[textproto.CanonicalMIMEHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: s.cfg.AWSAccessKey, SecretAccessKey: s.cfg.AWSSecretKey,
		SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "bedrock", s.cfg.AWSRegion, at); err != nil {
		return fmt.Errorf("sign again: %w", err)
	}
	_, want, _ := strings.Cut(again.Header.Get("Authorization"), "Signature=")
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return errors.New("the request signature does not match the one calculated with the secret key")
	}
	return nil
}
