package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/telemetry"
)

// Chart is one small line chart of the last hour, drawn as SVG on the
// server.
type Chart struct {
	ID, Title string
	// Max labels the top of the y axis.
	Max   string
	Lines []Line
	// Empty: no sample yet.
	Empty bool
}

// Line is one series: its SVG polyline points in a 300×100 box.
type Line struct {
	Name, Class, Points string
}

const (
	chartW, chartH = 300.0, 100.0
	chartSpan      = time.Hour
)

// Charts draws calls, errors, latency and active sessions over the hour
// before now.
func Charts(samples []telemetry.Point, now time.Time) []Chart {
	pick := func(f func(telemetry.Point) float64) []float64 {
		out := make([]float64, len(samples))
		for i, s := range samples {
			out[i] = f(s)
		}
		return out
	}
	rate := func(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) + "/s" }
	secs := func(v float64) string {
		return (time.Duration(v * float64(time.Second))).Round(time.Microsecond).String()
	}
	count := func(v float64) string { return strconv.Itoa(int(v)) }
	type series struct {
		name, class string
		vals        []float64
	}
	chart := func(id, title string, label func(float64) string, ss ...series) Chart {
		c := Chart{ID: id, Title: title, Empty: len(samples) == 0}
		top := 0.0
		for _, s := range ss {
			for _, v := range s.vals {
				if !math.IsNaN(v) {
					top = max(top, v)
				}
			}
		}
		if top == 0 {
			top = 1
		}
		c.Max = label(top)
		for _, s := range ss {
			c.Lines = append(c.Lines, Line{Name: s.name, Class: s.class, Points: points(samples, s.vals, top, now)})
		}
		return c
	}
	return []Chart{
		chart("chart-calls", "Calls", rate, series{"calls/s", "l1", pick(func(s telemetry.Point) float64 { return s.Calls })}),
		chart("chart-errors", "Errors and throttles", rate,
			series{"errors/s", "l2", pick(func(s telemetry.Point) float64 { return s.Errors })},
			series{"throttles/s", "l3", pick(func(s telemetry.Point) float64 { return s.Throttles })}),
		chart("chart-latency", "Latency", secs,
			series{"p50", "l1", pick(func(s telemetry.Point) float64 { return s.P50 })},
			series{"p95", "l3", pick(func(s telemetry.Point) float64 { return s.P95 })},
			series{"p99", "l2", pick(func(s telemetry.Point) float64 { return s.P99 })}),
		chart("chart-active", "Active sessions", count, series{"sessions", "l1", pick(func(s telemetry.Point) float64 { return float64(s.Active) })}),
	}
}

// points places each sample by its time within the hour before now;
// samples without a value (NaN) are left out.
func points(samples []telemetry.Point, vals []float64, top float64, now time.Time) string {
	var b strings.Builder
	for i, s := range samples {
		v := vals[i]
		if math.IsNaN(v) {
			continue
		}
		x := chartW * (1 - now.Sub(s.At).Seconds()/chartSpan.Seconds())
		y := chartH - v/top*(chartH-5)
		fmt.Fprintf(&b, "%.1f,%.1f ", max(x, 0), y)
	}
	return strings.TrimSpace(b.String())
}
