package session

import (
	"context"
	"time"
)

// offstack runs the store writes a session runner makes on a short-lived
// goroutine. The SQLite driver needs a deep stack; run on the runner it
// would leave every idle session holding tens of kilobytes of grown stack.
type offstack struct{ Store }

func onFreshStack[T any](fn func() T) T {
	ch := make(chan T, 1)
	go func() { ch <- fn() }()
	return <-ch
}

type claimResult struct {
	rec Record
	err error
}

func (o offstack) ClaimSession(ctx context.Context, rec Record) (Record, error) {
	r := onFreshStack(func() claimResult {
		rec, err := o.Store.ClaimSession(ctx, rec)
		return claimResult{rec, err}
	})
	return r.rec, r.err
}

func (o offstack) UpdateSession(ctx context.Context, id string, l Lease, fn func(*Record)) error {
	return onFreshStack(func() error { return o.Store.UpdateSession(ctx, id, l, fn) })
}

func (o offstack) EndSession(ctx context.Context, id string, l Lease, reason EndReason, detail string, at time.Time) error {
	return onFreshStack(func() error { return o.Store.EndSession(ctx, id, l, reason, detail, at) })
}
