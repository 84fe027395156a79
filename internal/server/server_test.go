package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/google/uuid"
)

func TestSessionID(t *testing.T) {
	for _, tc := range []struct {
		id       string
		generate bool
		ok       bool
	}{
		{strings.Repeat("s", 33), false, true},
		{strings.Repeat("s", 256), false, true},
		{strings.Repeat("s", 32), false, false},
		{strings.Repeat("s", 257), true, false},
		{"", false, false},
		{"", true, true},
		{"-" + strings.Repeat("s", 40), false, false},
		{strings.Repeat("s", 40) + "/x", false, false},
		{strings.Repeat("s", 40) + " ", false, false},
		{"a-_" + strings.Repeat("0", 40), false, true},
	} {
		r := newRequest("POST", "/", nil)
		if tc.id != "" {
			r.Header.Set(api.HeaderSessionID, tc.id)
		}
		got, err := sessionID(r, tc.generate)
		if !tc.ok {
			wantValidation(t, err, "runtimeSessionId")
			if n := len(tc.id); (n < 33 || n > 256) && !strings.Contains(err.Error(), "value: "+itoa(n)) {
				t.Errorf("%d characters: %v does not give the length", n, err)
			}
			continue
		}
		switch {
		case err != nil:
			t.Errorf("%d characters: %v", len(tc.id), err)
		case tc.id == "" && (uuid.Validate(got) != nil || !api.ValidSessionID(got)):
			t.Errorf("generated %q", got)
		case tc.id != "" && got != tc.id:
			t.Errorf("got %q, sent %q", got, tc.id)
		}
	}
	r := newRequest("POST", "/", nil)
	a, _ := sessionID(r, true)
	b, _ := sessionID(r, true)
	if a == b {
		t.Error("generated the same session ID twice")
	}
}

func TestQualifier(t *testing.T) {
	for query, want := range map[string]string{
		"":                             "DEFAULT",
		"?qualifier=":                  "DEFAULT",
		"?qualifier=prod":              "prod",
		"?qualifier=prod&qualifier=x":  "prod",
		"?Qualifier=prod":              "DEFAULT",
		"?other=1&qualifier=v2_pinned": "v2_pinned",
	} {
		if got, err := qualifier(newRequest("POST", "/runtimes/x/invocations"+query, nil)); err != nil || got != want {
			t.Errorf("%q: got %q %v, want %q", query, got, err, want)
		}
	}
	// A malformed query or name is refused, never taken for DEFAULT.
	for _, query := range []string{"?qualifier=a%2Fb", "?qualifier=%zz", "?qualifier=prod;x", "?qualifier=-x", "?qualifier=" + strings.Repeat("q", 49)} {
		got, err := qualifier(newRequest("POST", "/runtimes/x/invocations"+query, nil))
		wantValidation(t, err, "qualifier")
		if got != "" {
			t.Errorf("%q: refused, but named %q", query, got)
		}
	}
}

func sid(n int) string { return strings.Repeat("7", n) }

func invokeReq(ref, query, session, body string) *http.Request {
	r := newRequest("POST", "/runtimes/"+url.PathEscape(ref)+"/invocations"+query, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if session != "" {
		r.Header.Set(api.HeaderSessionID, session)
	}
	return r
}

// An invocation reaches the agent with the headers it may see, by any
// name of its runtime, and the answer comes back as the agent sent it.
func TestInvoke(t *testing.T) {
	h := newHarness(t, "X-Tenant-Id")
	for _, ref := range []string{h.rt.ARN, h.rt.ID, h.rt.Name, h.rt.ARN + "/runtime-endpoint/DEFAULT"} {
		r := invokeReq(ref, "", sid(40), `{"prompt":"hi"}`)
		r.Header.Set("X-Tenant-Id", "t-1")
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
		r.Header.Set("X-Amz-Date", "20250101T000000Z")
		r.Header.Set(api.HeaderCustomPrefix+"Team", "blue")
		w := h.do(r)
		if w.Code != 200 || w.Header().Get(api.HeaderSessionID) != sid(40) || w.Header().Get(api.HeaderAWSRequestID) == "" {
			t.Fatalf("%s: %d %v %s", ref, w.Code, w.Header(), w.Body)
		}
		// sandboxfake's agent answers with what it was sent.
		var echo struct {
			Payload json.RawMessage
			Headers http.Header
		}
		if err := json.NewDecoder(w.Body).Decode(&echo); err != nil || string(echo.Payload) != `{"prompt":"hi"}` {
			t.Fatalf("%s: answer %+v %v", ref, echo, err)
		}
		got := echo.Headers
		if got.Get(api.HeaderSessionID) != sid(40) || got.Get("X-Tenant-Id") != "t-1" || got.Get(api.HeaderCustomPrefix+"Team") != "blue" ||
			got.Get(api.HeaderRequestID) == "" || got.Get("Authorization") != "" || got.Get("X-Amz-Date") != "" {
			t.Fatalf("%s: the agent saw %v", ref, got)
		}
	}
	// Without a session ID berth makes one and says which.
	w := h.do(invokeReq(h.rt.ID, "", "", "{}"))
	if w.Code != 200 || !api.ValidSessionID(w.Header().Get(api.HeaderSessionID)) {
		t.Fatalf("no session ID: %d %v", w.Code, w.Header())
	}
}

func TestInvokeRefusals(t *testing.T) {
	h := newHarness(t, "X-Tenant-Id")
	small := New(Options{Registry: h.reg, Sessions: h.srv.sessions, MaxPayloadBytes: 10, Logger: discard()})
	for _, tc := range []struct {
		name  string
		srv   *Server
		req   func() *http.Request
		typ   api.ErrorType
		field string
	}{
		{"short session ID", h.srv, func() *http.Request { return invokeReq(h.rt.ID, "", sid(32), "{}") }, api.ErrValidation, "runtimeSessionId"},
		{"long session ID", h.srv, func() *http.Request { return invokeReq(h.rt.ID, "", sid(257), "{}") }, api.ErrValidation, "runtimeSessionId"},
		{"unknown runtime", h.srv, func() *http.Request { return invokeReq("ghost", "", sid(40), "{}") }, api.ErrResourceNotFound, ""},
		{"unknown runtime ARN", h.srv, func() *http.Request {
			return invokeReq("arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/ghost-0123456789", "", sid(40), "{}")
		}, api.ErrResourceNotFound, ""},
		{"unknown qualifier", h.srv, func() *http.Request { return invokeReq(h.rt.ID, "?qualifier=prod", sid(40), "{}") }, api.ErrResourceNotFound, ""},
		{"malformed qualifier", h.srv, func() *http.Request { return invokeReq(h.rt.ID, "?qualifier=a%2Fb", sid(40), "{}") }, api.ErrValidation, "qualifier"},
		{"session ID with a slash", h.srv, func() *http.Request { return invokeReq(h.rt.ID, "", sid(40)+"/x", "{}") }, api.ErrValidation, "runtimeSessionId"},
		{"too many custom headers", h.srv, func() *http.Request {
			r := invokeReq(h.rt.ID, "", sid(40), "{}")
			for i := range 21 {
				r.Header.Set(api.HeaderCustomPrefix+"H"+itoa(i), "v")
			}
			return r
		}, api.ErrValidation, api.HeaderCustomPrefix + "*"},
		{"user ID over 1024", h.srv, func() *http.Request {
			r := invokeReq(h.rt.ID, "", sid(40), "{}")
			r.Header.Set(api.HeaderUserID, strings.Repeat("u", 1025))
			return r
		}, api.ErrValidation, "runtimeUserId"},
		{"allow-listed header over 4 KB", h.srv, func() *http.Request {
			r := invokeReq(h.rt.ID, "", sid(40), "{}")
			r.Header.Set("X-Tenant-Id", strings.Repeat("t", 4097))
			return r
		}, api.ErrValidation, "X-Tenant-Id"},
		{"declared payload over the cap", small, func() *http.Request { return invokeReq(h.rt.ID, "", sid(40), strings.Repeat("p", 11)) }, api.ErrValidation, "payload"},
		{"no route", h.srv, func() *http.Request { return newRequest("GET", "/nowhere", nil) }, api.ErrResourceNotFound, ""},
		{"stop without a session ID", h.srv, func() *http.Request {
			return newRequest("POST", "/runtimes/"+h.rt.ID+"/stopruntimesession", nil)
		}, api.ErrValidation, "runtimeSessionId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.calls()
			e := readError(t, serve(tc.srv, tc.req()))
			if e.typ != tc.typ || (tc.field != "" && (len(e.body.FieldList) != 1 || e.body.FieldList[0].Name != tc.field)) {
				t.Fatalf("got %+v, want %s on %q", e, tc.typ, tc.field)
			}
			if h.calls() != before {
				t.Fatal("a refused call reached the agent")
			}
		})
	}
}

// A payload without a declared length is cut at the cap while it streams.
func TestInvokeStreamedPayloadCap(t *testing.T) {
	h := newHarness(t)
	small := New(Options{Registry: h.reg, Sessions: h.srv.sessions, MaxPayloadBytes: 10, Logger: discard()})
	r := invokeReq(h.rt.ID, "", sid(40), strings.Repeat("p", 100))
	r.ContentLength = -1
	e := readError(t, serve(small, r))
	if e.typ != api.ErrValidation || !strings.Contains(e.body.Message, "10 bytes") {
		t.Fatalf("got %+v", e)
	}
}

func TestStopSession(t *testing.T) {
	h := newHarness(t)
	if w := h.do(invokeReq(h.rt.ID, "", sid(40), "{}")); w.Code != 200 {
		t.Fatalf("invoke: %d %s", w.Code, w.Body)
	}
	stop := func(body string) *httptest.ResponseRecorder {
		r := newRequest("POST", "/runtimes/"+url.PathEscape(h.rt.ARN)+"/stopruntimesession", strings.NewReader(body))
		r.Header.Set(api.HeaderSessionID, sid(40))
		return h.do(r)
	}
	if e := readError(t, stop(`{"clientToken":"short"}`)); e.typ != api.ErrValidation || e.body.FieldList[0].Name != "clientToken" {
		t.Fatalf("short token: %+v", e)
	}
	w := stop(`{"clientToken":"` + strings.Repeat("c", 40) + `"}`)
	if w.Code != 200 || w.Body.String() != "{}" || w.Header().Get(api.HeaderSessionID) != sid(40) {
		t.Fatalf("stop: %d %s", w.Code, w.Body)
	}
	if e := readError(t, stop("")); e.typ != api.ErrResourceNotFound {
		t.Fatalf("second stop: %+v", e)
	}
}
