package daemon

import (
	"context"
	"time"

	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/telemetry"
)

// usageSampleEvery is how often sessions' CPU and memory use is sampled
// between scrapes.
const usageSampleEvery = 5 * time.Second

// historySampleEvery is the step of the console's charts: 360 points an
// hour.
const historySampleEvery = 10 * time.Second

// newMetrics builds the metric set; it reads d.sessions and d.reg on use,
// so it may be made before the session manager it observes.
func newMetrics(d *Daemon) *telemetry.Metrics {
	return telemetry.New(telemetry.Options{
		Sessions: liveSessions{d},
		RuntimeName: func(ctx context.Context, id string) (string, error) {
			rt, err := d.reg.Lookup(ctx, id)
			return rt.Name, err
		},
	})
}

// liveSessions defers to the daemon's session manager once it exists.
type liveSessions struct{ d *Daemon }

func (l liveSessions) Live() []session.Info      { return l.d.sessions.Live() }
func (l liveSessions) PoolSizes() map[string]int { return l.d.sessions.PoolSizes() }
