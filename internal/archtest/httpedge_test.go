package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// httpEdges are the directories, relative to the module root, whose
// non-test code may speak HTTP statuses and AgentCore's error types: the
// daemon's HTTP edge and the CLI; api, which defines the wire names;
// statesock, which speaks berth's own durable-state protocol to its agents,
// not AgentCore's; and code that is an HTTP peer of the daemon rather than
// part of it: the agent SDK serves the agent's own HTTP, the client reads
// berth's answers, auth reads OIDC issuers' answers (it reports its own
// failures through error types the server maps), and the examples, the
// conformance suite's test agent and sandboxfake's in-process agent are
// agents; imagetest serves a test registry (and writes tar headers).
var httpEdges = []string{
	"internal/server",
	"cmd",
	"api",
	"internal/session/statesock",
	"app",
	"client",
	"internal/auth",
	"examples",
	"internal/sandbox/sandboxtest",
	"internal/sandbox/sandboxfake",
	"internal/image/imagetest",
}

// knownViolations are breaches of the rule found when the test was
// written, by file and what, each waiting for its fix. The test fails when
// one is fixed, so the list only shrinks.
var knownViolations = map[string]string{}

// Only the HTTP edge maps errors to HTTP: no other non-test file writes a
// status, names an http.Status identifier, calls http.Error or names
// AgentCore's error-type header.
func TestOnlyServerMapsErrorsToHTTP(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var files int
	known := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || inEdge(rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		files++
		for _, v := range httpViolations(t, path) {
			key := rel + ": " + v.what
			if why, ok := knownViolations[key]; ok {
				known[key] = true
				t.Logf("known violation, not yet fixed: %s:%d: %s (%s)", rel, v.line, v.what, why)
				continue
			}
			t.Errorf("%s:%d: %s; only %s may", rel, v.line, v.what, strings.Join(httpEdges, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A walk that saw nothing would pass vacuously.
	if files < 20 {
		t.Fatalf("checked only %d files under %s", files, root)
	}
	for key := range knownViolations {
		if !known[key] {
			t.Errorf("known violation %q is gone: delete it from knownViolations", key)
		}
	}
}

func inEdge(rel string) bool {
	return slices.ContainsFunc(httpEdges, func(e string) bool { return rel == e || strings.HasPrefix(rel, e+"/") })
}

type violation struct {
	line int
	what string
}

// httpViolations parses one file and lists every place it speaks HTTP
// statuses or AgentCore's error types.
func httpViolations(t *testing.T, path string) []violation {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return violationsIn(fset, f)
}

// violationsIn lists the HTTP edge's vocabulary in f.
func violationsIn(fset *token.FileSet, f *ast.File) []violation {
	// The names this file gives net/http and berth's api package.
	httpNames, apiNames := map[string]bool{}, map[string]bool{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := p[strings.LastIndex(p, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		switch p {
		case "net/http":
			httpNames[name] = true
		case module + "/api":
			apiNames[name] = true
		}
	}
	var out []violation
	report := func(n ast.Node, what string) {
		out = append(out, violation{fset.Position(n.Pos()).Line, what})
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "WriteHeader" {
				report(n, "calls WriteHeader")
			}
		case *ast.SelectorExpr:
			pkg, ok := n.X.(*ast.Ident)
			if !ok {
				return true
			}
			switch name := n.Sel.Name; {
			case httpNames[pkg.Name] && name == "Error":
				report(n, "uses http.Error")
			case httpNames[pkg.Name] && strings.HasPrefix(name, "Status"):
				report(n, "uses http."+name)
			case apiNames[pkg.Name] && name == "HeaderErrorType":
				report(n, "uses api.HeaderErrorType")
			}
		case *ast.BasicLit:
			if n.Kind == token.STRING && strings.Contains(strings.ToLower(n.Value), "x-amzn-errortype") {
				report(n, "spells the X-Amzn-ErrorType header")
			}
		}
		return true
	})
	return out
}

// The check finds each kind of breach, under any import name, and leaves
// other HTTP code alone.
func TestViolationsIn(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"WriteHeader", `w.WriteHeader(500)`, []string{"calls WriteHeader"}},
		{"WriteHeader on any value", `rec.rw.WriteHeader(code)`, []string{"calls WriteHeader"}},
		{"http.Error", `http.Error(w, "no", 400)`, []string{"uses http.Error"}},
		{"status constant", `return http.StatusConflict`, []string{"uses http.StatusConflict"}},
		{"status text", `s := http.StatusText(code)`, []string{"uses http.StatusText"}},
		{"renamed net/http", `nethttp.Error(w, "no", nethttp.StatusTeapot)`, []string{"uses http.Error", "uses http.StatusTeapot"}},
		{"error-type header by name", `w.Header().Set(api.HeaderErrorType, "x")`, []string{"uses api.HeaderErrorType"}},
		{"error-type header spelled", `w.Header().Set("x-amzn-ErrorType", "ValidationException")`, []string{"spells the X-Amzn-ErrorType header"}},
		{"error-type header in a raw string", "h := `X-Amzn-Errortype`", []string{"spells the X-Amzn-ErrorType header"}},
		{"client code", `req, _ := http.NewRequest(http.MethodGet, "/ping", nil); _ = req.Header.Get(api.HeaderSessionID)`, nil},
		{"a Status that is not net/http's", `return other.StatusOK`, nil},
		{"an Error that is not net/http's", `other.Error(w, "x")`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := `package p

import (
	"net/http"
	nethttp "net/http"
	"` + module + `/api"
	"example.com/other"
)

var _, _, _, _ = http.Get, nethttp.Get, api.HeaderSessionID, other.X

func f() {
	` + tc.src + `
}
`
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range violationsIn(fset, f) {
				if v.line != 13 {
					t.Errorf("violation on line %d, want 13", v.line)
				}
				got = append(got, v.what)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
