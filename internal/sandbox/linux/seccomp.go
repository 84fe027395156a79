//go:build linux

package linux

import (
	"fmt"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside a sandbox. Dropped capabilities
// already forbid most of them; the filter is a second wall that also closes
// kernel attack surface unprivileged code could otherwise reach (bpf,
// perf_event_open, keyctl, userfaultfd, io_uring).
var deniedSyscalls = []string{
	// Filesystems and the mount tree.
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
	"fspick", "move_mount", "open_tree", "mount_setattr", "open_by_handle_at",
	"name_to_handle_at", "swapon", "swapoff", "quotactl",
	// Kernel and modules.
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"reboot", "bpf", "perf_event_open", "syslog", "acct", "iopl", "ioperm",
	"lookup_dcookie", "uselib", "vhangup",
	// Other processes' memory.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// Keyrings are not namespaced.
	"keyctl", "add_key", "request_key",
	// Namespaces: joining any, or making new ones.
	"setns", "sethostname", "setdomainname",
	// Clocks are host-wide.
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// nsFlags are clone/unshare flags that create namespaces.
const nsFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
	unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP |
	unix.CLONE_NEWTIME

// sandboxPolicy is the filter every sandbox loads before its agent runs.
func sandboxPolicy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: deniedSyscalls},
			{
				Action: seccomp.ActionErrno,
				NamesWithCondtions: []seccomp.NameWithConditions{
					{Name: "unshare", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.BitsSet, Value: nsFlags}}},
					{Name: "clone", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.BitsSet, Value: nsFlags}}},
				},
			},
			// clone3 passes its flags in memory a filter cannot read. ENOSYS
			// (not EPERM) makes glibc and Go fall back to clone, which is filtered.
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
		},
	}
}

// assembleSeccomp compiles the filter. Warm inits do it while they wait.
func assembleSeccomp() ([]unix.SockFilter, error) {
	policy := sandboxPolicy()
	insts, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("assemble seccomp filter: %w", err)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("assemble seccomp filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// installSeccomp sets no_new_privs and installs filter on every thread of
// the calling process.
func installSeccomp(filter []unix.SockFilter) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	if r != 0 {
		// TSYNC names the thread it could not synchronise.
		return fmt.Errorf("load seccomp filter: thread %d could not take it", r)
	}
	return nil
}
