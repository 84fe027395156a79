//go:build linux

package linux_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
)

// escapeLedger counts escape attempts and how many were contained.
type escapeLedger struct {
	t                   *testing.T
	attempts, contained int
}

// attempt records one try; contained must say whether the sandbox held.
func (l *escapeLedger) attempt(what string, contained bool, detail any) {
	l.t.Helper()
	l.attempts++
	if contained {
		l.contained++
		l.t.Logf("contained: %s", what)
		return
	}
	l.t.Errorf("ESCAPED: %s: %v", what, detail)
}

// denied is true when the agent's attempt failed with err mentioning one of want.
func denied(r tryResult, want ...string) bool {
	if r.OK {
		return false
	}
	for _, w := range want {
		if strings.Contains(r.Err, w) {
			return true
		}
	}
	return len(want) == 0
}

// hostPidOf finds the host pid of a process whose cmdline contains token.
func hostPidsOf(token string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(token)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hostPidInCgroup finds a host pid, other than the init, in the cgroup
// whose directory is dir.
func hostPidInCgroup(dir string) int {
	name := filepath.Base(dir)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cg, []byte("/"+name+"\n")) && !bytes.Contains(cmd, []byte("__berth_sandbox_init")) {
			return pid
		}
	}
	return 0
}

func hostIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			return ip.IP.String()
		}
	}
	return ""
}

func TestEscapeSuite(t *testing.T) {
	requireLinux(t)
	led := &escapeLedger{t: t}
	defer func() {
		testenv.Report(t, "escape suite", fmt.Sprintf("%d attempts, %d contained", led.attempts, led.contained))
	}()
	inet := newInternet(t)
	b := newBackend(t, func(c *linux.Config) {
		c.EgressDeny = []netip.Prefix{netip.PrefixFrom(inet.denied.Addr(), 32)}
	})
	limits := sandbox.Limits{MemoryBytes: 128 << 20, Pids: 64, DiskBytes: 8 << 20, CPUMillis: 1000}
	withLimits := func(s *sandbox.Spec) { s.Limits = limits }
	egress := func(s *sandbox.Spec) { s.Network = sandbox.NetworkEgress }

	victimSpec := spec(t, withLimits)
	victim := start(t, b, victimSpec)
	hostVictimSpec := spec(t, withLimits, func(s *sandbox.Spec) { s.Network = sandbox.NetworkHost })
	hostVictim := start(t, b, hostVictimSpec)
	attacker := start(t, b, spec(t, withLimits))
	egressVictim := start(t, b, spec(t, withLimits, egress))
	egressAttacker := start(t, b, spec(t, withLimits, egress))

	const secret = "victim-secret"
	mustTry(t, victim, tryReq{Op: "exec", Args: []string{"/bin/sh", "-c", "echo " + secret + " > /tmp/home/secret && echo " + secret + " > /tmp/secret"}})
	victimHostPid := hostPidInCgroup(linux.CgroupDirs(victim)[0])
	if victimHostPid == 0 {
		t.Fatal("cannot find the victim agent's host pid")
	}
	victimAlive := func() bool {
		r, err := try(victim, tryReq{Op: "read", Arg: "/tmp/home/secret"})
		return err == nil && r.OK && strings.TrimSpace(r.Out) == secret
	}

	// A host file that is not under any hidden path except /tmp.
	hostSecret := filepath.Join(os.TempDir(), "berth-escape-"+randHex(6))
	if err := os.WriteFile(hostSecret, []byte("host-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hostSecret)

	t.Run("files", func(t *testing.T) {
		led.t = t
		victimDir := linux.SandboxDir(b, victimSpec.Name)
		for _, p := range []string{
			fmt.Sprintf("/proc/%d/root/tmp/home/secret", victimHostPid),
			fmt.Sprintf("/proc/%d/root/tmp/secret", victimHostPid),
			filepath.Join(victimDir, "state.json"),
			hostSecret,
			"/proc/1/root" + hostSecret,
			"/etc/shadow",
		} {
			r := mustTry(t, attacker, tryReq{Op: "read", Arg: p})
			led.attempt("read "+p, !r.OK || (!strings.Contains(r.Out, "secret") && !strings.Contains(r.Out, "root:")), r)
		}
		r := mustTry(t, attacker, tryReq{Op: "ls", Arg: filepath.Dir(victimDir)})
		led.attempt("list other sandboxes' directories", r.Out == "", r)
		for _, p := range []string{
			fmt.Sprintf("/proc/%d/root/tmp/home/secret", victimHostPid),
			filepath.Join(victimDir, "pwned"),
			hostSecret,
			"/usr/pwned",
			"/proc/1/root/usr/pwned",
			"/proc/sys/kernel/core_pattern",
		} {
			r := mustTry(t, attacker, tryReq{Op: "write", Arg: p})
			if p == hostSecret {
				// The write lands in the attacker's private /tmp; the host file must not change.
				b, _ := os.ReadFile(hostSecret)
				led.attempt("write host "+p, string(b) == "host-secret", string(b))
				continue
			}
			led.attempt("write "+p, !r.OK && victimAlive(), r)
		}
		mustTry(t, attacker, tryReq{Op: "write", Arg: "/tmp/attacker-was-here"})
		r = mustTry(t, victim, tryReq{Op: "read", Arg: "/tmp/attacker-was-here"})
		led.attempt("share /tmp with another session", !r.OK, r)
	})

	t.Run("processes", func(t *testing.T) {
		led.t = t
		r := mustTry(t, attacker, tryReq{Op: "ls", Arg: "/proc"})
		var pids []string
		for _, f := range strings.Fields(r.Out) {
			if _, err := strconv.Atoi(f); err == nil {
				pids = append(pids, f)
			}
		}
		led.attempt("list other sessions' processes", len(pids) <= 3, pids)
		r = mustTry(t, attacker, tryReq{Op: "kill", Arg: strconv.Itoa(victimHostPid)})
		led.attempt("signal another session's agent by host pid", !r.OK && victimAlive(), r)
		r = mustTry(t, attacker, tryReq{Op: "ptrace", Arg: "1"})
		led.attempt("ptrace the sandbox init", denied(r, "not permitted"), r)
		r = mustTry(t, attacker, tryReq{Op: "ptrace", Arg: strconv.Itoa(victimHostPid)})
		led.attempt("ptrace another session's agent", !r.OK && victimAlive(), r)
	})

	t.Run("network", func(t *testing.T) {
		led.t = t
		admin := hostListener(t)
		r := mustTry(t, attacker, tryReq{Op: "connect", Arg: admin})
		led.attempt("connect to berth's loopback listener "+admin, !r.OK, r)
		r = mustTry(t, attacker, tryReq{Op: "connect", Arg: hostVictim.Addr()})
		led.attempt("connect to a host-network session's port "+hostVictim.Addr(), !r.OK, r)
		if ip := hostIP(t); ip != "" {
			l, err := net.Listen("tcp", "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			addr := net.JoinHostPort(ip, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
			r = mustTry(t, attacker, tryReq{Op: "connect", Arg: addr})
			led.attempt("connect to a host listener on "+addr, !r.OK, r)
		}
		// /proc/net/tcp shows the reader's network namespace: the host's
		// listeners must not appear in it.
		r = mustTry(t, attacker, tryReq{Op: "read", Arg: "/proc/net/tcp"})
		_, adminPort, _ := net.SplitHostPort(admin)
		_, victimPort, _ := net.SplitHostPort(hostVictim.Addr())
		leaked := false
		for _, p := range []string{adminPort, victimPort} {
			leaked = leaked || strings.Contains(r.Out, fmt.Sprintf(":%04X ", atoi(p)))
		}
		led.attempt("see the host's and other sessions' sockets", r.OK && !leaked, r.Out)
	})

	t.Run("egress", func(t *testing.T) {
		led.t = t
		// Not an attempt: egress must work, or the rest proves nothing.
		if r := mustTry(t, egressAttacker, tryReq{Op: "dialread", Arg: inet.server.String()}); !r.OK {
			t.Fatalf("egress sandbox cannot reach the internet at %s: %+v", inet.server, r)
		}
		own, victim := sandboxAddr(t, egressAttacker), sandboxAddr(t, egressVictim)
		tcp, udp := hostTCP(t), hostUDP(t)
		connect := func(what, addr string) {
			t.Helper()
			r := mustTry(t, egressAttacker, tryReq{Op: "connect", Arg: addr, N: 500})
			led.attempt(what+" "+addr, !r.OK && tcp.hits.Load() == 0, r)
		}
		connect("connect to berth's loopback listener", hostListener(t))
		connect("connect to a host-network session's port", hostVictim.Addr())
		connect("connect to the host at its own gateway", tcp.at(gateway(own)))
		connect("connect to the host at another sandbox's gateway", tcp.at(gateway(victim)))
		connect("connect to the host at its side of the uplink", tcp.at(inet.gw))
		for _, a := range hostAddrs(t) {
			connect("connect to the host's address", tcp.at(a))
		}
		connect("connect to another egress sandbox's agent", netip.AddrPortFrom(victim.Addr(), 8080).String())
		connect("connect to a denied destination", inet.denied.String())

		targets := append([]netip.Addr{gateway(own), inet.gw}, hostAddrs(t)...)
		for _, a := range targets {
			mustTry(t, egressAttacker, tryReq{Op: "udp", Arg: udp.at(a)})
		}
		time.Sleep(300 * time.Millisecond)
		led.attempt(fmt.Sprintf("send UDP to a host service (%d addresses)", len(targets)), udp.hits.Load() == 0, udp.hits.Load())

		r := mustTry(t, egressAttacker, tryReq{Op: "exec", Args: []string{"/bin/sh", "-c",
			"ip addr add " + victim.String() + " dev eth0 || ip route add " + victim.Addr().String() + "/32 dev eth0 && echo claimed"}})
		led.attempt("claim another sandbox's address", !strings.Contains(r.Out, "claimed"), r)
		r = mustTry(t, attacker, tryReq{Op: "connect", Arg: inet.server.String(), N: 500})
		led.attempt("reach the internet from network mode none", !r.OK, r)
		r = mustTry(t, egressVictim, tryReq{Op: "dialread", Arg: inet.server.String()})
		led.attempt("other egress sessions unharmed", r.OK, r)
	})

	t.Run("kernel", func(t *testing.T) {
		led.t = t
		r := mustTry(t, attacker, tryReq{Op: "sethostname", Arg: "pwned"})
		h := mustTry(t, victim, tryReq{Op: "hostname"})
		host, _ := os.Hostname()
		led.attempt("change the hostname", !r.OK && h.Out == victimSpec.Name && host != "pwned", r)
		for _, op := range []string{"init_module", "finit_module"} {
			r := mustTry(t, attacker, tryReq{Op: op})
			led.attempt("load a kernel module via "+op, denied(r, "not permitted"), r)
		}
		r = mustTry(t, attacker, tryReq{Op: "mount", Arg: "/tmp"})
		led.attempt("mount a filesystem", denied(r, "not permitted"), r)
		r = mustTry(t, attacker, tryReq{Op: "remount-rw", Arg: "/"})
		led.attempt("remount the root read-write", denied(r, "not permitted"), r)
		r = mustTry(t, attacker, tryReq{Op: "chroot", Arg: "/tmp"})
		led.attempt("chroot", denied(r, "not permitted"), r)
		r = mustTry(t, attacker, tryReq{Op: "unshare-user"})
		led.attempt("unshare a user namespace to regain capabilities", denied(r, "not permitted"), r)
		r = mustTry(t, attacker, tryReq{Op: "exec", Args: []string{"/bin/sh", "-c", "echo c > /proc/sysrq-trigger"}})
		led.attempt("write /proc/sysrq-trigger", !r.OK, r)
	})

	t.Run("resources", func(t *testing.T) {
		led.t = t
		r := mustTry(t, attacker, tryReq{Op: "forkbomb", N: 1000})
		n := atoi(r.Out)
		led.attempt(fmt.Sprintf("fork-bomb (%d processes before the limit)", n), !r.OK && n < int(limits.Pids) && victimAlive(), r)

		r = mustTry(t, attacker, tryReq{Op: "filldisk", Arg: "/tmp/fill", N: 64})
		written := atoi(r.Out)
		led.attempt(fmt.Sprintf("fill the disk (%d bytes written)", written), denied(r, "no space") && int64(written) <= limits.DiskBytes, r)
		mustTry(t, attacker, tryReq{Op: "exec", Args: []string{"/bin/rm", "/tmp/fill"}})
		r = mustTry(t, attacker, tryReq{Op: "filldisk", Arg: "/dev/shm/fill", N: 64})
		led.attempt("fill /dev/shm", denied(r, "no space") && int64(atoi(r.Out)) <= limits.DiskBytes, r)
		mustTry(t, attacker, tryReq{Op: "exec", Args: []string{"/bin/rm", "/dev/shm/fill"}})

		hog := start(t, b, spec(t, withLimits))
		_, err := try(hog, tryReq{Op: "alloc", N: 512})
		select {
		case <-hog.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("memory hog still running")
		}
		ex := hog.Exit()
		led.attempt("allocate past the memory limit (exit: "+ex.String()+")", err != nil && ex.OOMKilled && victimAlive(), ex)
	})

	t.Run("hidden", func(t *testing.T) {
		led.t = t
		// berth's own layout with `workdir: .` and `data_dir: ./.berth`: the
		// code dir holds the data dir, which holds the backend's root; and a
		// runtime mount of the whole host root.
		for _, work := range []string{t.TempDir(), hostDir(t)} {
			data := filepath.Join(work, ".berth")
			if err := os.MkdirAll(data, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "berth.db"), []byte("host-secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			hb := newBackend(t, func(c *linux.Config) {
				c.RootDir = filepath.Join(data, "sandboxes", "linux")
				c.HidePaths = []string{data}
			})
			other := start(t, hb, spec(t, func(s *sandbox.Spec) { s.Dir = work }))
			otherDir := linux.SandboxDir(hb, other.ID())
			h, err := hb.Start(context.Background(), spec(t, func(s *sandbox.Spec) {
				s.Dir = work
				s.Mounts = []sandbox.Mount{{Source: "/", Target: "/tmp/host", ReadOnly: true}}
			}))
			if err != nil {
				led.attempt("start a sandbox whose code dir holds berth's data dir", false, err)
				continue
			}
			t.Cleanup(func() { _ = h.Stop(context.Background(), time.Second) })
			waitPing(t, h)
			secretless := func(r tryResult) bool {
				return !r.OK || !strings.Contains(r.Out, "secret") && !strings.Contains(r.Out, "root:")
			}
			for _, p := range []string{
				filepath.Join(data, "berth.db"),
				"/tmp/host" + filepath.Join(data, "berth.db"),
				"/tmp/host/etc/shadow",
				filepath.Join(otherDir, "state.json"),
				"/tmp/host" + filepath.Join(otherDir, "state.json"),
				"/tmp/host/proc/1/root/etc/shadow",
			} {
				r := mustTry(t, h, tryReq{Op: "read", Arg: p})
				led.attempt("read hidden "+p+" through a bind", secretless(r), r)
			}
			for _, p := range []string{data, "/tmp/host" + data, "/tmp/host/run", "/tmp/host" + filepath.Dir(otherDir)} {
				r := mustTry(t, h, tryReq{Op: "ls", Arg: p})
				led.attempt("list hidden "+p+" through a bind", r.Out == "", r)
			}
		}
	})

	t.Run("outlive", func(t *testing.T) {
		led.t = t
		s := spec(t)
		h := start(t, b, s)
		// A sleep with a unique duration is easy to find on the host.
		token := fmt.Sprintf("%d", 100000000+time.Now().UnixNano()%100000000)
		mustTry(t, h, tryReq{Op: "spawn", Args: []string{"/bin/sleep", token}})
		mustTry(t, h, tryReq{Op: "exec", Args: []string{"/bin/sh", "-c", "nohup /bin/sleep " + token + " >/dev/null 2>&1 &"}})
		// Both daemons must be up (exec -a renames them a moment later).
		for deadline := time.Now().Add(5 * time.Second); len(hostPidsOf(token)) < 2; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("daemons did not start: %v", hostPidsOf(token))
			}
		}
		if err := h.Stop(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		left := hostPidsOf(token)
		led.attempt("keep a process running after the session ends", len(left) == 0, left)
	})

	led.t = t
	led.attempt("other sessions unharmed", victimAlive(), nil)
	if led.contained != led.attempts {
		t.Errorf("escape suite: %d of %d attempts escaped", led.attempts-led.contained, led.attempts)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}
