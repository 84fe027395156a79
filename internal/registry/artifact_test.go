package registry

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// codeTree makes a code directory with an executable, scripts for both
// runtimes, a plain file and a subdirectory.
func codeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{
		"agent":     0o755,
		"main.py":   0o644,
		"run.py":    0o755, // a script, executable or not
		"index.mjs": 0o644,
		"server.js": 0o644,
		"notes.txt": 0o644,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "pkg.py"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestArtifactCommand(t *testing.T) {
	dir := codeTree(t)
	outside := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(outside, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	code := func(runtime string, ep ...string) ArtifactSpec {
		return ArtifactSpec{Code: &CodeSpec{Bucket: api.LocalBucket, Prefix: dir, Runtime: runtime, EntryPoint: ep}}
	}
	for _, tc := range []struct {
		name string
		a    ArtifactSpec
		want []string // the command, when accepted
		dir  string   // its working directory (default dir)
	}{
		{name: "executable in the code dir", a: code("PYTHON_3_12", "agent"), want: []string{filepath.Join(dir, "agent")}},
		{name: "executable with an argument", a: code("NODE_22", "agent", "--serve"), want: []string{filepath.Join(dir, "agent"), "--serve"}},
		{name: "absolute executable elsewhere", a: code("PYTHON_3_10", outside), want: []string{outside}},
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
			cmd, wd, err := tc.a.Command()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cmd, tc.want) || wd != dir {
				t.Fatalf("got %q in %s, want %q in %s", cmd, wd, tc.want, dir)
			}
		})
	}
}

func TestArtifactCommandRefusals(t *testing.T) {
	dir := codeTree(t)
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
		{"container refused", ArtifactSpec{ContainerURI: "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:1"},
			"agentRuntimeArtifact.containerConfiguration", api.LocalBucket},
		{"no s3 location", ArtifactSpec{Code: &CodeSpec{Runtime: "PYTHON_3_12", EntryPoint: []string{"main.py"}}}, cc + ".code.s3", "required"},
		{"a real S3 bucket", ArtifactSpec{Code: &CodeSpec{Bucket: "my-bucket", Prefix: "agents/a.zip", Runtime: "PYTHON_3_12", EntryPoint: []string{"main.py"}}},
			cc + ".code.s3.bucket", `"my-bucket"`},
		{"bucket without prefix", ArtifactSpec{Code: &CodeSpec{Bucket: "b"}}, cc + ".code.s3.bucket", "does not fetch from S3"},
		{"relative prefix", ArtifactSpec{Code: withPrefix("agents/a")}, cc + ".code.s3.prefix", "absolute"},
		{"empty prefix", ArtifactSpec{Code: withPrefix("")}, cc + ".code.s3.prefix", "absolute"},
		{"missing directory", ArtifactSpec{Code: withPrefix(filepath.Join(dir, "nope"))}, cc + ".code.s3.prefix", "does not exist"},
		{"prefix is a file", ArtifactSpec{Code: withPrefix(filepath.Join(dir, "main.py"))}, cc + ".code.s3.prefix", "does not exist"},
		{"unknown runtime", ArtifactSpec{Code: code("PYTHON_2_7", "main.py")}, cc + ".runtime", "PYTHON_2_7"},
		{"no runtime", ArtifactSpec{Code: code("", "main.py")}, cc + ".runtime", "NODE_22"},
		{"no entry point", ArtifactSpec{Code: code("PYTHON_3_12")}, cc + ".entryPoint", "got 0"},
		{"three entries", ArtifactSpec{Code: code("PYTHON_3_12", "a", "b", "c")}, cc + ".entryPoint", "got 3"},
		{"empty entry", ArtifactSpec{Code: code("PYTHON_3_12", "")}, cc + ".entryPoint[0]", "1-128"},
		{"129-character entry", ArtifactSpec{Code: code("PYTHON_3_12", "main.py", strings.Repeat("a", 129))}, cc + ".entryPoint[1]", "1-128"},
		{"missing script", ArtifactSpec{Code: code("PYTHON_3_12", "missing.py")}, cc + ".entryPoint[0]", "does not exist"},
		{"script is a directory", ArtifactSpec{Code: code("PYTHON_3_12", "pkg.py")}, cc + ".entryPoint[0]", "does not exist"},
		{"a python script under NODE_22", ArtifactSpec{Code: code("NODE_22", "main.py")}, cc + ".entryPoint[0]", "neither an executable"},
		{"a plain file", ArtifactSpec{Code: code("PYTHON_3_12", "notes.txt")}, cc + ".entryPoint[0]", "neither an executable"},
		{"missing executable", ArtifactSpec{Code: code("PYTHON_3_12", "gone")}, cc + ".entryPoint[0]", "neither an executable"},
		{"wrapper's script missing", ArtifactSpec{Code: code("PYTHON_3_12", "opentelemetry-instrument", "missing.py")}, cc + ".entryPoint[1]", "does not exist"},
		{"wrapper given as a path", ArtifactSpec{Code: code("PYTHON_3_12", "./wrap", "main.py")}, cc + ".entryPoint[0]", "neither an executable"},
		{"two entries, second no script", ArtifactSpec{Code: code("PYTHON_3_12", "wrap", "notes.txt")}, cc + ".entryPoint[0]", "neither an executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, wd, err := tc.a.Command()
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
