package app

import (
	"net/http"
	"testing"
)

func TestListenAddr(t *testing.T) {
	tests := []struct {
		host, port, want string
	}{
		{"", "", "0.0.0.0:8080"},
		{"127.0.0.1", "", "127.0.0.1:8080"},
		{"", "9000", "0.0.0.0:9000"},
		{"127.0.0.1", "41234", "127.0.0.1:41234"},
		{"::1", "8081", "[::1]:8081"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Setenv(EnvHost, tc.host)
			t.Setenv(EnvPort, tc.port)
			if got := listenAddr(); got != tc.want {
				t.Errorf("listenAddr() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestForwardedHeadersDropHopByHop(t *testing.T) {
	in := http.Header{
		"Connection":        {"keep-alive, X-Per-Hop"},
		"X-Per-Hop":         {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Te":                {"trailers"},
		"Upgrade":           {"h2c"},
		"Content-Length":    {"2"},
		"Authorization":     {"Bearer x"},
		"Traceparent":       {"00-abc-def-01"},
	}
	out := forwardedHeaders(in)
	for _, gone := range []string{"Connection", "X-Per-Hop", "Keep-Alive", "Transfer-Encoding", "Te", "Upgrade", "Content-Length"} {
		if _, ok := out[gone]; ok {
			t.Errorf("%s was forwarded", gone)
		}
	}
	for _, kept := range []string{"Authorization", "Traceparent"} {
		if out.Get(kept) != in.Get(kept) {
			t.Errorf("%s = %q, want %q", kept, out.Get(kept), in.Get(kept))
		}
	}
	if _, ok := in["Connection"]; !ok {
		t.Error("forwardedHeaders modified its input")
	}
}
