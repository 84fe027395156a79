// Package archtest holds no code: its tests enforce berth's dependency rule
// (docs/ARCHITECTURE.md) with `go list -deps`, and keep HTTP statuses and
// AgentCore's error types at the HTTP edge by parsing the source.
package archtest
