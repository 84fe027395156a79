//go:build race

package store

// raceEnabled is true when the tests run under the race detector, which
// slows the crash test's re-executed writers about fivefold.
const raceEnabled = true
