package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app"
)

// pingHTTP reads /ping through the app's HTTP handler and checks the wire
// shape: exactly status and an integer time_of_last_update.
func pingHTTP(t *testing.T, a *app.App) api.PingResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ping", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/ping = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("/ping body %q: %v", rec.Body, err)
	}
	if len(raw) != 2 || raw["status"] == nil || raw["time_of_last_update"] == nil {
		t.Fatalf("/ping body %s, want exactly status and time_of_last_update", rec.Body)
	}
	var p api.PingResponse // an int64 field rejects fractional seconds
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("/ping body %s: %v", rec.Body, err)
	}
	return p
}

// TestPingTimeOfLastUpdate walks one app through its status transitions on a
// fake clock. time_of_last_update must move exactly when the status changes:
// at the moment of the change when the app knows it (tasks, forced status),
// or at the first ping that sees it when a custom ping func decides.
func TestPingTimeOfLastUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := app.New(quiet())
		var first, second, third int64
		busy := func() api.PingStatus { return api.PingHealthyBusy }
		undecided := func() api.PingStatus { return "" }

		type changeAt int
		const (
			unchanged changeAt = iota
			atAction
			atPing
		)
		steps := []struct {
			name   string
			before time.Duration // wait before the action
			action func()
			after  time.Duration // wait between the action and the ping
			want   api.PingStatus
			change changeAt
		}{
			{name: "fresh app is healthy", want: api.PingHealthy},
			{name: "idle pings keep the time", before: 45 * time.Second, want: api.PingHealthy},
			{name: "a task makes it busy from the moment it starts", before: 5 * time.Second,
				action: func() { first = a.AddAsyncTask("index", nil) }, after: 3 * time.Second,
				want: api.PingHealthyBusy, change: atAction},
			{name: "busy pings keep the time", before: time.Minute, want: api.PingHealthyBusy},
			{name: "a second task changes nothing", before: time.Second,
				action: func() { second = a.AddAsyncTask("embed", nil) }, want: api.PingHealthyBusy},
			{name: "finishing one of two changes nothing", before: 2 * time.Second,
				action: func() { a.CompleteAsyncTask(first) }, want: api.PingHealthyBusy},
			{name: "finishing the last task is healthy from that moment", before: 2 * time.Second,
				action: func() { a.CompleteAsyncTask(second) }, after: 4 * time.Second,
				want: api.PingHealthy, change: atAction},
			{name: "forcing busy", before: time.Second,
				action: func() { mustForce(t, a, api.PingHealthyBusy) }, after: time.Second,
				want: api.PingHealthyBusy, change: atAction},
			{name: "forcing the same status again changes nothing", before: 10 * time.Second,
				action: func() { mustForce(t, a, api.PingHealthyBusy) }, want: api.PingHealthyBusy},
			{name: "clearing the force returns to automatic", before: time.Second,
				action: a.ClearForcedPingStatus, after: time.Second,
				want: api.PingHealthy, change: atAction},
			{name: "a task is busy", before: time.Second,
				action: func() { third = a.AddAsyncTask("upload", nil) }, want: api.PingHealthyBusy, change: atAction},
			{name: "forced healthy beats an active task", before: time.Second,
				action: func() { mustForce(t, a, api.PingHealthy) }, after: 2 * time.Second,
				want: api.PingHealthy, change: atAction},
			{name: "clearing shows the task again", before: time.Second,
				action: a.ClearForcedPingStatus, want: api.PingHealthyBusy, change: atAction},
			{name: "task done", before: time.Second,
				action: func() { a.CompleteAsyncTask(third) }, want: api.PingHealthy, change: atAction},
			{name: "a custom func is seen at the next ping", before: time.Second,
				action: func() { a.SetPingFunc(busy) }, after: 7 * time.Second,
				want: api.PingHealthyBusy, change: atPing},
			{name: "custom pings keep the time", before: 30 * time.Second, want: api.PingHealthyBusy},
			{name: "a custom func with no opinion defers to automatic", before: time.Second,
				action: func() { a.SetPingFunc(undecided) }, after: 2 * time.Second,
				want: api.PingHealthy, change: atPing},
			{name: "removing the custom func changes nothing while healthy", before: time.Second,
				action: func() { a.SetPingFunc(nil) }, want: api.PingHealthy},
		}

		last := time.Now().Unix()
		for _, s := range steps {
			time.Sleep(s.before)
			actedAt := time.Now()
			if s.action != nil {
				s.action()
			}
			time.Sleep(s.after)
			pingedAt := time.Now()

			got := pingHTTP(t, a)
			switch s.change {
			case atAction:
				last = actedAt.Unix()
			case atPing:
				last = pingedAt.Unix()
			}
			if got.Status != s.want || got.TimeOfLastUpdate != last {
				t.Errorf("%s: ping = %s @%d, want %s @%d", s.name, got.Status, got.TimeOfLastUpdate, s.want, last)
			}
			// A second ping at the same instant must agree.
			if again := a.Ping(); again != got {
				t.Errorf("%s: repeated ping %+v differs from %+v", s.name, again, got)
			}
		}
	})
}

func mustForce(t *testing.T, a *app.App, s api.PingStatus) {
	t.Helper()
	if err := a.ForcePingStatus(s); err != nil {
		t.Fatal(err)
	}
}

func TestPingPriority(t *testing.T) {
	tests := []struct {
		name   string
		forced api.PingStatus
		custom app.PingFunc
		tasks  int
		want   api.PingStatus
	}{
		{name: "automatic idle", want: api.PingHealthy},
		{name: "automatic with a task", tasks: 1, want: api.PingHealthyBusy},
		{name: "custom beats automatic", custom: func() api.PingStatus { return api.PingHealthy }, tasks: 2, want: api.PingHealthy},
		{name: "custom busy while idle", custom: func() api.PingStatus { return api.PingHealthyBusy }, want: api.PingHealthyBusy},
		{name: "forced beats custom", forced: api.PingHealthy, custom: func() api.PingStatus { return api.PingHealthyBusy }, want: api.PingHealthy},
		{name: "forced beats tasks", forced: api.PingHealthy, tasks: 1, want: api.PingHealthy},
		{name: "custom panic falls back", custom: func() api.PingStatus { panic("db down") }, tasks: 1, want: api.PingHealthyBusy},
		{name: "custom invalid status falls back", custom: func() api.PingStatus { return "Sleeping" }, want: api.PingHealthy},
		{name: "custom empty status falls back", custom: func() api.PingStatus { return "" }, tasks: 1, want: api.PingHealthyBusy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := app.New(quiet(), app.WithPingFunc(tc.custom))
			for range tc.tasks {
				a.AddAsyncTask("work", nil)
			}
			if tc.forced != "" {
				mustForce(t, a, tc.forced)
			}
			if got := pingHTTP(t, a).Status; got != tc.want {
				t.Errorf("status = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPingFuncMayCallTheApp(t *testing.T) {
	a := app.New(quiet())
	a.SetPingFunc(func() api.PingStatus {
		if a.AsyncTaskInfo().ActiveCount > 1 {
			return api.PingHealthyBusy
		}
		return api.PingHealthy
	})
	a.AddAsyncTask("one", nil)
	if got := a.Ping().Status; got != api.PingHealthy {
		t.Errorf("one task: %s, want Healthy (the func decides)", got)
	}
	a.AddAsyncTask("two", nil)
	if got := a.Ping().Status; got != api.PingHealthyBusy {
		t.Errorf("two tasks: %s, want HealthyBusy", got)
	}
}

func TestForcePingStatusRejectsUnknown(t *testing.T) {
	a := app.New(quiet())
	if err := a.ForcePingStatus("Busy"); !errors.Is(err, app.ErrInvalidPingStatus) {
		t.Errorf("ForcePingStatus(Busy) = %v, want ErrInvalidPingStatus", err)
	}
	if got := a.Ping().Status; got != api.PingHealthy {
		t.Errorf("status after rejected force = %s", got)
	}
}

func TestAsyncTaskInfo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := app.New(quiet())
		meta := map[string]any{"file": "data.csv"}
		idA := a.AddAsyncTask("process", meta)
		meta["file"] = "changed" // the app keeps its own copy
		time.Sleep(2 * time.Second)
		idB := a.AddAsyncTask("report", nil)
		time.Sleep(3 * time.Second)

		info := a.AsyncTaskInfo()
		if info.ActiveCount != 2 || len(info.RunningJobs) != 2 {
			t.Fatalf("info = %+v, want two jobs", info)
		}
		want := []app.AsyncTaskJob{
			{ID: idA, Name: "process", Metadata: map[string]any{"file": "data.csv"}, Duration: 5},
			{ID: idB, Name: "report", Duration: 3},
		}
		for i, w := range want {
			g := info.RunningJobs[i]
			if g.ID != w.ID || g.Name != w.Name || g.Duration != w.Duration || len(g.Metadata) != len(w.Metadata) ||
				(w.Metadata != nil && g.Metadata["file"] != w.Metadata["file"]) {
				t.Errorf("job %d = %+v, want %+v", i, g, w)
			}
		}
		b, err := json.Marshal(info)
		if err != nil {
			t.Fatal(err)
		}
		var wire map[string]any
		if err := json.Unmarshal(b, &wire); err != nil {
			t.Fatal(err)
		}
		if wire["active_count"] != float64(2) || wire["running_jobs"] == nil {
			t.Errorf("wire form %s, want active_count and running_jobs", b)
		}

		if !a.CompleteAsyncTask(idA) {
			t.Error("completing an active task returned false")
		}
		if a.CompleteAsyncTask(idA) {
			t.Error("completing a task twice returned true")
		}
		if a.CompleteAsyncTask(9999) {
			t.Error("completing an unknown task returned true")
		}
		if got := a.AsyncTaskInfo(); got.ActiveCount != 1 || got.RunningJobs[0].ID != idB {
			t.Errorf("after completing %d: %+v", idA, got)
		}
	})
}

func TestStartAsyncTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := app.New(quiet())
		release := make(chan struct{})
		a.StartAsyncTask("crunch", func(ctx context.Context) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		a.StartAsyncTask("fails", func(context.Context) error { return errors.New("disk full") })
		a.StartAsyncTask("panics", func(context.Context) error { panic("bad state") })
		synctest.Wait()

		if got := a.AsyncTaskInfo(); got.ActiveCount != 1 || got.RunningJobs[0].Name != "crunch" {
			t.Fatalf("running = %+v, want only crunch (failed and panicked tasks complete)", got)
		}
		if got := a.Ping().Status; got != api.PingHealthyBusy {
			t.Errorf("while crunching: %s, want HealthyBusy", got)
		}
		time.Sleep(90 * time.Second)
		close(release)
		synctest.Wait()
		p := a.Ping()
		if p.Status != api.PingHealthy || p.TimeOfLastUpdate != time.Now().Unix() {
			t.Errorf("after crunch: %+v, want Healthy since now", p)
		}
		if err := a.Shutdown(t.Context()); err != nil {
			t.Errorf("shutdown with nothing running: %v", err)
		}
	})
}

func TestShutdownCancelsAndWaitsForTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := app.New(quiet())
		var sawCancel bool
		a.StartAsyncTask("polite", func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(time.Second) // cleanup takes a while
			sawCancel = true
			return nil
		})
		stubborn := make(chan struct{})
		a.StartAsyncTask("stubborn", func(context.Context) error {
			<-stubborn // ignores its context
			return nil
		})

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := a.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("shutdown with a stubborn task = %v, want deadline exceeded", err)
		}
		if waited := time.Since(start); waited != 5*time.Second {
			t.Errorf("shutdown waited %v, want the full 5s deadline", waited)
		}
		if !sawCancel {
			t.Error("polite task did not finish its cleanup before shutdown gave up")
		}

		close(stubborn)
		if err := a.Shutdown(t.Context()); err != nil {
			t.Errorf("second shutdown = %v, want nil once every task returned", err)
		}
		if got := a.AsyncTaskInfo().ActiveCount; got != 0 {
			t.Errorf("%d tasks still registered after shutdown", got)
		}
	})
}
