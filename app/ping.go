package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/berth-dev/berth/api"
)

// PingFunc reports the agent's health for /ping, like @app.ping in the
// Python SDK. Returning "" (or an unknown status, or panicking) defers to
// the automatic status.
//
// Priority: a forced status ([App.ForcePingStatus]) wins over the PingFunc,
// which wins over the automatic status (HealthyBusy while any async task is
// active, otherwise Healthy).
type PingFunc func() api.PingStatus

// ErrInvalidPingStatus is returned for a status other than Healthy or
// HealthyBusy.
var ErrInvalidPingStatus = errors.New("invalid ping status")

// AsyncTaskInfo describes the active async tasks, as the Python SDK's
// get_async_task_info does.
type AsyncTaskInfo struct {
	ActiveCount int            `json:"active_count"`
	RunningJobs []AsyncTaskJob `json:"running_jobs"`
}

// AsyncTaskJob is one active async task.
type AsyncTaskJob struct {
	ID       int64          `json:"id"`
	Name     string         `json:"name"`
	Metadata map[string]any `json:"metadata,omitempty"`
	// Duration is how long the task has run, in seconds.
	Duration float64 `json:"duration"`
}

type asyncTask struct {
	name     string
	metadata map[string]any
	started  time.Time
}

func validPingStatus(s api.PingStatus) bool {
	return s == api.PingHealthy || s == api.PingHealthyBusy
}

// Ping computes the status /ping reports. time_of_last_update is the Unix
// second at which the reported status last changed (initially, when the App
// was created); it does not move while the status stays the same, so the
// runtime's idle clock can run.
func (a *App) Ping() api.PingResponse {
	a.mu.Lock()
	fn, forced := a.pingFunc, a.forced != ""
	a.mu.Unlock()
	var custom api.PingStatus
	if fn != nil && !forced {
		custom = a.callPingFunc(fn)
	}

	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	status := a.forced
	if status == "" {
		status = custom
	}
	if status == "" {
		status = a.automaticLocked()
	}
	a.observeLocked(status, now)
	return api.PingResponse{Status: status, TimeOfLastUpdate: a.lastChange.Unix()}
}

// callPingFunc runs the custom ping function outside mu, so it may call the
// App's own methods.
func (a *App) callPingFunc(fn PingFunc) (status api.PingStatus) {
	defer func() {
		if p := recover(); p != nil {
			a.logger.Warn("custom ping func panicked, using automatic status", slog.Any("panic", p))
			status = ""
		}
	}()
	status = fn()
	if status != "" && !validPingStatus(status) {
		a.logger.Warn("custom ping func returned an invalid status, using automatic status",
			slog.String("status", string(status)))
		return ""
	}
	return status
}

func (a *App) automaticLocked() api.PingStatus {
	if len(a.tasks) > 0 {
		return api.PingHealthyBusy
	}
	return api.PingHealthy
}

// observeLocked records status as the current one, stamping the time only on
// a change.
func (a *App) observeLocked(status api.PingStatus, now time.Time) {
	if status != a.lastStatus {
		a.lastStatus, a.lastChange = status, now
	}
}

// settleLocked records the effective status after a change to tasks or the
// forced status, so time_of_last_update is the moment of the change rather
// than of the next ping. With a custom ping func and nothing forced the
// effective status is unknown until the func runs, at the next ping.
func (a *App) settleLocked(now time.Time) {
	switch {
	case a.forced != "":
		a.observeLocked(a.forced, now)
	case a.pingFunc == nil:
		a.observeLocked(a.automaticLocked(), now)
	}
}

func (a *App) servePing(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Ping())
}

// SetPingFunc replaces the custom ping function; nil removes it.
func (a *App) SetPingFunc(f PingFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pingFunc = f
	a.settleLocked(time.Now())
}

// ForcePingStatus makes /ping report status until [App.ClearForcedPingStatus],
// whatever the ping func or async tasks say.
func (a *App) ForcePingStatus(status api.PingStatus) error {
	if !validPingStatus(status) {
		return fmt.Errorf("force ping status %q: %w", status, ErrInvalidPingStatus)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forced = status
	a.settleLocked(time.Now())
	return nil
}

// ClearForcedPingStatus undoes [App.ForcePingStatus].
func (a *App) ClearForcedPingStatus() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forced = ""
	a.settleLocked(time.Now())
}

// AddAsyncTask registers background work: /ping reports HealthyBusy until
// every registered task is completed with [App.CompleteAsyncTask], which
// keeps the runtime from reaping the session as idle. IDs are unique within
// the process.
func (a *App) AddAsyncTask(name string, metadata map[string]any) int64 {
	now := time.Now()
	a.mu.Lock()
	a.nextTaskID++
	id := a.nextTaskID
	a.tasks[id] = &asyncTask{name: name, metadata: maps.Clone(metadata), started: now}
	a.settleLocked(now)
	a.mu.Unlock()
	a.logger.Info("async task started", slog.Int64("task_id", id), slog.String("task", name))
	return id
}

// CompleteAsyncTask unregisters a task and reports whether it was active.
func (a *App) CompleteAsyncTask(id int64) bool {
	now := time.Now()
	a.mu.Lock()
	t, ok := a.tasks[id]
	if ok {
		delete(a.tasks, id)
		a.settleLocked(now)
	}
	a.mu.Unlock()
	if !ok {
		a.logger.Warn("complete unknown async task", slog.Int64("task_id", id))
		return false
	}
	a.logger.Info("async task completed", slog.Int64("task_id", id), slog.String("task", t.name),
		slog.Float64("duration_s", now.Sub(t.started).Seconds()))
	return true
}

// AsyncTaskInfo lists the active async tasks, oldest first.
func (a *App) AsyncTaskInfo() AsyncTaskInfo {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	info := AsyncTaskInfo{ActiveCount: len(a.tasks), RunningJobs: make([]AsyncTaskJob, 0, len(a.tasks))}
	for _, id := range slices.Sorted(maps.Keys(a.tasks)) {
		t := a.tasks[id]
		info.RunningJobs = append(info.RunningJobs, AsyncTaskJob{
			ID:       id,
			Name:     t.name,
			Metadata: maps.Clone(t.metadata),
			Duration: now.Sub(t.started).Seconds(),
		})
	}
	return info
}

// StartAsyncTask runs fn on a new goroutine as a registered async task, the
// counterpart of @app.async_task: /ping reports HealthyBusy until fn returns.
// fn's ctx is cancelled by [App.Shutdown], which waits for fn to return. An
// error or panic from fn is logged.
func (a *App) StartAsyncTask(name string, fn func(ctx context.Context) error) int64 {
	id := a.AddAsyncTask(name, nil)
	a.mu.Lock()
	a.bgRunning++
	a.mu.Unlock()
	go func() {
		defer a.bgDone()
		defer a.CompleteAsyncTask(id)
		if err := runTask(a.bgCtx, fn); err != nil {
			a.logger.Error("async task failed", slog.Int64("task_id", id), slog.String("task", name), slog.Any("err", err))
		}
	}()
	return id
}

func runTask(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(ctx)
}

func (a *App) bgDone() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bgRunning--
	close(a.bgChanged)
	a.bgChanged = make(chan struct{})
}

// Shutdown cancels the context of tasks started with [App.StartAsyncTask] and
// waits for them to return, until ctx is done. [App.Serve] calls it after
// draining invocations; call it yourself when serving through [App.Handler].
func (a *App) Shutdown(ctx context.Context) error {
	a.bgCancel()
	for {
		a.mu.Lock()
		n, changed := a.bgRunning, a.bgChanged
		a.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d async tasks: %w", n, context.Cause(ctx))
		}
	}
}
