package server

import (
	"encoding/json"
	"net/http"

	"github.com/berth-dev/berth/api"
)

// health serves berth's own health: 503 while it is degraded, so a load
// balancer or monitor sees it without reading the body.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := s.healthOf(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if h.Status != api.HealthOK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(h)
}
