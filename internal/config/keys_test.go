package config

import (
	"strings"
	"testing"
)

// TestUnknownKeys: a misspelt key is named in the file's terms, with its
// line and the key it probably meant; a key like no other gets no guess.
func TestUnknownKeys(t *testing.T) {
	for _, c := range []struct {
		yaml, want string
	}{
		{"listn: 127.0.0.1:1\n", "line 1: unknown key listn (did you mean listen?)"},
		{"runtimes:\n  - name: a\n    command: [x]\n    idle_timout: 5m\n", "line 4: unknown key idle_timout (did you mean idle_timeout?)"},
		{"runtimes:\n  - name: a\n    comand: [x]\n", "line 3: unknown key comand (did you mean command?)"},
		{"auth:\n  credential_file: c\n", "line 2: unknown key credential_file (did you mean credentials_file?)"},
	} {
		_, err := load(t, c.yaml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "not found in type") {
			t.Errorf("%q: the Go type shows: %v", c.yaml, err)
		}
	}
	_, err := load(t, "zzzzzzzzzzzz: 1\n")
	if err == nil || !strings.Contains(err.Error(), "line 1: unknown key zzzzzzzzzzzz") || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("a key like no other: %v", err)
	}
}
