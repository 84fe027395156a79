package process

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/internal/cgroups"
	"github.com/berth-dev/berth/internal/sandbox/internal/procfs"
)

var _ sandbox.StatsReporter = (*handle)(nil)

// trackMode says how a backend may track its sandboxes' processes; tests
// force the fallbacks.
type trackMode int

const (
	trackAuto   trackMode = iota // the best cgroup the host has, else marker
	trackV1                      // a cgroup v1 hierarchy, else marker
	trackMarker                  // the environment marker alone
)

// tracking finds every process of a sandbox: by its cgroup where the host
// gives berth one, else by the marker in its environment.
type tracking struct {
	// cg is nil without a usable cgroup hierarchy.
	cg *cgroups.Tracker
	// subreaper is set when berth took its sandboxes' orphans as children.
	subreaper bool
}

// newTracking picks how to track sandboxes under root. Without cgroups berth
// becomes a child subreaper: a sandbox's orphans (a double fork) are then
// its children, reaped by teardown, instead of init's.
func newTracking(root string, mode trackMode, logger *slog.Logger) tracking {
	var reason error = errors.New("cgroups turned off")
	if mode != trackMarker {
		// Named for the root, so two berths on one host keep apart.
		sum := sha256.Sum256([]byte(root))
		layout, err := cgroups.Detect("berth-process-" + hex.EncodeToString(sum[:4]))
		if err == nil {
			var t *cgroups.Tracker
			if t, err = layout.Tracker(mode == trackAuto); err == nil {
				return tracking{cg: t}
			}
		}
		reason = err
	}
	logger.Info("no cgroup for process sandboxes; finding their processes by environment marker", "reason", reason)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		logger.Warn("become child subreaper", "err", err)
		return tracking{}
	}
	return tracking{subreaper: true}
}

// create makes sandbox name's cgroup; "" without cgroups.
func (tr tracking) create(name string) (string, error) {
	if tr.cg == nil {
		return "", nil
	}
	return tr.cg.Create(name)
}

// start starts cmd inside the cgroup at dir, if any.
func (tr tracking) start(dir string, cmd *exec.Cmd) error {
	if dir == "" {
		return cmd.Start()
	}
	return tr.cg.Start(dir, cmd.SysProcAttr, cmd.Start)
}

// cgroupOf is rec's cgroup, if it is one this backend could have made: a
// record is only a file, and Reap must not kill a cgroup it names at will.
func (tr tracking) cgroupOf(rec record) string {
	if rec.Cgroup == "" || tr.cg == nil || rec.Cgroup != filepath.Join(tr.cg.Parent(), rec.Name) {
		return ""
	}
	return rec.Cgroup
}

// remove removes rec's cgroup, once kill has emptied it.
func (tr tracking) remove(rec record) {
	if dir := tr.cgroupOf(rec); dir != "" {
		_ = cgroups.RemoveDirs([]string{dir}, time.Now().Add(killWait))
	}
}

// kill SIGKILLs every process of rec's sandbox that is left, and waits
// until they are gone. It returns how many it signalled.
//
// others, at teardown, holds the leaders of this process's other live
// sandboxes; nil means a thorough kill (Reap's, of a sandbox a dead berth
// left). Reading a process's environment is costly (milliseconds for a
// scan, far more with many sessions ending at once), so teardown looks for
// the marker only where escapees can be: nowhere with a cgroup (leaving one
// takes write access to another), and, as child subreaper, only among
// berth's own descendants outside the other sandboxes.
func (tr tracking) kill(ctx context.Context, rec record, others map[int]bool) (int, error) {
	thorough := others == nil
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(killWait)
	}
	killed := 0
	if dir := tr.cgroupOf(rec); dir != "" {
		killed = len(cgroups.Procs(dir))
		cgroups.Kill([]string{dir}, deadline)
		if left := cgroups.Procs(dir); len(left) > 0 && !(len(left) == 1 && left[0] == os.Getpid()) {
			return killed, fmt.Errorf("cgroup %s still holds %v", dir, left)
		}
		if !thorough {
			return killed, nil
		}
	}
	var scope func([]procfs.Stat) map[int]bool
	if !thorough && tr.subreaper {
		scope = func(procs []procfs.Stat) map[int]bool { return descendants(procs, os.Getpid(), others) }
	}
	n, err := killMarked(ctx, rec, envSandbox+"="+rec.Name, scope)
	return killed + n, err
}

// envCommand marks every process of one command run in a sandbox, where
// no cgroup tracks it.
const envCommand = "BERTH_COMMAND"

// commandTrack finds one command's processes.
type commandTrack struct {
	// cgroup is the command's own, below its sandbox's; else marker is
	// the environment entry every process of the command inherits.
	cgroup string
	marker string
	pid    int
	start  uint64
}

// startCommand starts cmd, a command run in rec's sandbox, so that all of
// its processes can be found.
func (tr tracking) startCommand(rec record, cmd *exec.Cmd) (commandTrack, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := "x" + hex.EncodeToString(b[:])
	if dir := tr.cgroupOf(rec); dir != "" {
		sub := filepath.Join(dir, id)
		if err := os.Mkdir(sub, 0o755); err != nil {
			return commandTrack{}, fmt.Errorf("create command cgroup: %w", err)
		}
		if err := tr.cg.Start(sub, cmd.SysProcAttr, cmd.Start); err != nil {
			_ = cgroups.RemoveDirs([]string{sub}, time.Now().Add(killWait))
			return commandTrack{}, err
		}
		return commandTrack{cgroup: sub, pid: cmd.Process.Pid}, nil
	}
	tc := commandTrack{marker: envCommand + "=" + rec.Name + "-" + id}
	cmd.Env = append(cmd.Env, tc.marker)
	if err := cmd.Start(); err != nil {
		return commandTrack{}, err
	}
	tc.pid = cmd.Process.Pid
	tc.start, _ = procStartTime(tc.pid)
	return tc, nil
}

// killCommand SIGKILLs every process of the command and waits for them.
// leaderHeld says the command's first process is not yet reaped, so its
// session (which is also its process group) is still the command's.
func (tr tracking) killCommand(tc commandTrack, leaderHeld bool) {
	if tc.cgroup != "" {
		cgroups.Kill([]string{tc.cgroup}, time.Now().Add(killWait))
		return
	}
	pgid := 0
	if leaderHeld {
		pgid = tc.pid
	}
	ctx, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	scope := func(procs []procfs.Stat) map[int]bool { return descendants(procs, os.Getpid(), nil) }
	if !tr.subreaper {
		scope = nil
	}
	_, _ = killMarked(ctx, record{Name: tc.marker, PID: tc.pid, PGID: pgid, StartTime: tc.start}, tc.marker, scope)
}

// endCommand removes what tracked a command, once killCommand emptied it.
func (tr tracking) endCommand(tc commandTrack) {
	if tc.cgroup != "" {
		_ = cgroups.RemoveDirs([]string{tc.cgroup}, time.Now().Add(killWait))
	}
}

// commandProcAttr puts a command in a session (and process group) of its
// own, killed if berth dies.
func commandProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}

// awaitCommand waits for cmd's process to exit and leaves it unreaped, so
// its process group stays the command's: false. Where that cannot be
// done it reaps it: true.
func awaitCommand(cmd *exec.Cmd) bool {
	if waitExitNoReap(cmd.Process.Pid) {
		return false
	}
	_ = cmd.Wait()
	return true
}

// descendants are the PIDs below root in procs, except the subtrees of
// skip.
func descendants(procs []procfs.Stat, root int, skip map[int]bool) map[int]bool {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	out := map[int]bool{}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if !skip[c] && !out[c] {
				out[c] = true
				queue = append(queue, c)
			}
		}
	}
	return out
}

// reapOrphans kills and removes cgroups under the parent whose sandbox has
// no dir (berth died between making the two), except live ones.
func (tr tracking) reapOrphans(live func(string) bool) error {
	if tr.cg == nil {
		return nil
	}
	ents, err := os.ReadDir(tr.cg.Parent())
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !sandbox.ValidName(e.Name()) || live(e.Name()) {
			continue
		}
		d := []string{filepath.Join(tr.cg.Parent(), e.Name())}
		deadline := time.Now().Add(killWait)
		cgroups.Kill(d, deadline)
		if err := cgroups.RemoveDirs(d, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// members lists the sandbox's live processes: its cgroup's, else its
// process group's.
func (tr tracking) members(rec record) ([]procfs.Stat, error) {
	if dir := tr.cgroupOf(rec); dir != "" {
		var out []procfs.Stat
		for _, pid := range cgroups.Procs(dir) {
			if st, err := procfs.ReadStat(pid); err == nil && !st.Dead() {
				out = append(out, st)
			}
		}
		return out, nil
	}
	procs, err := procfs.Scan()
	if err != nil {
		return nil, err
	}
	var out []procfs.Stat
	for _, p := range procs {
		if p.PGID == rec.PGID && p.StartTime >= rec.StartTime && !p.Dead() {
			out = append(out, p)
		}
	}
	return out, nil
}

// sysProcAttr puts the agent in its own process group and has the kernel
// SIGKILL it if berth dies. (Pdeathsig follows the thread that forked; Go
// keeps that thread alive unless it was locked and abandoned, which os/exec
// callers do not do.) Grandchildren are not covered; Reap gets those.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExitNoReap blocks until pid exits, leaving it a zombie so its PID
// stays allocated. It reports false if it could not wait. It parks the
// goroutine on the netpoller through a pidfd rather than blocking an OS
// thread in waitid: a thousand idle sessions must not cost a thousand
// threads (and their system stacks).
func waitExitNoReap(pid int) bool {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return waitExitNoReapBlocking(pid)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return waitExitNoReapBlocking(pid)
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			return false
		case err != nil:
			return true
		case info.Signo != 0:
			exited = true
			return true
		}
		return false // still running: wait for the pidfd to turn readable
	})
	if err != nil || !exited {
		return waitExitNoReapBlocking(pid)
	}
	return true
}

func waitExitNoReapBlocking(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil {
			return true
		}
		if !errors.Is(err, syscall.EINTR) {
			return false
		}
	}
}

// leader is the agent of an attached sandbox, which is not our child.
type leader struct {
	p *procfs.Process
}

func openLeader(rec record) (leader, error) {
	p, err := procfs.Open(rec.PID, rec.StartTime)
	if errors.Is(err, procfs.ErrGone) {
		return leader{}, sandbox.ErrNotFound
	}
	return leader{p}, err
}

func (l leader) exited() bool { return l.p.Exited() }
func (l leader) wait()        { l.p.Wait() }
func (l leader) close()       { l.p.Close() }

func procStartTime(pid int) (uint64, error) { return procfs.StartTime(pid) }

// killMarked SIGKILLs the processes of rec's sandbox that berth can name
// without a cgroup, and waits for them to die. Identity rules:
//   - a process started before the leader is never ours;
//   - with the leader alive and matching, every member of its group is ours
//     (a PID equal to the group ID but a different start time is a
//     stranger that reused the number, and then so is its group);
//   - anywhere, a process carrying the marker is ours.
//
// Each kill goes through a pidfd opened before the final identity check, so
// a PID recycled in between is never signalled. Victims that are berth's
// children (orphans berth took as subreaper) are reaped. scope, if set,
// names the processes whose marker is worth reading.
func killMarked(ctx context.Context, rec record, marker string, scope func([]procfs.Stat) map[int]bool) (int, error) {
	if rec.PGID < 0 || rec.PGID == 1 || rec.StartTime == 0 || rec.PGID == os.Getpid() {
		return 0, nil
	}
	killed := 0
	var children []int
	defer func() { reapChildren(children) }()
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		victims, err := markedVictims(rec, marker, scope)
		if err != nil {
			return killed, err
		}
		if len(victims) == 0 {
			return killed, nil
		}
		for _, v := range victims {
			ok, err := killVerified(v)
			if err != nil {
				return killed, err
			}
			if ok {
				killed++
				if v.PPID == os.Getpid() && v.PID != rec.PID {
					children = append(children, v.PID)
				}
			}
		}
		select {
		case <-ctx.Done():
			return killed, fmt.Errorf("wait for sandbox %s to die: %w", rec.Name, ctx.Err())
		case <-time.After(delay):
		}
	}
}

func markedVictims(rec record, marker string, scope func([]procfs.Stat) map[int]bool) ([]procfs.Stat, error) {
	groupOurs := false
	if rec.PGID > 0 {
		leader, err := procfs.ReadStat(rec.PGID)
		groupOurs = err == nil && leader.StartTime == rec.StartTime
	}
	procs, err := procfs.Scan()
	if err != nil {
		return nil, err
	}
	var where map[int]bool
	if scope != nil {
		where = scope(procs)
	}
	self := os.Getpid()
	var out []procfs.Stat
	for _, p := range procs {
		if p.Dead() || p.StartTime < rec.StartTime || p.PID == self {
			continue
		}
		if p.PGID == rec.PGID && groupOurs || (where == nil || where[p.PID]) && procfs.HasEnv(p.PID, marker) {
			out = append(out, p)
		}
	}
	return out, nil
}

// reapChildren waits for the killed children, briefly: a SIGKILLed process
// dies within milliseconds unless stuck in the kernel.
func reapChildren(pids []int) {
	deadline := time.Now().Add(killWait)
	for _, pid := range pids {
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			if got == pid || err != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// killVerified SIGKILLs p if the process now holding p.PID is still p.
func killVerified(p procfs.Stat) (bool, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err != nil {
		// Kernels before 5.3 have no pidfd: check, then kill by PID.
		if errors.Is(err, syscall.ENOSYS) {
			if st, err := procfs.ReadStat(p.PID); err != nil || st.StartTime != p.StartTime {
				return false, nil
			}
			return killErr(syscall.Kill(p.PID, syscall.SIGKILL))
		}
		return false, fmt.Errorf("open pidfd %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if st, err := procfs.ReadStat(p.PID); err != nil || st.StartTime != p.StartTime {
		return false, nil
	}
	return killErr(unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0))
}

func killErr(err error) (bool, error) {
	if errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kill: %w", err)
	}
	return true, nil
}

// Stats sums memory (RSS), CPU time and process count over the sandbox's
// processes. After the agent exits it reports zeros.
func (h *handle) Stats() (sandbox.Stats, error) {
	select {
	case <-h.done:
		return sandbox.Stats{}, nil
	default:
	}
	members, err := h.b.tree.members(h.rec)
	if err != nil {
		return sandbox.Stats{}, fmt.Errorf("sandbox stats: %w", err)
	}
	page := int64(os.Getpagesize())
	var s sandbox.Stats
	for _, m := range members {
		s.MemoryBytes += m.RSSPages * page
		s.CPUUsage += time.Duration(m.UTime+m.STime) * procfs.ClockTick
		s.Pids++
	}
	return s, nil
}
