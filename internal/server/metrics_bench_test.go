package server

import (
	"net/http"
	"testing"

	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/telemetry"
)

// nopWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures only the metric recording around a call.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkMeasured is the metric cost a successful call pays: the
// outcome-noting writer, the invocation counter and the latency histogram.
func BenchmarkMeasured(b *testing.B) {
	s := &Server{metrics: telemetry.New(telemetry.Options{})}
	res := registry.Resolved{Runtime: registry.Runtime{ID: "echo-0123456789", Name: "echo"}, Endpoint: registry.Endpoint{Name: "DEFAULT"}}
	h := s.measured(telemetry.OpInvoke, "invoke", func(w http.ResponseWriter, r *http.Request) {
		noteTarget(w, res)
		w.WriteHeader(http.StatusOK)
	})
	r, _ := http.NewRequest(http.MethodPost, "/runtimes/echo/invocations", nil)
	b.Run("serial", func(b *testing.B) {
		w := &nopWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			h(w, r)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := &nopWriter{h: http.Header{}}
			for pb.Next() {
				h(w, r)
			}
		})
	})
}
