package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkRelay compares berth's hand-written relay with net/http's
// ReverseProxy doing the same job (an agent behind a transport, a small
// JSON answer), each through a real HTTP server on loopback, in the same
// run. docs/ARCHITECTURE.md records the outcome and why the relay stays.
func BenchmarkRelay(b *testing.B) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"answer":"sunny"}`)
	}))
	defer agent.Close()
	target, _ := url.Parse(agent.URL)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	handlers := map[string]http.Handler{
		"hand-written": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, agent.URL+"/invocations", r.Body)
			req.ContentLength = r.ContentLength
			req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			relay(w, resp)
		}),
		"ReverseProxy": &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.URL.Path = "/invocations"
			},
			Transport:     tr,
			FlushInterval: -1,
		},
	}
	for _, name := range []string{"hand-written", "ReverseProxy"} {
		b.Run(name, func(b *testing.B) {
			front := httptest.NewServer(handlers[name])
			defer front.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(front.URL, "application/json", strings.NewReader(`{"prompt":"weather"}`))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
