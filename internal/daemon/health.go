package daemon

import (
	"context"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// minFreeBytes is the free space below which berth's data disk counts as
// full: too little for the store's next checkpoint or a session's log.
const minFreeBytes = 1 << 20

// health is what GET /berth/v1/health reports: whether berth can take new
// work. The data disk counts as full when almost nothing is left of it.
func (d *Daemon) health(context.Context) api.Health {
	h := api.Health{Status: api.HealthOK}
	var st unix.Statfs_t
	if err := unix.Statfs(d.dataDir, &st); err == nil {
		h.DataDisk.TotalBytes = int64(st.Blocks) * int64(st.Bsize)
		h.DataDisk.FreeBytes = int64(st.Bavail) * int64(st.Bsize)
		h.DataDisk.Full = h.DataDisk.FreeBytes < minFreeBytes
	}
	if h.DataDisk.Full {
		h.Status = api.HealthDegraded
		h.Problems = append(h.Problems, errdefs.DiskFullMessage)
	}
	return h
}
