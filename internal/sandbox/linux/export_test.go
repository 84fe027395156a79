//go:build linux

package linux

import "path/filepath"

// SandboxPaths lists the host paths a sandbox named name would occupy: its
// directory and one cgroup per hierarchy.
func SandboxPaths(b *Backend, name string) []string {
	out := []string{filepath.Join(b.cfg.RootDir, name)}
	for _, d := range b.layout.dirs() {
		out = append(out, filepath.Join(d, name))
	}
	return out
}
