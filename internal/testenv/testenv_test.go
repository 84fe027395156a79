package testenv_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testenv"
)

// helperEnv makes TestHelperProcess state a prerequisite: "missing" or
// "present".
const helperEnv = "TESTENV_HELPER"

// TestHelperProcess is not a test: TestRequire runs it in a child process
// with BERTH_TEST_REQUIRE set as each case needs.
func TestHelperProcess(t *testing.T) {
	var missing error
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "missing":
		missing = errors.New("no node in this test")
	}
	testenv.Require(t, testenv.Node, missing)
	t.Log("the test went on")
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name, helper, require string
		fail                  bool
		want                  []string
	}{
		{"missing, not required: skips", "missing", "", false,
			[]string{"--- SKIP", "prerequisite node is missing", "no node in this test"}},
		{"missing, another required: skips", "missing", "linux, root", false,
			[]string{"--- SKIP", "no node in this test"}},
		{"missing and required: fails", "missing", "linux,node,boto3", true,
			[]string{"--- FAIL", "prerequisite node is missing, and BERTH_TEST_REQUIRE requires it", "no node in this test"}},
		{"present and required: runs", "present", "node", false,
			[]string{"--- PASS", "the test went on"}},
		{"unknown name: fails", "present", "linux,nod", true,
			[]string{"--- FAIL", `unknown prerequisite "nod"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+tc.helper, testenv.EnvVar+"="+tc.require)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("run helper: %v", err)
			}
			if failed := err != nil; failed != tc.fail {
				t.Errorf("helper failed: %v, want %v", failed, tc.fail)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("helper output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("helper output:\n%s", out)
			}
		})
	}
}
