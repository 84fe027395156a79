// Package console is berth's web console: server-rendered pages of
// runtimes and sessions, and the little JavaScript that follows a log and
// confirms a stop. Templates and assets are embedded in the binary; no
// build step. internal/server routes and authorizes it (admins only).
package console

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
)

//go:embed templates/*.html static/*
var files embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"when": when,
	"age":  age,
	"mib":  func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) },
	"cpu":  func(s float64) string { return fmt.Sprintf("%.2f s", s) },
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
}).ParseFS(files, "templates/*.html"))

// Static is the console's stylesheet and script, served under
// /console/static/.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Runtime is one row of the runtimes table.
type Runtime struct {
	Name, ID, ARN, Status, Source string
	LatestVersion                 int
	// Code is the latest version's code digest, or its command.
	Code      string
	Endpoints []Endpoint
	UpdatedAt time.Time
}

// Endpoint is a qualifier and the version it serves.
type Endpoint struct {
	Name    string
	Version int
}

// Filter is what the sessions table shows.
type Filter struct {
	Runtime, State string
}

// Home is the console's front page.
type Home struct {
	Runtimes []Runtime
	Sessions []api.Session
	Filter   Filter
	// States are the choices of the state filter.
	States []string
	// Charts are the last hour's, when berth keeps metrics.
	Charts []Chart
}

// SessionPage is one session.
type SessionPage struct {
	Session api.Session
	Live    bool
}

// RenderHome writes the front page.
func RenderHome(w io.Writer, h Home) error { return render(w, "home.html", h) }

// RenderSession writes a session's page.
func RenderSession(w io.Writer, p SessionPage) error { return render(w, "session.html", p) }

func render(w io.Writer, name string, data any) error {
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	return nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// age is how long ago t was, to the second, then coarser.
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	}
	return strings.TrimSuffix(d.Round(time.Hour).String(), "0m0s")
}
