package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "9": 9, "10": 10, "12345": 12345, "99999": 99999} {
		got, err := ParseVersion("agentRuntimeVersion", in)
		if err != nil || got != want {
			t.Errorf("%q: got %d %v, want %d", in, got, err, want)
		}
		if FormatVersion(got) != in {
			t.Errorf("%q does not round-trip: %q", in, FormatVersion(got))
		}
	}
	for _, bad := range []string{"", "0", "00", "01", "-1", "+1", " 1", "1 ", "1.0", "1e3", "100000", "999999", "0x1", "one", "\u0661", "1\n"} {
		n, err := ParseVersion("version", bad)
		wantField(t, err, "version")
		if n != 0 {
			t.Errorf("%q: refused but returned %d", bad, n)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "Z", "agent", "my_agent_2", "A1_", strings.Repeat("a", 48)} {
		if err := ValidateName("agentRuntimeName", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "9lives", "_a", "a-b", "a b", "a.b", "é", "agent\n", strings.Repeat("a", 49), "DEFAULT/x"} {
		wantField(t, ValidateName("name", bad), "name")
	}
}

// runtimeRefCases are RuntimeRef's table, and FuzzRuntimeRef's seeds.
var runtimeRefCases = map[string]string{
	"arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent-AbCdE12345":                          "agent-AbCdE12345",
	"arn:aws:bedrock-agentcore:eu-west-1:123456789012:runtime/agent-AbCdE12345/runtime-endpoint/DEFAULT": "agent-AbCdE12345",
	"arn:aws-cn:bedrock-agentcore:cn-north-1:123456789012:runtime/x-0123456789":                          "x-0123456789",
	"arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/":                                          "",
	"agent-AbCdE12345": "agent-AbCdE12345",
	"agent":            "agent",
	"":                 "",
	// Not a runtime ARN: left as it is, to fail the lookup.
	"arn:aws:iam::123456789012:role/agent": "arn:aws:iam::123456789012:role/agent",
	// Only ARNs are taken apart.
	"x:runtime/agent": "x:runtime/agent",
}

func TestRuntimeRef(t *testing.T) {
	for in, want := range runtimeRefCases {
		if got := RuntimeRef(in); got != want {
			t.Errorf("RuntimeRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEndpointSpecValidate(t *testing.T) {
	rt := Runtime{ID: "agent-AbCdE12345", LatestVersion: 3}
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name  string
		spec  EndpointSpec
		want  int
		field string
	}{
		{"version left out: the latest", EndpointSpec{}, 3, ""},
		{"pinned", EndpointSpec{Version: "2"}, 2, ""},
		{"the latest, named", EndpointSpec{Version: "3"}, 3, ""},
		{"a version not made yet", EndpointSpec{Version: "4"}, 0, "agentRuntimeVersion"},
		{"version zero", EndpointSpec{Version: "0"}, 0, "agentRuntimeVersion"},
		{"not a number", EndpointSpec{Version: "latest"}, 0, "agentRuntimeVersion"},
		{"description of 256", EndpointSpec{Description: str(strings.Repeat("d", 256))}, 3, ""},
		{"description of 257", EndpointSpec{Description: str(strings.Repeat("d", 257))}, 0, "description"},
		{"empty description", EndpointSpec{Description: str("")}, 0, "description"},
		{"tags are checked", EndpointSpec{Tags: map[string]string{"berth:sandbox": "process"}}, 0, "tags"},
		{"good tags", EndpointSpec{Tags: map[string]string{"team": "a"}}, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.spec.validate(rt)
			if tc.field != "" {
				wantField(t, err, tc.field)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d %v, want %d", got, err, tc.want)
			}
		})
	}
}

func TestValidatePage(t *testing.T) {
	for _, ok := range []Page{{}, {MaxResults: 1}, {MaxResults: 100}, {NextToken: strings.Repeat("t", 2048)}} {
		if err := ValidatePage(ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	wantField(t, ValidatePage(Page{MaxResults: -1}), "maxResults")
	wantField(t, ValidatePage(Page{MaxResults: 101}), "maxResults")
	wantField(t, ValidatePage(Page{NextToken: strings.Repeat("t", 2049)}), "nextToken")
	// A store's refusal of a token names the token; other errors pass.
	wantField(t, pageErr(errdefs.ErrInvalidArgument), "nextToken")
	if err := pageErr(errdefs.ErrUnavailable); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("pageErr changed %v", err)
	}
}

// StableID keeps a config runtime's ID across restarts; RandomID makes a
// fresh one; both are {name}-{10 alnum}.
func TestRuntimeIDs(t *testing.T) {
	a, b := StableID("agent"), StableID("agent")
	if a != b || a == StableID("agent2") {
		t.Fatal("StableID is not a function of the name")
	}
	for _, id := range []string{StableID("agent"), RandomID("agent")} {
		suffix, ok := strings.CutPrefix(id, "agent-")
		if !ok || len(suffix) != 10 || strings.Trim(suffix, idAlphabet) != "" {
			t.Errorf("%q is not agent-{10 alnum}", id)
		}
	}
	if x, y := RandomID("a"), RandomID("a"); x == y {
		t.Error("RandomID repeated itself")
	}
}
