package registry

import (
	"strings"
	"testing"
)

// FuzzRuntimeRef: a runtime reference from a URL path or a request body
// is an ARN, an ID or a name. RuntimeRef takes ARNs apart and leaves the
// rest alone; a runtime ARN (or endpoint ARN) berth builds gives back the
// ID it was built from.
func FuzzRuntimeRef(f *testing.F) {
	for in := range runtimeRefCases {
		f.Add(in, "us-east-1", "123456789012", "agent-AbCdE12345", "DEFAULT")
	}
	f.Add("arn:aws:bedrock-agentcore:r:a:runtime/arn:x:runtime/y/z", "eu-west-1", "210987654321", "x-0123456789", "prod")
	f.Fuzz(func(t *testing.T, ref, region, account, id, endpoint string) {
		got := RuntimeRef(ref)
		switch {
		case !strings.HasPrefix(ref, "arn:") || !strings.Contains(ref, ":runtime/"):
			if got != ref {
				t.Fatalf("RuntimeRef(%q) = %q: only runtime ARNs are taken apart", ref, got)
			}
		case strings.Contains(got, "/") || !strings.Contains(ref, ":runtime/"+got):
			t.Fatalf("RuntimeRef(%q) = %q: not the path segment after :runtime/", ref, got)
		}
		if again := RuntimeRef(got); again != got {
			t.Fatalf("RuntimeRef is not idempotent: %q → %q → %q", ref, got, again)
		}

		// Regions and accounts have no colons; IDs and names no slashes.
		if strings.ContainsAny(region+account, ":/") || strings.Contains(id, "/") {
			return
		}
		r := New(nil, Options{Region: region, Account: account})
		for _, arn := range []string{r.RuntimeARN(id), r.EndpointARN(id, endpoint)} {
			if got := RuntimeRef(arn); got != id {
				t.Fatalf("RuntimeRef(%q) = %q, want %q", arn, got, id)
			}
		}
	})
}

// FuzzParseVersion: a version string from a query or body is accepted
// exactly when it is a version berth writes.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1", "99999", "0", "01", "100000", "-1", "+1", " 1", "1.0", "\u0661"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseVersion("version", s)
		if err != nil {
			if n != 0 {
				t.Fatalf("refused %q but returned %d", s, n)
			}
			return
		}
		if n < 1 || n > 99999 || FormatVersion(n) != s {
			t.Fatalf("accepted %q as %d", s, n)
		}
	})
}
