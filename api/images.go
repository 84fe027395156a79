package api

import "time"

// PathImages is berth's image API: the container images image runtimes
// run, as this berth holds them.
const PathImages = "/berth/v1/images"

// Image is one pulled image.
type Image struct {
	// Digest is what its reference resolved to; versions pin it.
	Digest string `json:"digest"`
	// Refs are the references it was pulled by, newest first.
	Refs     []string `json:"refs"`
	Platform string   `json:"platform"`
	// Emulated is set when this host runs Platform under qemu-user.
	Emulated bool `json:"emulated,omitempty"`
	// Size is the image's size in its registry (config and compressed
	// layers); Unpacked its root's size on disk.
	Size     int64     `json:"size"`
	Unpacked int64     `json:"unpacked"`
	PulledAt time.Time `json:"pulledAt"`
	// Runtimes are the IDs of the runtimes a version of which pins it.
	Runtimes []string `json:"runtimes"`
}

// ImageList is every pulled image, newest first.
type ImageList struct {
	Images []Image `json:"images"`
}

// ImagePullRequest asks berth to pull an image.
type ImagePullRequest struct {
	Ref string `json:"ref"`
}

// ImagePullEvent is one line of a pull's answer (newline-delimited JSON):
// progress as it goes, then Image when done or Error when it failed.
type ImagePullEvent struct {
	Phase    string `json:"phase,omitempty"`
	Done     int64  `json:"done,omitempty"`
	Total    int64  `json:"total,omitempty"`
	Platform string `json:"platform,omitempty"`
	Emulated bool   `json:"emulated,omitempty"`
	Image    *Image `json:"image,omitempty"`
	// Error says why the pull failed; ErrorType is its class, as the
	// error header would name it.
	Error     string    `json:"error,omitempty"`
	ErrorType ErrorType `json:"errorType,omitempty"`
}

// ImagePrune is what a prune or removal freed.
type ImagePrune struct {
	Removed []string `json:"removed"`
	Blobs   int      `json:"blobs"`
	Bytes   int64    `json:"bytes"`
}
