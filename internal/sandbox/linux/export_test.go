//go:build linux

package linux

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/berth-dev/berth/internal/sandbox"
)

// CgroupDirs lists the cgroup directories a started sandbox runs in.
func CgroupDirs(h sandbox.Handle) []string {
	return slices.Clone(h.(*handle).p.cg.Dirs)
}

// SandboxDir is the host directory holding a sandbox's state file.
func SandboxDir(b *Backend, name string) string {
	return filepath.Join(b.cfg.RootDir, name)
}

// IdleInits counts the warm inits waiting in b's pool.
func IdleInits(b *Backend) int { return len(b.pool.idleNames()) }

// IdleInitPids lists the host pids of the warm inits in b's pool.
func IdleInitPids(b *Backend) []int {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	var out []int
	for _, q := range b.pool.idle {
		for _, p := range q {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	return out
}

// InitPid is the host pid of a started sandbox's init.
func InitPid(h sandbox.Handle) int { return h.(*handle).p.cmd.Process.Pid }

// EgressChainPrefix is the prefix of b's iptables chain names.
func EgressChainPrefix(b *Backend) string { return b.egress.chain + "-" }

// Leftovers lists host resources under b's root, cgroup parents and egress
// range that belong to no live sandbox and no init b still holds (pooled or
// being started): what a correct Stop, failed Start or Reap leaves behind.
func Leftovers(b *Backend) []string {
	b.mu.Lock()
	ours := map[string]bool{}
	for n := range b.live {
		ours[n] = true
	}
	for n := range b.procs {
		ours[n] = true
	}
	b.mu.Unlock()
	b.egress.mu.Lock()
	links := map[string]bool{}
	for i := range b.egress.used {
		links[b.egress.vethFor(i).Name] = true
	}
	b.egress.mu.Unlock()

	var out []string
	entries, _ := os.ReadDir(b.cfg.RootDir)
	for _, e := range entries {
		if reapable(e.Name()) && !ours[e.Name()] {
			out = append(out, filepath.Join(b.cfg.RootDir, e.Name()))
		}
	}
	for _, d := range b.layout.Dirs() {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() && reapable(e.Name()) && !ours[e.Name()] {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(n.IP)
			if b.egress.subnets.Contains(ip.Unmap()) && !links[ifc.Name] {
				out = append(out, "link "+ifc.Name)
			}
		}
	}
	return out
}
