package protocol

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
)

// Each protocol is hosted where AgentCore's contract puts it.
func TestAdapters(t *testing.T) {
	for _, tc := range []struct {
		p      registry.Protocol
		port   int
		path   string
		health Health
		header string
	}{
		{"", 8080, "/invocations", HealthPing, ""},
		{registry.ProtocolHTTP, 8080, "/invocations", HealthPing, ""},
		{registry.ProtocolMCP, 8000, "/mcp", HealthPort, "Mcp-Session-Id"},
		{registry.ProtocolA2A, 9000, "/", HealthPing, ""},
		{registry.ProtocolAGUI, 8080, "/invocations", HealthPing, ""},
	} {
		a := For(tc.p)
		if a.Port != tc.port || a.Path != tc.path || a.Health != tc.health || a.SessionHeader != tc.header {
			t.Errorf("%q: %+v", tc.p, a)
		}
	}
	if For(registry.ProtocolA2A).Card != "/.well-known/agent-card.json" || For(registry.ProtocolMCP).Card != "" {
		t.Error("only A2A agents have a card")
	}
}

func TestAcceptable(t *testing.T) {
	mcp := For(registry.ProtocolMCP)
	for accept, want := range map[string]bool{
		"application/json, text/event-stream":       true,
		"text/event-stream;q=0.9, application/json": true,
		"*/*":                                  true,
		"application/*, text/*":                true,
		"application/json":                     false,
		"text/event-stream":                    false,
		"":                                     false,
		"application/jsonx, text/event-stream": false,
		"APPLICATION/JSON ; charset=utf-8, TEXT/EVENT-STREAM": true,
	} {
		h := http.Header{}
		if accept != "" {
			h.Set("Accept", accept)
		}
		if got := mcp.Acceptable(h); got != want {
			t.Errorf("MCP, Accept %q: %v", accept, got)
		}
	}
	if !For(registry.ProtocolHTTP).Acceptable(http.Header{"Accept": {"text/plain"}}) {
		t.Error("HTTP runtimes take any Accept")
	}
}

func TestSession(t *testing.T) {
	runtimeSession := "rt-session-0123456789-0123456789-0123456789"
	http := For(registry.ProtocolHTTP)
	if s, _ := http.Session("", runtimeSession); s.ID != runtimeSession || s.Wire != "" || s.Chosen {
		t.Errorf("HTTP with a session: %+v", s)
	}
	if s, _ := http.Session("", ""); !api.ValidSessionID(s.ID) || !s.Chosen {
		t.Errorf("HTTP without one: %+v", s)
	}

	mcp := For(registry.ProtocolMCP)
	// The client's ID wins, and is the key when it is a session ID.
	if s, _ := mcp.Session(runtimeSession, "other-session-0123456789-0123456789-012"); s.ID != runtimeSession || s.Wire != runtimeSession || s.Chosen {
		t.Errorf("MCP with a valid ID: %+v", s)
	}
	// A short server-minted ID is keyed by its digest, the same each time.
	s1, _ := mcp.Session("abc", "")
	s2, _ := mcp.Session("abc", "")
	if s1.Wire != "abc" || !api.ValidSessionID(s1.ID) || s1.ID != s2.ID || s1.ID == "abc" {
		t.Errorf("MCP with a short ID: %+v %+v", s1, s2)
	}
	// None: the runtime session's, else a new one; either way berth chose.
	if s, _ := mcp.Session("", runtimeSession); s.ID != runtimeSession || s.Wire != runtimeSession || !s.Chosen {
		t.Errorf("MCP, runtime session only: %+v", s)
	}
	if s, _ := mcp.Session("", ""); s.ID != s.Wire || !api.ValidSessionID(s.ID) || !s.Chosen {
		t.Errorf("MCP, nothing: %+v", s)
	}
	for _, bad := range []string{strings.Repeat("x", 1025), "has space", "tab\there", "ü"} {
		if _, err := mcp.Session(bad, ""); err == nil {
			t.Errorf("MCP took Mcp-Session-Id %q", bad)
		}
	}
}

func TestForwardWire(t *testing.T) {
	mcp := For(registry.ProtocolMCP)
	client := Session{ID: "k", Wire: "client-id"}
	chosen := Session{ID: "k", Wire: "berth-id", Chosen: true}
	for _, tc := range []struct {
		s              Session
		method, minted string
		want           string
	}{
		{client, "tools/call", "", "client-id"},
		{client, "tools/call", "server-id", "server-id"},
		{client, "initialize", "server-id", ""},
		{client, "initialize", "", ""},
		{chosen, "tools/list", "", "berth-id"},
		{chosen, "server/discover", "", ""},
		{client, "server/discover", "", "client-id"},
		{Session{ID: "k"}, "tools/call", "", ""},
	} {
		if got := mcp.ForwardWire(tc.s, tc.method, tc.minted); got != tc.want {
			t.Errorf("%+v %s minted %q: forwarded %q, want %q", tc.s, tc.method, tc.minted, got, tc.want)
		}
	}
}

func TestPeekRPC(t *testing.T) {
	for body, want := range map[string]RPCRequest{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`: {ID: []byte("7"), Method: "tools/call"},
		`{"jsonrpc":"2.0","id":"a","method":"x"}`:        {ID: []byte(`"a"`), Method: "x"},
		`{"jsonrpc":"2.0","id":null,"method":"x"}`:       {Method: "x"},
		`{"jsonrpc":"2.0","method":"notifications/x"}`:   {Method: "notifications/x"},
		`[{"jsonrpc":"2.0","id":1,"method":"x"}]`:        {},
		`not json`: {},
	} {
		got, rest, err := PeekRPC(strings.NewReader(body))
		if err != nil || string(got.ID) != string(want.ID) || got.Method != want.Method {
			t.Errorf("%s: %+v %v", body, got, err)
		}
		if b, _ := io.ReadAll(rest); string(b) != body {
			t.Errorf("%s: the body reads again as %q", body, b)
		}
	}
	// A body past the read-ahead still passes whole; its errors answer id null.
	big := `{"jsonrpc":"2.0","id":1,"method":"x","params":"` + strings.Repeat("a", peekLimit) + `"}`
	got, rest, _ := PeekRPC(strings.NewReader(big))
	if b, _ := io.ReadAll(rest); got.ID != nil || string(b) != big {
		t.Errorf("big body: %+v, %d of %d bytes", got, len(b), len(big))
	}
}
