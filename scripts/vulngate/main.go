// Command vulngate reads govulncheck's JSON output on stdin, prints one line
// per vulnerability the code calls, and fails when one of them is in a
// module: that is fixed by upgrading the module. A called vulnerability in
// the standard library is printed but does not fail, since its fix is a
// newer Go toolchain than the machine has; the closing line says so.
// Vulnerabilities in code the module requires but never calls are counted.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// The parts of govulncheck's JSON protocol (golang.org/x/vuln/internal/govulncheck) used here.
type message struct {
	Config *struct {
		GoVersion string `json:"go_version"`
		DB        string `json:"db"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

// A frame of a finding's trace: the first is the vulnerable symbol, the
// last the caller in the scanned code. Function is empty when the finding
// is only about an imported package or a required module.
type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

type called struct {
	id, module, version, pkg, fixed, caller string
}

func main() {
	fail, err := gate(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	if fail {
		os.Exit(1)
	}
}

// gate reports on the stream in r and says whether it should fail.
func gate(r io.Reader, w io.Writer) (fail bool, err error) {
	summaries := map[string]string{}
	var goVersion, db string
	var calls []called
	uncalled := map[string]bool{}
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return false, fmt.Errorf("decode govulncheck output: %w", err)
		}
		switch {
		case m.Config != nil:
			goVersion, db = m.Config.GoVersion, m.Config.DB
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			f, vuln := m.Finding, m.Finding.Trace[0]
			if vuln.Function == "" {
				uncalled[f.OSV] = true
				continue
			}
			c := called{id: f.OSV, module: vuln.Module, version: vuln.Version, pkg: vuln.Package, fixed: f.FixedVersion}
			if top := f.Trace[len(f.Trace)-1]; top.Position != nil {
				c.caller = fmt.Sprintf("%s:%d", top.Position.Filename, top.Position.Line)
			}
			if !slices.ContainsFunc(calls, func(o called) bool { return o.id == c.id && o.module == c.module }) {
				calls = append(calls, c)
			}
		}
	}
	if goVersion == "" {
		return false, errors.New("no config message: is this govulncheck -format json output?")
	}
	slices.SortFunc(calls, func(a, b called) int {
		return cmp.Or(cmp.Compare(a.module, b.module), cmp.Compare(a.id, b.id))
	})
	var inModules, inStd []string
	for _, c := range calls {
		delete(uncalled, c.id)
		found, fixed := c.module+"@"+c.version, c.fixed
		if c.module == "stdlib" {
			inStd = append(inStd, c.id)
			found, fixed = "go"+strings.TrimPrefix(c.version, "v"), "go"+strings.TrimPrefix(c.fixed, "v")
		} else {
			inModules = append(inModules, c.id)
		}
		fmt.Fprintf(w, "  %s in %s (%s), fixed in %s, called from %s: %s\n", c.id, found, c.pkg, fixed, c.caller, summaries[c.id])
	}
	fmt.Fprintf(w, "vulngate: %s, database %s: %d called in modules, %d called in the standard library, %d more in dependencies but not called\n",
		goVersion, db, len(inModules), len(inStd), len(uncalled))
	if len(inStd) > 0 {
		fmt.Fprintf(w, "vulngate: not failing on the standard library's %s: the fix is a Go toolchain newer than this machine's %s\n",
			strings.Join(inStd, " "), goVersion)
	}
	if len(inModules) > 0 {
		fmt.Fprintf(w, "vulngate: FAIL: upgrade the modules above (go get MODULE@FIXED) for %s\n", strings.Join(inModules, " "))
	}
	return len(inModules) > 0, nil
}
