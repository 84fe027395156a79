package api

// PathHealth is berth's own health check (GET). /ping says only that berth
// answers; this says whether it can take new work.
const PathHealth = "/berth/v1/health"

// Health statuses.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
)

// Health is berth's health as GET /berth/v1/health reports it: 200 with
// status "ok", or 503 with status "degraded" and what is wrong.
type Health struct {
	Status string `json:"status"`
	// Problems says what is wrong, one sentence each, such as "berth's
	// data disk is full".
	Problems []string `json:"problems,omitempty"`
	// DataDisk is the disk holding berth's data dir (store, logs, sandboxes).
	DataDisk DiskSpace `json:"dataDisk"`
}

// DiskSpace is a disk's size and what is left of it.
type DiskSpace struct {
	TotalBytes int64 `json:"totalBytes"`
	FreeBytes  int64 `json:"freeBytes"`
	// Full is true when berth's writes fail, or are about to, for want of
	// space: new sessions and control-plane writes are refused until space
	// is freed.
	Full bool `json:"full"`
}
