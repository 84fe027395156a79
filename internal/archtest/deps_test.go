package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/berth-dev/berth"

// deps lists the packages pkg depends on, standard library excluded.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func packages(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", pattern).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	return strings.Fields(string(out))
}

// The public packages an agent author or tool imports never pull in the
// daemon. api and client import only the standard library and api; app may
// also use github.com/coder/websocket, which has no dependencies of its own,
// rather than parse WebSocket frames by hand.
func TestPublicPackagesImportOnlyStdlibAndAPI(t *testing.T) {
	const websocket = "github.com/coder/websocket"
	for _, root := range []string{"api/...", "app/...", "client/..."} {
		for _, pkg := range packages(t, "./../../"+root) {
			inApp := strings.HasPrefix(pkg, module+"/app")
			for _, d := range deps(t, pkg) {
				switch {
				case d == pkg, d == module+"/api":
				case inApp && strings.HasPrefix(d, module+"/app"):
				case inApp && (d == websocket || strings.HasPrefix(d, websocket+"/")):
				default:
					t.Errorf("%s imports %s: api and client may import only the standard library and api; app also %s", pkg, d, websocket)
				}
			}
		}
	}
}

// Leaves never reach up into the session manager, server, store, registry
// or daemon: the sandbox backends, the image store, and auth (principals,
// signatures, authorizers), which the server and the registry use.
func TestLeavesStayBelowTheSessionManager(t *testing.T) {
	for _, root := range []string{"internal/sandbox/...", "internal/image/...", "internal/auth/..."} {
		for _, pkg := range packages(t, "./../../"+root) {
			for _, d := range deps(t, pkg) {
				for _, banned := range []string{"/internal/session", "/internal/server", "/internal/store", "/internal/daemon", "/internal/registry"} {
					if d == module+banned || strings.HasPrefix(d, module+banned+"/") {
						t.Errorf("%s imports %s", pkg, d)
					}
				}
			}
		}
	}
}

// Every package says what it is for.
func TestEveryPackageHasADocComment(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", "./../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("%s has no package doc comment", pkg)
		}
	}
}
