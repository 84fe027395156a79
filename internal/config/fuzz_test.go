package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// yamlKeys are the config file's top-level keys, read from Config's tags.
func yamlKeys() []string {
	var keys []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// lineRE finds a line number in a YAML error.
var lineRE = regexp.MustCompile(`\bline [0-9]+\b`)

// FuzzLoad: the operator's YAML never panics berth. A refusal names the
// field (as the file spells it) or the line it is about; what is accepted
// passes validation again unchanged.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte(""))
	f.Add([]byte("limits: {memory: 4Gi, cpu: 500m}\napi_runtimes: {sandbox: process, ceilings: {memory: 8Gi}}\n"))
	f.Add([]byte(base + "    sessions: x\n    concurrency: queue\n    durability: state\n    idle_timeout: 90\n"))
	for _, tc := range badConfigs {
		f.Add([]byte(tc.yaml))
	}
	keys := yamlKeys()
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "berth.yaml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			msg := err.Error()
			for _, prefix := range []string{"parse config " + p + ": ", "config " + p + ": "} {
				msg = strings.TrimPrefix(msg, prefix)
			}
			if lineRE.MatchString(msg) {
				return
			}
			for _, k := range keys {
				if rest, ok := strings.CutPrefix(msg, k); ok && rest != "" && strings.ContainsRune(":[., ", rune(rest[0])) {
					return
				}
			}
			t.Fatalf("%q: the error names no field and no line: %v", data, err)
		}
		before, _ := json.Marshal(c)
		if err := c.Validate(); err != nil {
			t.Fatalf("%q loaded, then failed validation: %v", data, err)
		}
		if after, _ := json.Marshal(c); string(after) != string(before) {
			t.Fatalf("%q: validation is not idempotent:\n%s\n%s", data, before, after)
		}
	})
}
