package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

var _ sandbox.StatsReporter = (*handle)(nil)

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

// procStat is the part of /proc/<pid>/stat berth uses.
type procStat struct {
	pid       int
	state     byte
	pgid      int
	utime     uint64 // clock ticks
	stime     uint64 // clock ticks
	startTime uint64 // clock ticks since boot
	rssPages  int64
}

func (p procStat) dead() bool { return p.state == 'Z' || p.state == 'X' }

// clockTick is USER_HZ, fixed at 100 in the kernel's user ABI.
const clockTick = 10 * time.Millisecond

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, data)
}

// parseStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(pid int, data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	var err error
	num := func(n int) uint64 {
		v, perr := strconv.ParseUint(string(f[n-3]), 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("parse /proc/%d/stat field %d: %w", pid, n, perr)
		}
		return v
	}
	p := procStat{
		pid:       pid,
		state:     f[0][0],
		pgid:      int(num(5)),
		utime:     num(14),
		stime:     num(15),
		startTime: num(22),
		rssPages:  int64(num(24)),
	}
	return p, err
}

func procStartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, fmt.Errorf("read process start time: %w", err)
	}
	return st.startTime, nil
}

// scanProcs reads the stat of every process. Processes that vanish while
// scanning are skipped.
func scanProcs() ([]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	procs := make([]procStat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			procs = append(procs, st)
		}
	}
	return procs, nil
}

// groupMembers returns the live processes of group pgid that started no
// earlier than its leader did.
func groupMembers(pgid int, leaderStart uint64) ([]procStat, error) {
	procs, err := scanProcs()
	if err != nil {
		return nil, err
	}
	var out []procStat
	for _, p := range procs {
		if p.pgid == pgid && p.startTime >= leaderStart && !p.dead() {
			out = append(out, p)
		}
	}
	return out, nil
}

// awaitGroupGone waits, up to timeout, until no live process of the
// already-SIGKILLed group remains. Orphans are reaped by init, not by us,
// so polling /proc is the only way to see them go.
func awaitGroupGone(pgid int, leaderStart uint64, timeout time.Duration) {
	// Signal 0 sends nothing; ESRCH means the group has no member at all,
	// not even a zombie, which spares the scan in the common case.
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return
	}
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		members, err := groupMembers(pgid, leaderStart)
		if err != nil || len(members) == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
	}
}

// killLeftover SIGKILLs the processes rec describes, if they are still the
// ones berth started, and waits for them to die. It returns how many it
// signalled. Identity rules:
//   - a process whose PID is the group ID but whose start time differs is
//     a stranger that reused the number; then no member of ours can be
//     left, since a live member keeps the group ID allocated;
//   - with the leader alive and matching, every member of the group is ours;
//   - with the leader gone, a member must also carry the sandbox's name in
//     its environment.
//
// Each kill goes through a pidfd opened before the final identity check, so
// a PID recycled in between is never signalled.
func killLeftover(ctx context.Context, rec record) (int, error) {
	if rec.PGID <= 1 || rec.StartTime == 0 || rec.PGID == os.Getpid() {
		return 0, nil
	}
	killed := 0
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		victims, err := leftoverVictims(rec)
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
			}
		}
		select {
		case <-ctx.Done():
			return killed, fmt.Errorf("wait for group %d to die: %w", rec.PGID, ctx.Err())
		case <-time.After(delay):
		}
	}
}

func leftoverVictims(rec record) ([]procStat, error) {
	leader, err := readStat(rec.PGID)
	leaderGone := err != nil
	if !leaderGone && leader.startTime != rec.StartTime {
		return nil, nil
	}
	members, err := groupMembers(rec.PGID, rec.StartTime)
	if err != nil {
		return nil, err
	}
	if !leaderGone {
		return members, nil
	}
	marker := []byte(envSandbox + "=" + rec.Name)
	var out []procStat
	for _, m := range members {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(m.pid) + "/environ")
		if err != nil {
			continue
		}
		for entry := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(entry, marker) {
				out = append(out, m)
				break
			}
		}
	}
	return out, nil
}

// killVerified SIGKILLs p if the process now holding p.pid is still p.
func killVerified(p procStat) (bool, error) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err != nil {
		// Kernels before 5.3 have no pidfd: check, then kill by PID.
		if errors.Is(err, syscall.ENOSYS) {
			if st, err := readStat(p.pid); err != nil || st.startTime != p.startTime {
				return false, nil
			}
			return killErr(syscall.Kill(p.pid, syscall.SIGKILL))
		}
		return false, fmt.Errorf("open pidfd %d: %w", p.pid, err)
	}
	defer unix.Close(fd)
	if st, err := readStat(p.pid); err != nil || st.startTime != p.startTime {
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
// process group. After the agent exits it reports zeros.
func (h *handle) Stats() (sandbox.Stats, error) {
	select {
	case <-h.done:
		return sandbox.Stats{}, nil
	default:
	}
	members, err := groupMembers(h.pid, h.startTime)
	if err != nil {
		return sandbox.Stats{}, fmt.Errorf("sandbox stats: %w", err)
	}
	page := int64(os.Getpagesize())
	var s sandbox.Stats
	for _, m := range members {
		s.MemoryBytes += m.rssPages * page
		s.CPUUsage += time.Duration(m.utime+m.stime) * clockTick
		s.Pids++
	}
	return s, nil
}
