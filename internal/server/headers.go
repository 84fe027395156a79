package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/api"
	"github.com/google/uuid"
)

// maxForwardedValue is AgentCore's cap on a forwarded header value, and
// maxCustomHeaders berth's cap on how many Custom-* headers one call sends
// (AgentCore's allowlist cap).
const (
	maxForwardedValue = 4 << 10
	maxCustomHeaders  = 20
)

// passthrough headers always reach the agent.
var passthrough = []string{"Content-Type", "Accept", api.HeaderUserID,
	api.HeaderTraceID, api.HeaderTraceParent, api.HeaderTraceState, api.HeaderBaggage,
	"Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name"}

// forwardHeaders builds the headers an agent sees: never x-amz-* or other
// x-amzn-* headers, never the caller's credentials unless allow-listed,
// and never Authorization but a JWT runtime's bearer token (a SigV4
// signature, even one a stored allowlist names, stays with berth).
func forwardHeaders(r *http.Request, allowlist []string, jwt bool) (http.Header, error) {
	out := make(http.Header, 8)
	for _, k := range passthrough {
		if v, ok := r.Header[k]; ok {
			out[k] = v
		}
	}
	// boto3 sends no Content-Type when the caller names none (the
	// tutorial's calls don't); agents built on AWS's SDKs refuse a body
	// without one. A type the caller sends passes unchanged.
	if _, ok := out["Content-Type"]; !ok {
		out.Set("Content-Type", "application/json")
	}
	custom := 0
	for k, v := range r.Header {
		if !strings.HasPrefix(k, api.HeaderCustomPrefix) {
			continue
		}
		if custom++; custom > maxCustomHeaders {
			return nil, validation(api.HeaderCustomPrefix+"*", "more than "+itoa(maxCustomHeaders)+" custom headers")
		}
		for _, s := range v {
			if len(s) > maxForwardedValue {
				return nil, validation(k, "header "+k+" exceeds 4 KB")
			}
		}
		out[k] = v
	}
	for _, name := range allowlist {
		k := http.CanonicalHeaderKey(name)
		v, ok := r.Header[k]
		if !ok || k == "Authorization" && !jwt {
			continue
		}
		for _, s := range v {
			if len(s) > maxForwardedValue {
				return nil, validation(name, "header "+name+" exceeds 4 KB")
			}
		}
		out[k] = v
	}
	out.Set(api.HeaderRequestID, uuid.NewString())
	return out, nil
}

// allowListed reports whether name is on the allowlist.
func allowListed(allowlist []string, name string) bool {
	for _, h := range allowlist {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// stopBody is StopRuntimeSession's JSON body.
type stopBody struct {
	ClientToken string `json:"clientToken"`
}

func decodeStopBody(r *http.Request) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if te := typedError(nil); errors.As(err, &te) {
		return err
	}
	if err != nil {
		return validation("body", "read body: "+err.Error())
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	var b stopBody
	if err := json.Unmarshal(data, &b); err != nil {
		return &apiError{typ: api.ErrValidation, msg: "malformed JSON body: " + err.Error(), reason: "CannotParse"}
	}
	if b.ClientToken != "" && (len(b.ClientToken) < 33 || len(b.ClientToken) > 256) {
		return validation("clientToken", "clientToken must be 33 to 256 characters")
	}
	return nil
}

func itoa(n int) string     { return strconv.Itoa(n) }
func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
