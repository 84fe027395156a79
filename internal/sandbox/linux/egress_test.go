//go:build linux

package linux_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/testenv"
)

// testRanges hands each backend in this test binary its own /24 for egress
// subnets, away from the default range other packages' tests use.
var testRanges atomic.Uint32

func init() { testRanges.Store(uint32(time.Now().UnixNano() % 256)) }

func nextTestRange() netip.Prefix {
	n := testRanges.Add(1) % 256
	return netip.MustParsePrefix(fmt.Sprintf("10.214.%d.0/24", n))
}

// requireEgressTools states that t needs the tools egress runs.
func requireEgressTools(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"ip", "iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Require(t, testenv.Iptables, fmt.Errorf("%w (scripts/test installs it)", err))
		}
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// internet is a separate network namespace standing in for the outside
// world: a TCP server that answers with the address it sees the client
// at, reachable from the host over a veth. A second address in it is
// reachable too, but an egress sandbox's deny list covers it.
type internet struct {
	server netip.AddrPort // allowed
	denied netip.AddrPort // same server, on an address in EgressDeny
	gw     netip.Addr     // the host's side of the link (a host address)
}

var internetSeq atomic.Uint32

func newInternet(t *testing.T) *internet {
	t.Helper()
	requireEgressTools(t)
	ns := "berth-inet-" + randHex(3)
	hostIf := "binet" + randHex(3)
	x := (uint32(time.Now().UnixNano()) + internetSeq.Add(1)) % 256
	gw := netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", x))
	srv := netip.MustParseAddr(fmt.Sprintf("198.18.%d.2", x))
	deny := netip.MustParseAddr(fmt.Sprintf("198.19.%d.2", x))

	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run(t, "ip", "addr", "add", gw.String()+"/30", "dev", hostIf)
	run(t, "ip", "link", "set", hostIf, "up")
	run(t, "ip", "-n", ns, "addr", "add", srv.String()+"/30", "dev", "eth0")
	run(t, "ip", "-n", ns, "addr", "add", deny.String()+"/32", "dev", "eth0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "route", "add", deny.String()+"/32", "via", srv.String())
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", deny.String()+"/32").Run() })

	l := listenInNetns(t, "/run/netns/"+ns, "tcp", "0.0.0.0:0")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	return &internet{server: netip.AddrPortFrom(srv, port), denied: netip.AddrPortFrom(deny, port), gw: gw}
}

// listenInNetns opens a listener inside the network namespace at nsPath.
func listenInNetns(t *testing.T, nsPath, network, addr string) net.Listener {
	t.Helper()
	ns, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		l, err := net.Listen(network, addr)
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: exit locked; Go retires the thread
		ch <- result{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", nsPath, r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l
}

// sandboxAddr returns the IPv4 address of the sandbox's eth0.
func sandboxAddr(t *testing.T, h sandbox.Handle) netip.Prefix {
	t.Helper()
	r := mustTry(t, h, tryReq{Op: "addrs"})
	for l := range strings.SplitSeq(r.Out, "\n") {
		name, addr, _ := strings.Cut(l, " ")
		if p, err := netip.ParsePrefix(addr); err == nil && name == "eth0" && p.Addr().Is4() {
			return p
		}
	}
	t.Fatalf("no IPv4 address on eth0: %q", r.Out)
	return netip.Prefix{}
}

// gateway is the host side of a sandbox's /30.
func gateway(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// hostTCP listens on every host address and reports whether anything
// connected; hostUDP does the same for datagrams.
type hostProbe struct {
	port int
	hits atomic.Int32
}

func hostTCP(t *testing.T) *hostProbe {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &hostProbe{port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.hits.Add(1)
			c.Close()
		}
	}()
	return p
}

func hostUDP(t *testing.T) *hostProbe {
	c, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &hostProbe{port: c.LocalAddr().(*net.UDPAddr).Port}
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			p.hits.Add(1)
		}
	}()
	return p
}

func (p *hostProbe) at(a netip.Addr) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(p.port))
}

// testNets are the test's own egress ranges and fake internet links, which
// the escape suite probes by name; hostAddrs leaves them out.
var testNets = []netip.Prefix{netip.MustParsePrefix("10.214.0.0/16"), netip.MustParsePrefix("198.18.0.0/15")}

// hostAddrs lists the host's own global addresses, IPv4 and IPv6, outside
// testNets.
func hostAddrs(t *testing.T) []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || testNets[0].Contains(ip) || testNets[1].Contains(ip) {
			continue
		}
		out = append(out, ip)
	}
	return out
}

func TestEgress(t *testing.T) {
	requireLinux(t)
	inet := newInternet(t)
	b := newBackend(t, func(c *linux.Config) {
		c.EgressDeny = []netip.Prefix{netip.PrefixFrom(inet.denied.Addr(), 32)}
		c.EgressDNS = []netip.Addr{inet.server.Addr()}
	})
	s := spec(t, func(s *sandbox.Spec) { s.Network = sandbox.NetworkEgress })
	h, err := b.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	waitPing(t, h)

	r := mustTry(t, h, tryReq{Op: "dialread", Arg: inet.server.String()})
	if !r.OK {
		t.Fatalf("egress sandbox cannot reach the internet at %s: %+v", inet.server, r)
	}
	// The far end sees the host (masquerade), never the sandbox's address.
	if seen, err := netip.ParseAddrPort(r.Out); err != nil || seen.Addr() != inet.gw {
		t.Errorf("the internet saw the sandbox as %q, want the host's %s", r.Out, inet.gw)
	}
	addr := sandboxAddr(t, h)
	if addr.Bits() != 30 {
		t.Errorf("sandbox address %s: want a /30", addr)
	}
	if r := mustTry(t, h, tryReq{Op: "ls", Arg: "/sys/class/net"}); r.Out != "eth0\nlo" {
		t.Errorf("interfaces inside: %q, want eth0 and lo", r.Out)
	}
	// No IPv6 on eth0: /proc/net/if_inet6 lists an interface only if it has an address.
	if r := mustTry(t, h, tryReq{Op: "read", Arg: "/proc/net/if_inet6"}); strings.Contains(r.Out, "eth0") {
		t.Errorf("eth0 has IPv6 addresses:\n%s", r.Out)
	}
	r = mustTry(t, h, tryReq{Op: "read", Arg: "/etc/resolv.conf"})
	if !strings.Contains(r.Out, "nameserver "+inet.server.Addr().String()+"\n") {
		t.Errorf("resolv.conf inside:\n%s\nwant nameserver %s", r.Out, inet.server.Addr())
	}
	if err := h.Stop(context.Background(), time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertGone(t, b)

	// Close removes this backend's rules.
	prefix := linux.EgressChainPrefix(b)
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if left := chainsWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("rules left after Close: %v", left)
	}
}

// chainsWithPrefix lists iptables and ip6tables lines mentioning prefix.
func chainsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		raw, err := exec.Command(tool).Output()
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		for sc.Scan() {
			if strings.Contains(sc.Text(), prefix) {
				out = append(out, tool+": "+sc.Text())
			}
		}
	}
	return out
}

// childEnv names the variables that turn this test binary into a "berth"
// that starts egress sandboxes and then waits to be SIGKILLed.
const (
	childMode   = "BERTH_LINUX_TEST_CHILD"
	childRoot   = "BERTH_LINUX_TEST_ROOT"
	childCgroup = "BERTH_LINUX_TEST_CGROUP"
	childRange  = "BERTH_LINUX_TEST_RANGE"
	childAgent  = "BERTH_LINUX_TEST_AGENT"
)

// runKillChild is the child's whole life: two egress sandboxes, a full
// warm pool, "ready" on stdout, then wait for SIGKILL.
func runKillChild() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	b, err := linux.New(linux.Config{
		RootDir:      os.Getenv(childRoot),
		CgroupParent: os.Getenv(childCgroup),
		EgressRange:  netip.MustParsePrefix(os.Getenv(childRange)),
	})
	if err != nil {
		return fail(err)
	}
	for i := range 2 {
		rt, sess := "rt-kill", fmt.Sprintf("session-kill-%d-%s", i, randHex(8))
		_, err := b.Start(context.Background(), sandbox.Spec{
			Name: sandbox.Name(rt, sess), RuntimeID: rt, SessionID: sess,
			Command: []string{os.Getenv(childAgent)}, Network: sandbox.NetworkEgress,
		})
		if err != nil {
			return fail(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); linux.IdleInits(b) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("pool never filled"))
		}
	}
	fmt.Println("ready")
	select {}
}

func TestReapAfterKill(t *testing.T) {
	requireLinux(t)
	requireEgressTools(t)
	root := t.TempDir() + "/sandboxes"
	parent := "berth-test-" + randHex(4)
	rng := nextTestRange()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childMode+"=kill", childRoot+"="+root, childCgroup+"="+parent,
		childRange+"="+rng.String(), childAgent+"="+testAgent(t))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not get ready: %q %v", line, err)
	}
	cfg := func(c *linux.Config) { c.RootDir, c.CgroupParent, c.EgressRange = root, parent, rng }
	fresh := newBackend(t, cfg)
	prefix := linux.EgressChainPrefix(fresh)
	// Before: the child's four egress inits (two sandboxes, two warm) have
	// veths, and its rules are installed.
	if n := len(linux.Leftovers(fresh)); n < 4*3 {
		t.Fatalf("child holds %d resources, want at least 12 (dirs, cgroups, links): %v", n, linux.Leftovers(fresh))
	}
	if len(chainsWithPrefix(t, prefix)) == 0 {
		t.Fatal("child installed no egress rules")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	if err := fresh.Reap(context.Background()); err != nil {
		t.Fatalf("reap: %v", err)
	}
	if left := linux.Leftovers(fresh); len(left) > 0 {
		t.Errorf("left after reap: %v", left)
	}
	if left := chainsWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("rules left after reap: %v", left)
	}
	// And the reaped root serves again.
	h := start(t, fresh, spec(t, func(s *sandbox.Spec) { s.Network = sandbox.NetworkEgress }))
	if r := mustTry(t, h, tryReq{Op: "addrs"}); !strings.Contains(r.Out, "eth0") {
		t.Errorf("new egress sandbox has no eth0: %q", r.Out)
	}
}
