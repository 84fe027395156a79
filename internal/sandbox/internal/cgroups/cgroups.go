//go:build linux

// Package cgroups puts sandboxes in cgroups, reads their use and kills them
// by cgroup, on cgroup v1, v2 and hosts that mount both. Both sandbox
// backends share it: linux for limits and accounting (Layout, Group), the
// process backend to track and kill every process of a sandbox, however it
// left its process group (Tracker).
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Controllers berth uses. cpuacct exists only on v1; on v2 the always-present
// cpu.stat gives the same number. freezer (v1 only; v2 freezes in core) is
// used, where present, to stop a tree from forking while it is killed.
const (
	Memory  = "memory"
	CPU     = "cpu"
	CPUAcct = "cpuacct"
	Pids    = "pids"
	Freezer = "freezer"
)

// Layout says where each controller lives on this host. Hosts differ: pure
// v1, pure v2, or (like the CI machines) v1 controllers with a v2 hierarchy
// mounted beside them holding few controllers. Each controller is taken
// from v1 if a v1 hierarchy has it, otherwise from v2.
type Layout struct {
	// parent maps a controller to the directory under which sandbox cgroups
	// are created (mount point + berth's own cgroup, if relative + parent).
	parent map[string]string
	// own maps a v1 controller to berth's own cgroup directory in its
	// hierarchy.
	own map[string]string
	// v2 maps controllers served by the unified hierarchy.
	v2 map[string]bool
	// v2Parent is the parent directory in the unified hierarchy, or "".
	v2Parent string
}

// Detect reads /proc/self/mountinfo and /proc/self/cgroup. A relative
// parentName nests under berth's own cgroup (the delegation pattern systemd
// recommends); an absolute one starts at the hierarchy root.
func Detect(parentName string) (*Layout, error) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	l := &Layout{parent: map[string]string{}, own: map[string]string{}, v2: map[string]bool{}}
	under := func(mountPoint, ownPath string) string {
		if filepath.IsAbs(parentName) {
			return filepath.Join(mountPoint, parentName)
		}
		return filepath.Join(mountPoint, ownPath, parentName)
	}
	var v2Mount string
	for line := range strings.SplitSeq(string(mounts), "\n") {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 {
			continue
		}
		switch pf[0] {
		case "cgroup2":
			if v2Mount == "" {
				v2Mount = f[4]
			}
		case "cgroup":
			for opt := range strings.SplitSeq(pf[2], ",") {
				switch opt {
				case Memory, CPU, CPUAcct, Pids, Freezer:
					if _, dup := l.parent[opt]; !dup {
						l.parent[opt] = under(f[4], own[opt])
						l.own[opt] = filepath.Join(f[4], own[opt])
					}
				}
			}
		}
	}
	if v2Mount != "" {
		l.v2Parent = under(v2Mount, own[""])
		ctrls, err := os.ReadFile(filepath.Join(v2Mount, "cgroup.controllers"))
		if err == nil {
			for c := range strings.FieldsSeq(string(ctrls)) {
				if _, inV1 := l.parent[c]; !inV1 && (c == Memory || c == CPU || c == Pids) {
					l.v2[c] = true
					l.parent[c] = l.v2Parent
				}
			}
		}
	}
	return l, nil
}

// ownCgroups maps each v1 controller (and "" for v2) to berth's own cgroup path.
func ownCgroups() (map[string]string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	own := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	return own, nil
}

// Missing names the controllers the linux backend needs that this host lacks.
func (l *Layout) Missing() []string {
	var out []string
	for _, c := range []string{Memory, Pids, CPU} {
		if _, ok := l.parent[c]; !ok {
			out = append(out, c)
		}
	}
	return out
}

// Dirs returns the distinct parent directories sandbox cgroups go under.
func (l *Layout) Dirs() []string {
	seen := map[string]bool{}
	var out []string
	add := func(d string) {
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, c := range []string{Memory, CPU, CPUAcct, Pids} {
		add(l.parent[c])
	}
	// A v2 cgroup is only worth its (sometimes slow) placement when v2
	// serves a controller, or cpu.stat stands in for a missing cpuacct.
	if _, acct := l.parent[CPUAcct]; len(l.v2) > 0 || !acct {
		add(l.v2Parent)
	}
	return out
}

// Prepare creates the parent directories and, on v2, enables the controllers
// berth needs in every ancestor's subtree_control.
func (l *Layout) Prepare() error {
	for _, d := range l.Dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup parent %s: %w", d, err)
		}
	}
	if len(l.v2) == 0 {
		return nil
	}
	var plus []string
	for c := range l.v2 {
		plus = append(plus, "+"+c)
	}
	// Walk from the hierarchy root down to the parent: a controller must be
	// enabled in each ancestor before a child can use it.
	root := l.v2Parent
	for {
		up := filepath.Dir(root)
		if _, err := os.Stat(filepath.Join(up, "cgroup.controllers")); err != nil {
			break
		}
		root = up
	}
	rel, _ := filepath.Rel(root, l.v2Parent)
	dir := root
	steps := []string{""}
	if rel != "." {
		steps = append(steps, strings.Split(rel, "/")...)
	}
	for _, s := range steps {
		dir = filepath.Join(dir, s)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(plus, " ")), 0); err != nil {
			return fmt.Errorf("enable cgroup v2 controllers in %s (on v2, give berth a delegated cgroup or an absolute parent): %w", dir, err)
		}
	}
	return nil
}

// Group is one sandbox's set of cgroups, one per hierarchy.
type Group struct {
	layout *Layout
	name   string
	// Dirs lists every cgroup directory created, for removal and reaping.
	Dirs []string
}

// Open is the group Create made under name, from the directories it
// reported; false if they are not where this layout puts a group by that
// name (a record is only a file: never trust one to name any cgroup).
func (l *Layout) Open(name string, dirs []string) (*Group, bool) {
	want := l.Dirs()
	if len(dirs) != len(want) {
		return nil, false
	}
	for i, d := range want {
		if dirs[i] != filepath.Join(d, name) {
			return nil, false
		}
	}
	return &Group{layout: l, name: name, Dirs: dirs}, true
}

func (l *Layout) path(ctl, name string) string {
	p, ok := l.parent[ctl]
	if !ok {
		return ""
	}
	return filepath.Join(p, name)
}

// Create makes the sandbox's cgroups and writes its limits.
func (l *Layout) Create(name string, lim sandbox.Limits) (*Group, error) {
	g := &Group{layout: l, name: name}
	for _, d := range l.Dirs() {
		dir := filepath.Join(d, name)
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrNotExist) {
			// Someone removed the (then empty) parent: make it again.
			if err = l.Prepare(); err == nil {
				err = os.Mkdir(dir, 0o755)
			}
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			_ = g.Remove()
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		g.Dirs = append(g.Dirs, dir)
	}
	if err := g.SetLimits(lim); err != nil {
		_ = g.Remove()
		return nil, err
	}
	return g, nil
}

func writeCg(dir, file, val string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
		return fmt.Errorf("write cgroup %s=%s: %w", file, val, err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// SetLimits writes lim into the group's controllers.
func (g *Group) SetLimits(lim sandbox.Limits) error {
	l := g.layout
	if lim.MemoryBytes > 0 {
		dir := l.path(Memory, g.name)
		if dir == "" {
			return fmt.Errorf("memory limit: no memory cgroup controller: %w", sandbox.ErrUnsupported)
		}
		v := strconv.FormatInt(lim.MemoryBytes, 10)
		if l.v2[Memory] {
			if err := writeCg(dir, "memory.max", v); err != nil {
				return err
			}
			if exists(filepath.Join(dir, "memory.swap.max")) {
				if err := writeCg(dir, "memory.swap.max", "0"); err != nil {
					return err
				}
			}
		} else {
			if err := writeCg(dir, "memory.limit_in_bytes", v); err != nil {
				return err
			}
			// Without this, a host with swap lets the sandbox swap past its limit.
			if exists(filepath.Join(dir, "memory.memsw.limit_in_bytes")) {
				if err := writeCg(dir, "memory.memsw.limit_in_bytes", v); err != nil {
					return err
				}
			}
		}
	}
	if lim.CPUMillis > 0 {
		dir := l.path(CPU, g.name)
		if dir == "" {
			return fmt.Errorf("cpu limit: no cpu cgroup controller: %w", sandbox.ErrUnsupported)
		}
		const period = 100000
		quota := strconv.FormatInt(lim.CPUMillis*period/1000, 10)
		if l.v2[CPU] {
			if err := writeCg(dir, "cpu.max", quota+" "+strconv.Itoa(period)); err != nil {
				return err
			}
		} else {
			// 100 ms is the kernel's default period: skip the write when so.
			if cur, err := readInt(filepath.Join(dir, "cpu.cfs_period_us")); err != nil || cur != period {
				if err := writeCg(dir, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
					return err
				}
			}
			if err := writeCg(dir, "cpu.cfs_quota_us", quota); err != nil {
				return err
			}
		}
	}
	if lim.Pids > 0 {
		dir := l.path(Pids, g.name)
		if dir == "" {
			return fmt.Errorf("pids limit: no pids cgroup controller: %w", sandbox.ErrUnsupported)
		}
		if err := writeCg(dir, "pids.max", strconv.FormatInt(lim.Pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

// Add places pid in every cgroup of the group.
func (g *Group) Add(pid int) error {
	p := []byte(strconv.Itoa(pid))
	for _, d := range g.Dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), p, 0); err != nil {
			return fmt.Errorf("place pid in cgroup %s: %w", d, err)
		}
	}
	return nil
}

// OOMKilled reports whether the kernel OOM-killed anything in the memory cgroup.
func (g *Group) OOMKilled() bool {
	dir := g.layout.path(Memory, g.name)
	if dir == "" {
		return false
	}
	file := "memory.oom_control"
	if g.layout.v2[Memory] {
		file = "memory.events"
	}
	n, _ := readKeyed(filepath.Join(dir, file), "oom_kill")
	return n > 0
}

// Stats reads live resource use.
func (g *Group) Stats() (sandbox.Stats, error) {
	var s sandbox.Stats
	l := g.layout
	if dir := l.path(Memory, g.name); dir != "" {
		file := "memory.usage_in_bytes"
		if l.v2[Memory] {
			file = "memory.current"
		}
		v, err := readInt(filepath.Join(dir, file))
		if err != nil {
			return s, err
		}
		s.MemoryBytes = v
	}
	if dir := l.path(CPUAcct, g.name); dir != "" {
		ns, err := readInt(filepath.Join(dir, "cpuacct.usage"))
		if err != nil {
			return s, err
		}
		s.CPUUsage = time.Duration(ns)
	} else if l.v2Parent != "" {
		us, err := readKeyed(filepath.Join(l.v2Parent, g.name, "cpu.stat"), "usage_usec")
		if err != nil {
			return s, err
		}
		s.CPUUsage = time.Duration(us) * time.Microsecond
	}
	if dir := l.path(Pids, g.name); dir != "" {
		v, err := readInt(filepath.Join(dir, "pids.current"))
		if err != nil {
			return s, err
		}
		s.Pids = v
	}
	return s, nil
}

// Sub is a cgroup below a group's, in its pids hierarchy, that tracks one
// command's process tree however it forks, setsids or double-forks. It
// holds no limits of its own: the group's, above it, cover it. The
// group's other hierarchies keep the command in the group's own cgroups.
type Sub struct {
	dir, parent string
}

// NewSub creates a cgroup named name below the group's.
func (g *Group) NewSub(name string) (*Sub, error) {
	parent := g.layout.path(Pids, g.name)
	if parent == "" {
		return nil, fmt.Errorf("track a command: no pids cgroup controller: %w", sandbox.ErrUnsupported)
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create command cgroup: %w", err)
	}
	return &Sub{dir: dir, parent: parent}, nil
}

// Enter moves pid (every thread of it) into the sub-cgroup; its children
// are born there. Leave moves it back to the group's cgroup.
func (s *Sub) Enter(pid int) error { return movePid(s.dir, pid) }

// Leave moves pid back from the sub-cgroup to the group's.
func (s *Sub) Leave(pid int) error { return movePid(s.parent, pid) }

func movePid(dir string, pid int) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move pid %d to cgroup %s: %w", pid, dir, err)
	}
	return nil
}

// Kill kills every process in the sub-cgroup and waits for them, until the
// deadline.
func (s *Sub) Kill(deadline time.Time) { Kill([]string{s.dir}, deadline) }

// Remove kills what is left in the sub-cgroup and removes it.
func (s *Sub) Remove(deadline time.Time) error {
	s.Kill(deadline)
	return RemoveDirs([]string{s.dir}, deadline)
}

// Remove kills whatever is left in the group and removes its directories.
func (g *Group) Remove() error {
	deadline := time.Now().Add(5 * time.Second)
	Kill(g.Dirs, deadline)
	return RemoveDirs(g.Dirs, deadline)
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read cgroup stat: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func readKeyed(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read cgroup stat: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("read cgroup stat: %s has no %s", path, key)
}

// Procs lists the processes in the cgroup at dir; a missing cgroup has none.
func Procs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Kill SIGKILLs every process in the given cgroups and their descendant
// cgroups (a command's, below its sandbox's) and waits, until the deadline,
// for them to be empty. Where it can it freezes them first, so nothing forks
// between reading a cgroup's members and killing them (a process with
// SIGKILL pending cannot fork once thawed); v2's cgroup.kill does it all in
// one write. berth's own process is never signalled.
func Kill(dirs []string, deadline time.Time) {
	var unkillable []string
	for _, d := range dirs {
		if len(members(d)) == 0 {
			continue // nothing to kill; a freeze would only cost time
		}
		if os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0) != nil {
			unkillable = append(unkillable, d)
		}
	}
	freezeBy := time.Now().Add(freezeWait)
	if deadline.Before(freezeBy) {
		freezeBy = deadline
	}
	frozen := freeze(unkillable, freezeBy)
	self := os.Getpid()
	// Dying tasks leave within microseconds: poll fast, then back off.
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		alive := false
		for _, d := range dirs {
			for _, pid := range members(d) {
				if pid != self {
					alive = true
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		// Thawed only now: every member has its SIGKILL pending.
		thaw(frozen)
		frozen = nil
		if !alive || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
	}
}

// members lists the processes in the cgroup at dir and in every cgroup
// below it (v1 lists a cgroup's own members only).
func members(dir string) []int {
	pids := Procs(dir)
	for _, c := range children(dir) {
		pids = append(pids, members(c)...)
	}
	return pids
}

// children are the cgroups directly below dir.
func children(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// freezeWait bounds the wait for a freeze: a task in uninterruptible sleep
// delays it, and the kill loop copes without one.
const freezeWait = 200 * time.Millisecond

// freeze freezes every cgroup in dirs that has a freezer (v2's
// cgroup.freeze, v1's freezer.state), waiting until frozen or the deadline,
// and returns the freezer files to thaw.
func freeze(dirs []string, deadline time.Time) []string {
	var files []string
	for _, d := range dirs {
		for _, f := range []string{"cgroup.freeze", "freezer.state"} {
			p := filepath.Join(d, f)
			val := "1"
			if f == "freezer.state" {
				val = "FROZEN"
			}
			if os.WriteFile(p, []byte(val), 0) == nil {
				files = append(files, p)
			}
		}
	}
	for _, p := range files {
		for !frozenNow(p) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return files
}

func frozenNow(file string) bool {
	if filepath.Base(file) == "freezer.state" {
		b, err := os.ReadFile(file)
		return err != nil || strings.TrimSpace(string(b)) != "FREEZING"
	}
	n, err := readKeyed(filepath.Join(filepath.Dir(file), "cgroup.events"), "frozen")
	return err != nil || n == 1
}

func thaw(files []string) {
	for _, p := range files {
		val := "0"
		if filepath.Base(p) == "freezer.state" {
			val = "THAWED"
		}
		_ = os.WriteFile(p, []byte(val), 0)
	}
}

// RemoveDirs removes cgroup directories, the cgroups below them first,
// retrying while the kernel still counts exiting tasks in them.
func RemoveDirs(dirs []string, deadline time.Time) error {
	var errs []error
	for _, d := range dirs {
		if err := RemoveDirs(children(d), deadline); err != nil {
			errs = append(errs, err)
		}
		for delay := 100 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			time.Sleep(delay)
		}
	}
	return errors.Join(errs...)
}
