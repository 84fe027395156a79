// Package testenv lets a test state what it needs from the machine, so a
// missing prerequisite never passes unnoticed.
//
// A test calls Require with a prerequisite's name and the reason it is
// missing (nil when it is there). By default a missing prerequisite skips
// the test with that reason, so the suite runs on a laptop. When the
// comma-separated environment variable BERTH_TEST_REQUIRE lists the name
// (CI sets it), the test fails instead: there the prerequisite is promised.
//
// The prerequisites, by name:
//
//	linux     Linux with procfs, namespaces, cgroups and seccomp, as root:
//	          the linux sandbox backend works (linux.Available)
//	root      the test runs as uid 0
//	node      node 20 or later and npm on PATH
//	python3   python3 on PATH
//	boto3     python3 whose boto3 knows the bedrock-agentcore and
//	          bedrock-agentcore-control services
//	iptables  ip, iptables, iptables-save and iptables-restore on PATH
//	postgres  a PostgreSQL server the test may use
//	chromium  a headless chromium
//	qemu      qemu-user emulation of foreign architectures (binfmt_misc)
//	stress-ng stress-ng on PATH
//
// A new prerequisite gets a constant here and a line in this list and in
// the README's testing section. Skips for -short are not prerequisites and
// stay plain t.Skip.
package testenv

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// Prereq names something a test needs from the machine.
type Prereq string

// The prerequisites; the package doc says what each one means.
const (
	Linux    Prereq = "linux"
	Root     Prereq = "root"
	Node     Prereq = "node"
	Python3  Prereq = "python3"
	Boto3    Prereq = "boto3"
	Iptables Prereq = "iptables"
	Postgres Prereq = "postgres"
	Chromium Prereq = "chromium"
	Qemu     Prereq = "qemu"
	StressNG Prereq = "stress-ng"
)

var known = []Prereq{Linux, Root, Node, Python3, Boto3, Iptables, Postgres, Chromium, Qemu, StressNG}

// EnvVar lists the prerequisites that must be there: missing, they fail
// the test rather than skip it.
const EnvVar = "BERTH_TEST_REQUIRE"

// Require states that t needs p. missing says why p is not there, or is
// nil when it is. A missing p skips t, or fails it when EnvVar lists p.
func Require(t testing.TB, p Prereq, missing error) {
	t.Helper()
	if !slices.Contains(known, p) {
		t.Fatalf("testenv: unknown prerequisite %q", p)
	}
	required, err := requiredList()
	if err != nil {
		t.Fatal(err)
	}
	if missing == nil {
		return
	}
	if slices.Contains(required, p) {
		t.Fatalf("prerequisite %s is missing, and %s requires it: %v", p, EnvVar, missing)
	}
	t.Skipf("prerequisite %s is missing (%s=%s would fail here instead): %v", p, EnvVar, p, missing)
}

// requiredList parses EnvVar, refusing names it does not know: a typo
// would otherwise require nothing.
func requiredList() ([]Prereq, error) {
	var out []Prereq
	for name := range strings.SplitSeq(os.Getenv(EnvVar), ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(known, Prereq(name)) {
			return nil, fmt.Errorf("%s names unknown prerequisite %q; known: %v", EnvVar, name, known)
		}
		out = append(out, Prereq(name))
	}
	return out, nil
}

// ReportVar names a file where suites that count what they tried (the
// attack and escape suites) append their one-line figures, for
// scripts/test to print at the end.
const ReportVar = "BERTH_TEST_REPORT"

// Report logs a suite's figure and appends it to $BERTH_TEST_REPORT.
func Report(t testing.TB, suite, line string) {
	t.Helper()
	t.Logf("%s: %s", suite, line)
	path := os.Getenv(ReportVar)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: %s\n", suite, line)
}
