package main

import (
	"strings"
	"testing"
)

// Messages shaped as govulncheck -format json writes them.
const (
	config     = `{"config":{"go_version":"go1.26.8","db":"file:///db"}}`
	osvStd     = `{"osv":{"id":"GO-1","summary":"std bug"}}`
	osvMod     = `{"osv":{"id":"GO-2","summary":"module bug"}}`
	calledStd  = `{"finding":{"osv":"GO-1","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Serve"},{"module":"m","package":"m","function":"main","position":{"filename":"main.go","line":7}}]}}`
	calledMod  = `{"finding":{"osv":"GO-2","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.58.0","package":"golang.org/x/net/http2","function":"Serve"},{"module":"m","package":"m","function":"main","position":{"filename":"main.go","line":9}}]}}`
	importMod  = `{"finding":{"osv":"GO-2","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.58.0","package":"golang.org/x/net/http2"}]}}`
	requireMod = `{"finding":{"osv":"GO-3","fixed_version":"v1.2.0","trace":[{"module":"example.com/x","version":"v1.0.0"}]}}`
)

func TestGate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stream   []string
		wantFail bool
		want     []string
	}{
		{"clean", []string{config}, false,
			[]string{"0 called in modules, 0 called in the standard library, 0 more"}},
		{"module code called", []string{config, osvMod, importMod, calledMod}, true,
			[]string{"GO-2 in golang.org/x/net@v0.58.0 (golang.org/x/net/http2), fixed in v0.60.0, called from main.go:9: module bug", "FAIL: upgrade", "1 called in modules"}},
		{"standard library called", []string{config, osvStd, calledStd}, false,
			[]string{"GO-1 in go1.26.8 (net/http), fixed in go1.26.9, called from main.go:7: std bug", "not failing on the standard library's GO-1"}},
		{"required or imported, never called", []string{config, osvMod, importMod, requireMod}, false,
			[]string{"0 called in modules, 0 called in the standard library, 2 more in dependencies but not called"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			fail, err := gate(strings.NewReader(strings.Join(tc.stream, "\n")), &out)
			if err != nil {
				t.Fatal(err)
			}
			if fail != tc.wantFail {
				t.Errorf("fail = %v, want %v", fail, tc.wantFail)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestGateRejectsOtherInput(t *testing.T) {
	for _, in := range []string{"", "Scanning your code...", `{"progress":{"message":"x"}}`} {
		if _, err := gate(strings.NewReader(in), new(strings.Builder)); err == nil {
			t.Errorf("gate(%q) accepted input that is not govulncheck JSON", in)
		}
	}
}
