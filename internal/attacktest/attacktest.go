// Package attacktest is berth's API attack suite: requests an attacker
// who can reach berth's port would send, each one a case that must be
// refused with the AgentCore error type it deserves and must leave nothing
// behind (no runtime, no process, no file, no session). The suite counts
// its cases and reports "N attacks, N refused"; the escape suite in
// internal/sandbox/linux does the same for what an agent tries from
// inside its sandbox.
//
// The package holds only the ledger; the attacks are its tests.
package attacktest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/testenv"
)

// Ledger counts attacks and how many were refused. Its methods are safe
// for concurrent use by parallel subtests.
type Ledger struct {
	mu             sync.Mutex
	tried, refused int
}

// Attack records one attack; refused must say whether berth held, and
// detail what happened when it did not.
func (l *Ledger) Attack(t testing.TB, what string, refused bool, detail any) {
	t.Helper()
	l.mu.Lock()
	l.tried++
	if refused {
		l.refused++
	}
	l.mu.Unlock()
	if !refused {
		t.Errorf("NOT REFUSED: %s: %v", what, detail)
	}
}

// Report logs the figure and hands it to scripts/test.
func (l *Ledger) Report(t testing.TB) {
	l.mu.Lock()
	defer l.mu.Unlock()
	testenv.Report(t, "attack suite", fmt.Sprintf("%d attacks, %d refused", l.tried, l.refused))
}
