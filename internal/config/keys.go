package config

import (
	"errors"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// The YAML decoder names an unknown key by Go type ("field idle_timout not
// found in type registry.Declared"). unknownKeys says it in the file's
// terms instead, with the nearest key the section has.

var unknownFieldRE = regexp.MustCompile(`^(line \d+: )?field (\S+) not found in type (\S+)$`)

// unknownKeys rewrites the unknown-key messages of a *yaml.TypeError.
func unknownKeys(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	out := &yaml.TypeError{Errors: make([]string, len(te.Errors))}
	for i, msg := range te.Errors {
		m := unknownFieldRE.FindStringSubmatch(msg)
		if m == nil {
			out.Errors[i] = msg
			continue
		}
		s := m[1] + "unknown key " + m[2]
		if near := nearest(m[2], keysOf()[m[3]]); near != "" {
			s += " (did you mean " + near + "?)"
		}
		out.Errors[i] = s
	}
	return out
}

var keysOf = sync.OnceValue(func() map[string][]string {
	m := map[string][]string{}
	collectKeys(reflect.TypeFor[Config](), m)
	return m
})

// collectKeys maps each struct type reachable from t (by the name the
// decoder uses, such as "registry.Declared") to its YAML keys.
func collectKeys(t reflect.Type, m map[string][]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	if _, done := m[t.String()]; done {
		return
	}
	m[t.String()] = nil
	m[t.String()] = structKeys(t, m)
}

func structKeys(t reflect.Type, m map[string][]string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			keys = append(keys, structKeys(f.Type, m)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys = append(keys, name)
		collectKeys(f.Type, m)
	}
	sort.Strings(keys)
	return keys
}

// nearest is the key closest to typo by edit distance, if it is close
// enough to be a likely typo.
func nearest(typo string, keys []string) string {
	best, bestD := "", max(2, len(typo)/3)+1
	for _, k := range keys {
		if d := editDistance(typo, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
