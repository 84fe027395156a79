package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/telemetry"
	"github.com/berth-dev/berth/internal/telemetry/telemetrytest"
)

// TestMetricsClassifyCalls: each domain error, answered through writeError,
// lands in AgentCore's class (throttle, user or system error) with its
// error type; every call counts as an invocation and a latency sample.
func TestMetricsClassifyCalls(t *testing.T) {
	m := telemetry.New(telemetry.Options{})
	s := &Server{metrics: m, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	res := registry.Resolved{Runtime: registry.Runtime{ID: "echo-0123456789", Name: "echo"}, Endpoint: registry.Endpoint{Name: "live"}}
	for _, err := range []error{
		nil,
		session.ErrShuttingDown,
		fmt.Errorf("runtime %q: %w", "nope", errdefs.ErrNotFound),
		session.ErrStartFailed,
		errors.New("disk on fire"),
	} {
		h := s.measured(telemetry.OpInvoke, "invoke", func(w http.ResponseWriter, r *http.Request) {
			noteTarget(w, res)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			io.WriteString(w, "{}")
		})
		h(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/runtimes/echo/invocations", nil))
	}
	// A call whose runtime never resolved has no runtime labels.
	s.measured(telemetry.OpWebSocket, "websocket", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errdefs.ErrNotFound)
	})(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/runtimes/nope/ws", nil))

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	f := telemetrytest.Parse(t, rec.Body)
	echo := []string{"runtime_id", "echo-0123456789", "runtime", "echo", "endpoint", "live", "kind", "invoke"}
	none := []string{"runtime_id", "", "runtime", "", "endpoint", "", "kind", "websocket"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"berth_invocations_total", echo, 5},
		{"berth_invocation_latency_seconds", echo, 5},
		{"berth_invocation_throttles_total", echo, 1},
		{"berth_invocation_user_errors_total", append(echo, "error_type", "ResourceNotFoundException"), 1},
		{"berth_invocation_user_errors_total", append(echo, "error_type", "RuntimeClientError"), 1},
		{"berth_invocation_user_errors_total", echo, 2}, // 429 is a throttle, not a user error
		{"berth_invocation_system_errors_total", append(echo, "error_type", "InternalServerException"), 1},
		{"berth_invocations_total", none, 1},
		{"berth_invocation_user_errors_total", append(none, "error_type", "ResourceNotFoundException"), 1},
	} {
		if got := f.Sum(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
