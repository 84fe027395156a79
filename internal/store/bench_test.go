package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/session"
)

func benchRecord(i int) session.Record {
	return session.Record{
		Key:   session.Key{RuntimeID: "bench-0000000000", Endpoint: "DEFAULT", SessionID: fmt.Sprintf("%040d", i)},
		Lease: session.Lease{Owner: "node"},
	}
}

// BenchmarkUpdateSession is the per-invocation write: one fenced update.
func BenchmarkUpdateSession(b *testing.B) {
	db := openTempB(b)
	rec, err := db.ClaimSession(b.Context(), benchRecord(0))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		err := db.UpdateSession(b.Context(), rec.ID, rec.Lease, func(r *session.Record) {
			r.Invocations++
			r.LastActiveAt = time.Now()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimEnd is one session's start and end.
func BenchmarkClaimEnd(b *testing.B) {
	db := openTempB(b)
	i := 0
	for b.Loop() {
		rec, err := db.ClaimSession(b.Context(), benchRecord(i%100))
		if err != nil {
			b.Fatal(err)
		}
		if err := db.EndSession(b.Context(), rec.ID, rec.Lease, session.EndStopped, "", time.Time{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGetSessionParallel is the invoke path's lookup, from many
// goroutines, while nothing writes.
func BenchmarkGetSessionParallel(b *testing.B) {
	db := openTempB(b)
	rec, err := db.ClaimSession(b.Context(), benchRecord(0))
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.GetSession(b.Context(), rec.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func openTempB(b *testing.B) *DB {
	b.Helper()
	db, err := Open(b.Context(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}
