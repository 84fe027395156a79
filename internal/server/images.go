package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/berth-dev/berth/api"
)

// Images is what the image API drives: the image store, with the runtimes
// that use each image.
type Images interface {
	List(ctx context.Context) ([]api.Image, error)
	// Pull reports progress (never concurrently) as it goes.
	Pull(ctx context.Context, ref string, progress func(api.ImagePullEvent)) (api.Image, error)
	// Remove removes one image by digest or reference, unless a version
	// pins it.
	Remove(ctx context.Context, ref string) (api.ImagePrune, error)
	// Prune removes every image no version pins.
	Prune(ctx context.Context) (api.ImagePrune, error)
}

// The image API is an admin's.
func (s *Server) registerImages() {
	if s.images == nil {
		return
	}
	s.handle("GET "+api.PathImages, accessAdmin, s.listImages)
	s.handle("POST "+api.PathImages+"/pull", accessAdmin, s.pullImage)
	s.handle("POST "+api.PathImages+"/prune", accessAdmin, s.pruneImages)
	s.handle("DELETE "+api.PathImages+"/{ref...}", accessAdmin, s.removeImage)
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.images.List(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if imgs == nil {
		imgs = []api.Image{}
	}
	writeJSON(w, http.StatusOK, api.ImageList{Images: imgs})
}

// pullImage answers with newline-delimited JSON: progress while the pull
// runs, then the image or the error. The status is sent before the pull
// ends, so a failure is told in the last line.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) {
	var req api.ImagePullRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		s.writeError(w, r, validation("ref", "the body must be {\"ref\": \"registry/repository:tag\"}"))
		return
	}
	if strings.TrimSpace(req.Ref) == "" {
		s.writeError(w, r, validation("ref", "ref is required"))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(e api.ImagePullEvent) {
		_ = enc.Encode(e)
		_ = rc.Flush()
	}
	img, err := s.images.Pull(r.Context(), req.Ref, send)
	if err != nil {
		ae := classify(err)
		s.log.Info("image pull failed", "ref", clip(req.Ref), "type", ae.typ, "err", clipN(err.Error(), 4<<10))
		send(api.ImagePullEvent{Error: clip(ae.msg), ErrorType: ae.typ})
		return
	}
	send(api.ImagePullEvent{Phase: "done", Image: &img})
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	out, err := s.images.Remove(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) pruneImages(w http.ResponseWriter, r *http.Request) {
	out, err := s.images.Prune(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
