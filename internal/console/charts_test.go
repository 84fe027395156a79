package console

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/telemetry"
)

// TestCharts: a sample half an hour ago sits mid-chart; the highest value
// touches the top margin; a sample without latency is left out of the
// latency lines; the page renders them as SVG polylines.
func TestCharts(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	samples := []telemetry.Point{
		{At: now.Add(-30 * time.Minute), Calls: 2, P50: 0.01, P95: 0.02, P99: 0.04, Active: 1},
		{At: now, Calls: 4, P50: math.NaN(), P95: math.NaN(), P99: math.NaN(), Active: 3},
	}
	charts := Charts(samples, now)
	if len(charts) != 4 {
		t.Fatalf("%d charts", len(charts))
	}
	calls := charts[0]
	if calls.Max != "4/s" || calls.Lines[0].Points != "150.0,52.5 300.0,5.0" {
		t.Errorf("calls chart: max %q, points %q", calls.Max, calls.Lines[0].Points)
	}
	latency := charts[2]
	if latency.Max != "40ms" {
		t.Errorf("latency max %q", latency.Max)
	}
	for _, l := range latency.Lines {
		if strings.Count(l.Points, ",") != 1 {
			t.Errorf("latency %s: %q, want the one sample with calls", l.Name, l.Points)
		}
	}
	if empty := Charts(nil, now); !empty[0].Empty || empty[0].Lines[0].Points != "" {
		t.Errorf("no samples: %+v", empty[0])
	}

	var b bytes.Buffer
	if err := RenderHome(&b, Home{Charts: charts}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "<polyline"); n != 7 {
		t.Errorf("%d polylines on the page, want 7", n)
	}
	if !strings.Contains(b.String(), `points="150.0,52.5 300.0,5.0"`) {
		t.Errorf("the calls line is not on the page:\n%s", b.String())
	}
}
