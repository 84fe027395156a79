//go:build linux

// Package procfs reads the parts of /proc the sandbox backends use to name
// a process beyond its PID (its start time defeats PID reuse), find a
// sandbox's processes and report their use.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Stat is the part of /proc/<pid>/stat berth uses.
type Stat struct {
	PID   int
	State byte
	PPID  int
	PGID  int
	UTime uint64 // clock ticks
	STime uint64 // clock ticks
	// StartTime is in clock ticks since boot; with the PID it names a
	// process for good.
	StartTime uint64
	RSSPages  int64
}

// Dead reports a zombie, or a process being torn down.
func (s Stat) Dead() bool { return s.State == 'Z' || s.State == 'X' }

// ClockTick is USER_HZ, fixed at 100 in the kernel's user ABI.
const ClockTick = 10 * time.Millisecond

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(pid, data)
}

// ParseStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func ParseStat(pid int, data []byte) (Stat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	var err error
	num := func(n int) uint64 {
		v, perr := strconv.ParseUint(string(f[n-3]), 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("parse /proc/%d/stat field %d: %w", pid, n, perr)
		}
		return v
	}
	return Stat{
		PID:       pid,
		State:     f[0][0],
		PPID:      int(num(4)),
		PGID:      int(num(5)),
		UTime:     num(14),
		STime:     num(15),
		StartTime: num(22),
		RSSPages:  int64(num(24)),
	}, err
}

// StartTime is pid's start time, or an error if it is gone.
func StartTime(pid int) (uint64, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, fmt.Errorf("read process start time: %w", err)
	}
	return st.StartTime, nil
}

// Scan reads the stat of every process. Processes that vanish while
// scanning are skipped.
func Scan() ([]Stat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	procs := make([]Stat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(pid); err == nil {
			procs = append(procs, st)
		}
	}
	return procs, nil
}

// HasEnv reports whether pid's initial environment holds entry
// ("KEY=value"). A process that cannot be read (gone, a zombie, not ours
// to read) has none.
func HasEnv(pid int, entry string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for e := range bytes.SplitSeq(env, []byte{0}) {
		if string(e) == entry {
			return true
		}
	}
	return false
}
