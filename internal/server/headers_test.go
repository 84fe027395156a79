package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/google/uuid"
)

func TestForwardHeaders(t *testing.T) {
	r := newRequest("POST", "/runtimes/agent/invocations", nil)
	in := map[string][]string{
		// Always passed through.
		"Content-Type":         {"application/json"},
		"Accept":               {"text/event-stream"},
		api.HeaderUserID:       {"user-1"},
		api.HeaderTraceID:      {"Root=1-5759e988-bd862e3fe1be46a994272793"},
		api.HeaderTraceParent:  {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		api.HeaderTraceState:   {"vendor=x"},
		api.HeaderBaggage:      {"k=v"},
		"Mcp-Session-Id":       {"mcp-1"},
		"Mcp-Protocol-Version": {"2025-06-18"},
		"Mcp-Method":           {"tools/call"},
		"Mcp-Name":             {"add"},
		// The custom prefix, every value.
		api.HeaderCustomPrefix + "Tenant": {"a", "b"},
		// Allow-listed below.
		"X-Tenant-Id":   {"t-1"},
		"Authorization": {"Bearer secret"},
		// Never forwarded.
		"X-Amz-Date":           {"20250101T000000Z"},
		"X-Amz-Security-Token": {"token"},
		"X-Amz-Content-Sha256": {"UNSIGNED-PAYLOAD"},
		"X-Amzn-Requestid":     {"caller-chosen"},
		api.HeaderRequestID:    {"caller-chosen"},
		"Cookie":               {"session=1"},
		"X-Other":              {"o"},
		"Proxy-Authorization":  {"Basic x"},
	}
	for k, v := range in {
		r.Header[k] = v
	}
	want := []string{"Content-Type", "Accept", api.HeaderUserID, api.HeaderTraceID, api.HeaderTraceParent, api.HeaderTraceState,
		api.HeaderBaggage, "Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name", api.HeaderCustomPrefix + "Tenant"}

	t.Run("without an allowlist", func(t *testing.T) {
		out, err := forwardHeaders(r, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		checkForwarded(t, out, in, want)
	})
	t.Run("with an allowlist, in any case, on a JWT runtime", func(t *testing.T) {
		out, err := forwardHeaders(r, []string{"x-tenant-id", "Authorization", "X-Absent"}, true)
		if err != nil {
			t.Fatal(err)
		}
		checkForwarded(t, out, in, append(want, "X-Tenant-Id", "Authorization"))
	})
	t.Run("Authorization stays with berth without a JWT authorizer", func(t *testing.T) {
		out, err := forwardHeaders(r, []string{"x-tenant-id", "Authorization"}, false)
		if err != nil {
			t.Fatal(err)
		}
		checkForwarded(t, out, in, append(want, "X-Tenant-Id"))
	})
}

// checkForwarded checks out holds exactly the names in want with the
// caller's values, plus a fresh request ID.
func checkForwarded(t *testing.T, out http.Header, in map[string][]string, want []string) {
	t.Helper()
	for k, v := range out {
		if k == api.HeaderRequestID {
			continue
		}
		if !slices.Contains(want, k) {
			t.Errorf("forwarded %s: %q", k, v)
		} else if !slices.Equal(v, in[k]) {
			t.Errorf("%s: forwarded %q, sent %q", k, v, in[k])
		}
	}
	for _, k := range want {
		if _, ok := out[k]; !ok {
			t.Errorf("did not forward %s", k)
		}
	}
	id := out.Values(api.HeaderRequestID)
	if len(id) != 1 || uuid.Validate(id[0]) != nil || id[0] == "caller-chosen" {
		t.Errorf("request ID %q: want one fresh UUID", id)
	}
}

func TestForwardHeadersFreshRequestID(t *testing.T) {
	r := newRequest("POST", "/", nil)
	a, _ := forwardHeaders(r, nil, false)
	b, _ := forwardHeaders(r, nil, false)
	if a.Get(api.HeaderRequestID) == b.Get(api.HeaderRequestID) {
		t.Fatal("two calls share a request ID")
	}
}

// An allow-listed value may be up to 4 KB; one longer refuses the call and
// names the header as the allowlist spells it.
func TestForwardHeadersCap(t *testing.T) {
	for _, tc := range []struct {
		values []string
		ok     bool
	}{
		{[]string{strings.Repeat("v", 4096)}, true},
		{[]string{strings.Repeat("v", 4097)}, false},
		{[]string{"short", strings.Repeat("v", 4097)}, false},
	} {
		r := newRequest("POST", "/", nil)
		r.Header["X-Tenant-Id"] = tc.values
		out, err := forwardHeaders(r, []string{"x-tenant-id"}, false)
		if tc.ok {
			if err != nil || len(out.Get("X-Tenant-Id")) != 4096 {
				t.Errorf("4096 bytes: %v", err)
			}
			continue
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.typ != api.ErrValidation || len(ae.fields) != 1 || ae.fields[0].Name != "x-tenant-id" || out != nil {
			t.Errorf("%d values: got %v %v", len(tc.values), out, err)
		}
	}
}

// A call without Content-Type reaches the agent as JSON; one with a type
// keeps it.
func TestForwardHeadersContentType(t *testing.T) {
	r := newRequest("POST", "/", nil)
	if out, err := forwardHeaders(r, nil, false); err != nil || !slices.Equal(out["Content-Type"], []string{"application/json"}) {
		t.Fatalf("none sent: %q %v", out["Content-Type"], err)
	}
	r.Header.Set("Content-Type", "text/plain")
	if out, err := forwardHeaders(r, nil, false); err != nil || !slices.Equal(out["Content-Type"], []string{"text/plain"}) {
		t.Fatalf("text/plain sent: %q %v", out["Content-Type"], err)
	}
}

// Custom headers: at most 20, each value at most 4 KB.
func TestForwardHeadersCustomCaps(t *testing.T) {
	r := newRequest("POST", "/", nil)
	for i := range 20 {
		r.Header.Set(api.HeaderCustomPrefix+"H"+itoa(i), strings.Repeat("v", 4096))
	}
	if out, err := forwardHeaders(r, nil, false); err != nil || len(out) != 20+2 {
		t.Fatalf("20 custom headers of 4 KB: %d forwarded, %v", len(out), err)
	}
	r.Header.Set(api.HeaderCustomPrefix+"H20", "v")
	_, err := forwardHeaders(r, nil, false)
	wantValidation(t, err, api.HeaderCustomPrefix+"*")

	r = newRequest("POST", "/", nil)
	r.Header.Set(api.HeaderCustomPrefix+"Big", strings.Repeat("v", 4097))
	_, err = forwardHeaders(r, nil, false)
	wantValidation(t, err, api.HeaderCustomPrefix+"Big")
}

func TestDecodeStopBody(t *testing.T) {
	for _, tc := range []struct {
		body  string
		field string // "" accepted; "-" refused as malformed
	}{
		{"", ""},
		{"  \n", ""},
		{"{}", ""},
		{`{"clientToken":"` + strings.Repeat("a", 33) + `"}`, ""},
		{`{"clientToken":"` + strings.Repeat("a", 256) + `"}`, ""},
		{`{"clientToken":"` + strings.Repeat("a", 32) + `"}`, "clientToken"},
		{`{"clientToken":"` + strings.Repeat("a", 257) + `"}`, "clientToken"},
		{`{"clientToken":`, "-"},
		{`{"clientToken":5}`, "-"},
		{`[]`, "-"},
	} {
		err := decodeStopBody(newRequest("POST", "/", strings.NewReader(tc.body)))
		switch tc.field {
		case "":
			if err != nil {
				t.Errorf("%q: %v", tc.body, err)
			}
		case "-":
			var ae *apiError
			if !errors.As(err, &ae) || ae.typ != api.ErrValidation || ae.reason != "CannotParse" {
				t.Errorf("%q: got %v", tc.body, err)
			}
		default:
			wantValidation(t, err, tc.field)
		}
	}
}

// wantValidation checks err is a ValidationException naming field.
func wantValidation(t testing.TB, err error, field string) {
	t.Helper()
	ae := classify(err)
	if err == nil || ae.typ != api.ErrValidation || len(ae.fields) != 1 || ae.fields[0].Name != field {
		t.Fatalf("got %v (%+v), want a ValidationException on %s", err, ae, field)
	}
}
