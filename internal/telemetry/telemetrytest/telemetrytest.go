// Package telemetrytest reads a /metrics page with Prometheus' own text
// parser, for tests that assert what berth exports.
package telemetrytest

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is one parsed scrape, by metric name.
type Families map[string]*dto.MetricFamily

// Parse reads the Prometheus text format.
func Parse(t testing.TB, r io.Reader) Families {
	t.Helper()
	fams, err := parse(r)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

func parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// Scrape GETs url in the text format and parses it.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	fams, err := parse(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape %s: %s: %v\n%s", url, resp.Status, err, body)
	}
	return fams
}

// Sum adds up the series of name whose labels include every name, value
// pair in labels: counter and gauge values, or histogram sample counts.
func (f Families) Sum(name string, labels ...string) float64 {
	if len(labels)%2 != 0 {
		panic("telemetrytest: labels come in name, value pairs")
	}
	fam := f[name]
	if fam == nil {
		return 0
	}
	var sum float64
	for _, m := range fam.Metric {
		if !matches(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// matches reads an absent label as empty, as Prometheus does.
func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		got := ""
		for _, lp := range m.Label {
			if lp.GetName() == labels[i] {
				got = lp.GetValue()
			}
		}
		if got != labels[i+1] {
			return false
		}
	}
	return true
}
