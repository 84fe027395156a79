//go:build !linux

package config

// hostMemory is unknown off Linux.
func hostMemory() uint64 { return 0 }
