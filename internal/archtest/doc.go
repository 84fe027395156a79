// Package archtest holds no code: its tests enforce berth's dependency rule
// (docs/ARCHITECTURE.md) with `go list -deps`.
package archtest
