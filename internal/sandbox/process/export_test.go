package process

import "log/slog"

// Tracking modes the tests force; the zero value is the default.
const (
	TrackAuto   = trackAuto
	TrackV1     = trackV1
	TrackMarker = trackMarker
)

// TrackMode is how a backend may track its sandboxes' processes.
type TrackMode = trackMode

// NewTracking is New with a tracking mode forced.
func NewTracking(root string, logger *slog.Logger, mode TrackMode) *Backend {
	return newBackend(root, logger, mode)
}

// Cgroup is the cgroup a sandbox runs in, "" without one.
func Cgroup(b *Backend, id string) string {
	rec, err := readRecord(b.root + "/" + id)
	if err != nil {
		return ""
	}
	return b.tree.cgroupOf(rec)
}
