package registry

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// codeTree makes a code root holding one code directory with an
// executable, scripts for both runtimes, a plain file, a subdirectory and
// a symlink that leads out; and an executable outside the root. It returns
// the rulebook with that root, and the code directory.
func codeTree(t *testing.T) (Rulebook, string) {
	t.Helper()
	top := t.TempDir()
	root := filepath.Join(top, "code")
	dir := filepath.Join(root, "agent")
	for _, d := range []string{filepath.Join(dir, "pkg.py"), filepath.Join(dir, "bin"), filepath.Join(top, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]os.FileMode{
		"agent":      0o755,
		"bin/serve":  0o755,
		"main.py":    0o644,
		"run.py":     0o755, // a script, executable or not
		"index.mjs":  0o644,
		"server.js":  0o644,
		"notes.txt":  0o644,
		"../../tool": 0o755,
		"../../x.py": 0o644,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(top, "tool"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	return Rulebook{CodeRoots: []string{root}, DataDir: filepath.Join(top, "data")}, dir
}

// control is a control plane checking by rb, with no code store: code
// runs where it lies.
func control(rb Rulebook) *Control {
	return NewControl(New(nil, Options{Rules: rb, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
}

// generic names the interpreter python3 whichever python3.x this host
// has: Control.python picks the runtime's own where it is installed.
func generic(cmd []string) []string {
	out := slices.Clone(cmd)
	for i, c := range out {
		if strings.HasPrefix(c, "python3.") {
			out[i] = "python3"
		}
	}
	return out
}

func TestArtifactCommand(t *testing.T) {
	rb, dir := codeTree(t)
	ctl := control(rb)
	code := func(runtime string, ep ...string) ArtifactSpec {
		return ArtifactSpec{Code: &CodeSpec{Bucket: api.LocalBucket, Prefix: dir, Runtime: runtime, EntryPoint: ep}}
	}
	for _, tc := range []struct {
		name string
		a    ArtifactSpec
		want []string // the command; it runs in dir
	}{
		{name: "executable in the code dir", a: code("PYTHON_3_12", "agent"), want: []string{"./agent"}},
		{name: "executable with an argument", a: code("NODE_22", "agent", "--serve"), want: []string{"./agent", "--serve"}},
		{name: "executable in a subdirectory", a: code("PYTHON_3_10", "bin/./serve"), want: []string{"./bin/serve"}},
		{name: "python script", a: code("PYTHON_3_13", "main.py"), want: []string{"python3", "main.py"}},
		{name: "python script with an argument", a: code("PYTHON_3_14", "main.py", "--debug"), want: []string{"python3", "main.py", "--debug"}},
		{name: "an executable .py is still a script", a: code("PYTHON_3_11", "run.py"), want: []string{"python3", "run.py"}},
		{name: "node script", a: code("NODE_22", "index.mjs"), want: []string{"node", "index.mjs"}},
		{name: "node .js script", a: code("NODE_22", "server.js"), want: []string{"node", "server.js"}},
		{name: "wrapper on PATH and a python script", a: code("PYTHON_3_12", "opentelemetry-instrument", "main.py"),
			want: []string{"opentelemetry-instrument", "python3", "main.py"}},
		{name: "wrapper and a node script", a: code("NODE_22", "with-env", "index.mjs"), want: []string{"with-env", "node", "index.mjs"}},
		{name: "prefix is cleaned", a: ArtifactSpec{Code: &CodeSpec{Bucket: api.LocalBucket, Prefix: dir + "/./", Runtime: "PYTHON_3_12", EntryPoint: []string{"main.py"}}},
			want: []string{"python3", "main.py"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, wd, digest, err := ctl.code(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(generic(cmd), tc.want) || wd != dir || digest != "" {
				t.Fatalf("got %q in %s, want %q in %s", cmd, wd, tc.want, dir)
			}
		})
	}
}

func TestArtifactCommandRefusals(t *testing.T) {
	rb, dir := codeTree(t)
	root := rb.CodeRoots[0]
	ctl := control(rb)
	if err := os.WriteFile(filepath.Join(dir, "agent.zip"), []byte("PK"), 0o644); err != nil {
		t.Fatal(err)
	}
	code := func(runtime string, ep ...string) *CodeSpec {
		return &CodeSpec{Bucket: api.LocalBucket, Prefix: dir, Runtime: runtime, EntryPoint: ep}
	}
	withPrefix := func(prefix string) *CodeSpec {
		c := code("PYTHON_3_12", "main.py")
		c.Prefix = prefix
		return c
	}
	const cc = "agentRuntimeArtifact.codeConfiguration"
	for _, tc := range []struct {
		name  string
		a     ArtifactSpec
		field string
		says  string // part of the message
	}{
		{"neither member", ArtifactSpec{}, "agentRuntimeArtifact", "codeConfiguration is required"},
		{"both members", ArtifactSpec{ContainerURI: "img", Code: code("PYTHON_3_12", "main.py")}, "agentRuntimeArtifact", "not both"},
		{"no s3 location", ArtifactSpec{Code: &CodeSpec{Runtime: "PYTHON_3_12", EntryPoint: []string{"main.py"}}}, cc + ".code.s3", "required"},
		{"a real S3 bucket", ArtifactSpec{Code: &CodeSpec{Bucket: "my-bucket", Prefix: "agents/a.zip", Runtime: "PYTHON_3_12", EntryPoint: []string{"main.py"}}},
			cc + ".code.s3.bucket", `"my-bucket"`},
		{"bucket without prefix", ArtifactSpec{Code: &CodeSpec{Bucket: "b"}}, cc + ".code.s3.bucket", "does not fetch from S3"},
		{"relative prefix", ArtifactSpec{Code: withPrefix("agents/a")}, cc + ".code.s3.prefix", "absolute"},
		{"empty prefix", ArtifactSpec{Code: withPrefix("")}, cc + ".code.s3.prefix", "absolute"},
		{"missing directory", ArtifactSpec{Code: withPrefix(filepath.Join(dir, "nope"))}, cc + ".code.s3.prefix", "no such directory"},
		{"prefix is a file", ArtifactSpec{Code: withPrefix(filepath.Join(dir, "main.py"))}, cc + ".code.s3.prefix", "no such directory"},
		{"a zip without a code store", ArtifactSpec{Code: withPrefix(filepath.Join(dir, "agent.zip"))}, cc + ".code.s3.prefix", "code store"},
		{"outside the code roots", ArtifactSpec{Code: withPrefix(t.TempDir())}, cc + ".code.s3.prefix", "code roots"},
		{"out of the code roots by ..", ArtifactSpec{Code: withPrefix(root + "/../data")}, cc + ".code.s3.prefix", "data directory"},
		{"the host's /proc", ArtifactSpec{Code: withPrefix("/proc/self")}, cc + ".code.s3.prefix", "/proc"},
		{"the host's /root", ArtifactSpec{Code: withPrefix("/root")}, cc + ".code.s3.prefix", "/root"},
		{"unknown runtime", ArtifactSpec{Code: code("PYTHON_2_7", "main.py")}, cc + ".runtime", "PYTHON_2_7"},
		{"no runtime", ArtifactSpec{Code: code("", "main.py")}, cc + ".runtime", "NODE_22"},
		{"no entry point", ArtifactSpec{Code: code("PYTHON_3_12")}, cc + ".entryPoint", "got 0"},
		{"three entries", ArtifactSpec{Code: code("PYTHON_3_12", "a", "b", "c")}, cc + ".entryPoint", "got 3"},
		{"empty entry", ArtifactSpec{Code: code("PYTHON_3_12", "")}, cc + ".entryPoint[0]", "1-128"},
		{"129-character entry", ArtifactSpec{Code: code("PYTHON_3_12", "main.py", strings.Repeat("a", 129))}, cc + ".entryPoint[1]", "1-128"},
		{"missing script", ArtifactSpec{Code: code("PYTHON_3_12", "missing.py")}, cc + ".entryPoint[0]", "does not exist"},
		{"an absolute executable", ArtifactSpec{Code: code("PYTHON_3_12", "/usr/bin/env")}, cc + ".entryPoint[0]", "absolute path"},
		{"an executable out of the directory", ArtifactSpec{Code: code("PYTHON_3_12", "../../tool")}, cc + ".entryPoint[0]", "leads out"},
		{"a symlink out of the directory", ArtifactSpec{Code: code("PYTHON_3_12", "link")}, cc + ".entryPoint[0]", "leads out"},
		{"a script out of the directory", ArtifactSpec{Code: code("PYTHON_3_12", "../../x.py")}, cc + ".entryPoint[0]", "leads out"},
		{"a wrapped script out of the directory", ArtifactSpec{Code: code("PYTHON_3_12", "opentelemetry-instrument", "../../x.py")}, cc + ".entryPoint[1]", "leads out"},
		{"script is a directory", ArtifactSpec{Code: code("PYTHON_3_12", "pkg.py")}, cc + ".entryPoint[0]", "does not exist"},
		{"a python script under NODE_22", ArtifactSpec{Code: code("NODE_22", "main.py")}, cc + ".entryPoint[0]", "neither an executable"},
		{"a plain file", ArtifactSpec{Code: code("PYTHON_3_12", "notes.txt")}, cc + ".entryPoint[0]", "neither an executable"},
		{"missing executable", ArtifactSpec{Code: code("PYTHON_3_12", "gone")}, cc + ".entryPoint[0]", "neither an executable"},
		{"wrapper's script missing", ArtifactSpec{Code: code("PYTHON_3_12", "opentelemetry-instrument", "missing.py")}, cc + ".entryPoint[1]", "does not exist"},
		{"wrapper given as a path", ArtifactSpec{Code: code("PYTHON_3_12", "./wrap", "main.py")}, cc + ".entryPoint[0]", "neither an executable"},
		{"two entries, second no script", ArtifactSpec{Code: code("PYTHON_3_12", "wrap", "notes.txt")}, cc + ".entryPoint[0]", "neither an executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, wd, _, err := ctl.code(tc.a)
			wantField(t, err, tc.field)
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%v does not say %q", err, tc.says)
			}
			if cmd != nil || wd != "" {
				t.Errorf("a refusal returned %q in %q", cmd, wd)
			}
		})
	}
}
