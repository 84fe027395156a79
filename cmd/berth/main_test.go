package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// TestMain lets the test binary serve as the linux sandbox's init step,
// as the berth binary does.
func TestMain(m *testing.M) {
	linux.MaybeRunInit()
	if os.Getenv("BERTH_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDemo runs `berth demo` end to end: the tutorial agent built from
// source, an embedded server, the official AWS SDK client.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := runDemo(context.Background(), &out, io.Discard, false); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	report := out.String()
	if strings.Contains(report, "✗") || !strings.Contains(report, "every step held") {
		t.Fatalf("demo report:\n%s", report)
	}
	if n := strings.Count(report, "✓"); n < 15 {
		t.Fatalf("only %d checks held:\n%s", n, report)
	}
}

func TestVersion(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil || !strings.HasPrefix(out.String(), "berth ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}

// TestMCPDemo runs `berth demo --protocol mcp` end to end: the Go SDK's
// MCP server built from source, an embedded berth, the SDK's client.
func TestMCPDemo(t *testing.T) {
	var out bytes.Buffer
	if err := runMCPDemo(context.Background(), &out, io.Discard, demoOptions{protocol: "mcp"}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	report := out.String()
	if strings.Contains(report, "✗") || !strings.Contains(report, "every step held") || strings.Count(report, "✓") != 6 {
		t.Fatalf("demo report:\n%s", report)
	}
}
