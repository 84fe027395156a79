//go:build linux

package linux

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Egress networking. Each egress sandbox gets a veth pair: eth0 inside, and
// on the host an interface named vethPrefix + the host-side address in hex.
// Its /30 comes from Config.EgressRange: .1 is the host side and gateway, .2
// the sandbox. The host masquerades the range out of whatever route it has.
//
// The filter rules are static and match interfaces by prefix, so a start
// or stop never runs iptables:
//
//	INPUT   -i berth+  established replies only; everything else dropped
//	OUTPUT  -o berth+  established replies only (no host process dials in)
//	FORWARD berth+ <-> berth+ dropped; into a sandbox only replies; out of a
//	        sandbox dropped to the range and the deny list, else accepted
//	NAT     -s range ! -d range  MASQUERADE
//	IPv6    dropped both ways (and disabled on both ends of every veth)
//
// The chains are this backend's own (named from a hash of RootDir), so
// several berths on one host install and remove theirs independently.

const (
	vethPrefix   = "berth"
	vethWildcard = vethPrefix + "+"
	// defaultEgressRange holds 16384 sandboxes at a /30 each.
	defaultEgressRange = "10.213.0.0/16"
)

// alwaysDenied are destinations no egress sandbox reaches: link-local holds
// cloud metadata services (169.254.169.254 hands out the host's credentials).
var alwaysDenied = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}

// errLinkTaken means a veth name (so its subnet) is in use, by this host's
// other berth or by a leftover Reap will remove.
var errLinkTaken = errors.New("link name taken")

type egress struct {
	subnets netip.Prefix   // where sandbox /30s come from
	deny    []netip.Prefix // never reachable from a sandbox
	dns     []netip.Addr   // Config.EgressDNS; nil means from the host
	chain   string         // prefix of this backend's chain names
	resolv  string         // generated resolv.conf, bound into sandboxes
	hostNet *os.File
	log     *slog.Logger

	// mu guards the fields below.
	mu        sync.Mutex
	installed bool
	mtu       int
	used      map[uint32]bool // subnet indices held by this backend
	next      uint32          // where the next subnet search starts
}

// veth is one sandbox's link: host-side name and both addresses.
type veth struct {
	Name    string
	index   uint32
	host    netip.Prefix
	sandbox netip.Prefix
}

func newEgress(cfg Config, hostNet *os.File, log *slog.Logger) (*egress, error) {
	p := cfg.EgressRange
	if !p.IsValid() {
		p = netip.MustParsePrefix(defaultEgressRange)
	}
	if !p.Addr().Is4() || p.Bits() > 30 {
		return nil, fmt.Errorf("egress range %s: want an IPv4 prefix of /30 or wider", p)
	}
	sum := sha256.Sum256([]byte(cfg.RootDir))
	return &egress{
		subnets: p.Masked(),
		deny:    append(append([]netip.Prefix{}, alwaysDenied...), cfg.EgressDeny...),
		dns:     cfg.EgressDNS,
		chain:   "BERTH-EGRESS-" + hex.EncodeToString(sum[:3]),
		resolv:  filepath.Join(cfg.RootDir, ".egress-resolv.conf"),
		hostNet: hostNet,
		log:     log,
		used:    map[uint32]bool{},
	}, nil
}

// ensure installs the rules, enables forwarding and writes resolv.conf, once.
// No veth exists before it has succeeded.
func (e *egress) ensure() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.installed {
		return nil
	}
	for _, bin := range []string{"iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("network mode egress needs %s (install the iptables package): %w", bin, sandbox.ErrUnsupported)
		}
	}
	// A previous berth that died without Reap may have left ours behind.
	if err := e.removeRules(); err != nil {
		return err
	}
	if err := e.installRules(); err != nil {
		_ = e.removeRules()
		return err
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		_ = e.removeRules()
		return fmt.Errorf("enable ip_forward: %w", err)
	}
	if err := e.writeResolv(); err != nil {
		_ = e.removeRules()
		return err
	}
	e.mtu = uplinkMTU()
	e.installed = true
	e.log.Info("egress networking ready", "range", e.subnets, "chains", e.chain+"-*", "mtu", e.mtu)
	return nil
}

// names of this backend's chains.
func (e *egress) in() string    { return e.chain + "-IN" }
func (e *egress) fwd() string   { return e.chain + "-FWD" }
func (e *egress) out() string   { return e.chain + "-OUT" }
func (e *egress) nat() string   { return e.chain + "-NAT" }
func (e *egress) deny6() string { return e.chain + "-V6" }

// installRules loads the chains and their jumps in one iptables-restore per
// address family, so they appear atomically.
func (e *egress) installRules() error {
	r := e.subnets.String()
	var v4 strings.Builder
	line := func(b *strings.Builder, f string, a ...any) { fmt.Fprintf(b, f+"\n", a...) }
	line(&v4, "*filter")
	for _, c := range []string{e.in(), e.fwd(), e.out()} {
		line(&v4, ":%s - [0:0]", c)
	}
	line(&v4, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", e.in())
	line(&v4, "-A %s -j DROP", e.in())
	line(&v4, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", e.out())
	line(&v4, "-A %s -j DROP", e.out())
	line(&v4, "-A %s -i %s -o %s -j DROP", e.fwd(), vethWildcard, vethWildcard)
	line(&v4, "-A %s -o %s -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", e.fwd(), vethWildcard)
	line(&v4, "-A %s -o %s -j DROP", e.fwd(), vethWildcard)
	line(&v4, "-A %s -d %s -j DROP", e.fwd(), r)
	for _, d := range e.deny {
		if d.Addr().Is4() {
			line(&v4, "-A %s -d %s -j DROP", e.fwd(), d.Masked())
		}
	}
	// Accept explicitly: a FORWARD policy of DROP (Docker sets one) must
	// not cut egress off. Only our range: rp_filter drops spoofed sources.
	line(&v4, "-A %s -i %s -s %s -j ACCEPT", e.fwd(), vethWildcard, r)
	line(&v4, "-I INPUT 1 -i %s -j %s", vethWildcard, e.in())
	line(&v4, "-I OUTPUT 1 -o %s -j %s", vethWildcard, e.out())
	line(&v4, "-I FORWARD 1 -o %s -j %s", vethWildcard, e.fwd())
	line(&v4, "-I FORWARD 1 -i %s -j %s", vethWildcard, e.fwd())
	line(&v4, "COMMIT")
	line(&v4, "*nat")
	line(&v4, ":%s - [0:0]", e.nat())
	line(&v4, "-A %s ! -d %s -j MASQUERADE", e.nat(), r)
	line(&v4, "-I POSTROUTING 1 -s %s -j %s", r, e.nat())
	line(&v4, "COMMIT")
	if err := restore("iptables-restore", v4.String()); err != nil {
		return fmt.Errorf("install egress rules: %w", err)
	}
	if !have6() {
		return nil
	}
	var v6 strings.Builder
	line(&v6, "*filter")
	line(&v6, ":%s - [0:0]", e.deny6())
	line(&v6, "-A %s -j DROP", e.deny6())
	line(&v6, "-I INPUT 1 -i %s -j %s", vethWildcard, e.deny6())
	line(&v6, "-I OUTPUT 1 -o %s -j %s", vethWildcard, e.deny6())
	line(&v6, "-I FORWARD 1 -i %s -j %s", vethWildcard, e.deny6())
	line(&v6, "-I FORWARD 1 -o %s -j %s", vethWildcard, e.deny6())
	line(&v6, "COMMIT")
	if err := restore("ip6tables-restore", v6.String()); err != nil {
		return fmt.Errorf("install egress IPv6 rules: %w", err)
	}
	return nil
}

// have6 says whether IPv6 exists here and ip6tables can filter it. Without
// the tools, IPv6 is still disabled on every veth.
func have6() bool {
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		return false
	}
	for _, bin := range []string{"ip6tables-save", "ip6tables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			return false
		}
	}
	return true
}

// removeRules deletes this backend's chains and every jump to them. It
// reads the live tables, so it also finds what a dead berth left.
func (e *egress) removeRules() error {
	var errs []error
	if _, err := exec.LookPath("iptables-save"); err == nil {
		errs = append(errs, removeChains("iptables", e.chain+"-"))
	}
	if have6() {
		errs = append(errs, removeChains("ip6tables", e.chain+"-"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove egress rules: %w", err)
	}
	return nil
}

// removeChains deletes, in every table, the chains whose names start with
// prefix, and the rules that jump to them.
func removeChains(tool, prefix string) error {
	out, err := exec.Command(tool + "-save").Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", tool, err)
	}
	var script strings.Builder
	var table string
	var chains []string
	found := false
	flush := func() {
		if table == "" {
			return
		}
		for _, c := range chains {
			fmt.Fprintf(&script, "-F %s\n-X %s\n", c, c)
		}
		script.WriteString("COMMIT\n")
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			flush()
			table, chains = l[1:], nil
			script.WriteString(l + "\n")
		case strings.HasPrefix(l, ":"+prefix):
			chains = append(chains, strings.Fields(l[1:])[0])
			found = true
		case strings.HasPrefix(l, "-A ") && strings.Contains(l, " -j "+prefix):
			f := strings.Fields(l)
			if len(f) > 1 && !strings.HasPrefix(f[1], prefix) {
				// A jump from a chain that stays: delete that rule.
				script.WriteString("-D" + l[2:] + "\n")
			}
		}
	}
	flush()
	if !found {
		return nil
	}
	return restore(tool+"-restore", script.String())
}

func restore(tool, script string) error {
	cmd := exec.Command(tool, "-w", "--noflush")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", tool, err, bytes.TrimSpace(out))
	}
	return nil
}

// uninstall removes the rules if they were installed by this backend.
func (e *egress) uninstall() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.installed {
		return nil
	}
	e.installed = false
	return e.removeRules()
}

// reapRules removes chains a previous berth on the same RootDir left behind,
// unless this backend has already installed its own.
func (e *egress) reapRules() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.installed {
		return nil
	}
	return e.removeRules()
}

// uplinkMTU is the MTU of the interface holding the default route, so a
// sandbox never sends packets the uplink must fragment. 1500 if unknown.
func uplinkMTU() int {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return 1500
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) > 7 && fl[1] == "00000000" && fl[7] == "00000000" {
			if ifc, err := net.InterfaceByName(fl[0]); err == nil && ifc.MTU >= 576 && ifc.MTU < 1500 {
				return ifc.MTU
			}
			break
		}
	}
	return 1500
}

// writeResolv writes the resolv.conf every egress sandbox sees. A resolver
// on the host itself (127.0.0.53, a local dnsmasq) is unreachable from a
// sandbox by design, so those are skipped.
func (e *egress) writeResolv() error {
	servers := e.dns
	var extra []string
	if servers == nil {
		servers, extra = parseResolv("/etc/resolv.conf")
		servers = e.usable(servers)
		if len(servers) == 0 {
			// systemd-resolved's stub hides the real upstreams here.
			servers, _ = parseResolv("/run/systemd/resolve/resolv.conf")
			servers = e.usable(servers)
		}
	}
	servers = slices.DeleteFunc(slices.Clone(servers), func(a netip.Addr) bool { return !a.Is4() }) // no IPv6 inside
	var b strings.Builder
	b.WriteString("# written by berth for egress sandboxes\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if len(servers) == 0 {
		e.log.Warn("egress: no upstream DNS resolver a sandbox can reach; set EgressDNS")
	}
	if err := os.WriteFile(e.resolv, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write egress resolv.conf: %w", err)
	}
	return nil
}

// parseResolv returns a resolv.conf's nameservers and its search and
// options lines.
func parseResolv(path string) ([]netip.Addr, []string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	var servers []netip.Addr
	var extra []string
	for l := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				servers = append(servers, a.Unmap())
			}
		case "search", "domain", "options":
			extra = append(extra, strings.Join(f, " "))
		}
	}
	return servers, extra
}

// usable keeps the resolvers a sandbox can reach: IPv4, not loopback, not
// one of the host's own addresses, not inside the sandbox range.
func (e *egress) usable(in []netip.Addr) []netip.Addr {
	own := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					own[ip.Unmap()] = true
				}
			}
		}
	}
	var out []netip.Addr
	for _, a := range in {
		if a.Is4() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !own[a] && !e.subnets.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}

// vethFor names the link and addresses of subnet index i.
func (e *egress) vethFor(i uint32) veth {
	base := binary.BigEndian.Uint32(e.subnets.Addr().AsSlice()) + 4*i
	addr := func(v uint32) netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	return veth{
		Name:    fmt.Sprintf("%s%08x", vethPrefix, base+1),
		index:   i,
		host:    netip.PrefixFrom(addr(base+1), 30),
		sandbox: netip.PrefixFrom(addr(base+2), 30),
	}
}

// alloc reserves the next free /30, round-robin so a just-freed subnet (and
// conntrack state that may still name it) is reused last.
func (e *egress) alloc() (veth, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := uint32(1) << (30 - e.subnets.Bits())
	for k := uint32(0); k < n; k++ {
		i := (e.next + k) % n
		if !e.used[i] {
			e.used[i] = true
			e.next = i + 1
			return e.vethFor(i), nil
		}
	}
	return veth{}, fmt.Errorf("egress range %s is full", e.subnets)
}

func (e *egress) free(v veth) {
	e.mu.Lock()
	delete(e.used, v.index)
	e.mu.Unlock()
}

// adopt marks the subnet of a running sandbox's veth, found by name, as
// held, and makes sure the rules that confine it are installed.
func (e *egress) adopt(name string) (veth, error) {
	if err := e.ensure(); err != nil {
		return veth{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := uint32(1) << (30 - e.subnets.Bits())
	for i := range n {
		if v := e.vethFor(i); v.Name == name {
			if e.used[i] {
				return veth{}, fmt.Errorf("veth %s is held by another sandbox here", name)
			}
			e.used[i] = true
			return v, nil
		}
	}
	return veth{}, fmt.Errorf("veth %s is outside the egress range %s", name, e.subnets)
}

// attach wires a veth into the sandbox network namespace ns. record is
// called with the host-side name before the link exists, so a berth that
// dies half-way leaves a name Reap can find.
func (e *egress) attach(ns *os.File, record func(name string) error) (veth, error) {
	for range 64 {
		v, err := e.alloc()
		if err != nil {
			return veth{}, err
		}
		if err := record(v.Name); err != nil {
			e.free(v)
			return veth{}, err
		}
		err = e.wire(v, ns)
		if errors.Is(err, errLinkTaken) {
			// Another berth here uses this subnet: keep it marked and move on.
			continue
		}
		if err != nil {
			e.free(v)
			return veth{}, err
		}
		return v, nil
	}
	return veth{}, fmt.Errorf("egress: no free subnet in %s after 64 tries", e.subnets)
}

func (e *egress) wire(v veth, ns *os.File) (err error) {
	in, err := openRtnlIn(ns, e.hostNet, func() error {
		// eth0 inherits "default": it never gets an IPv6 address or route.
		return writeSysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
	})
	if err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	defer in.Close()
	host, err := openRtnl()
	if err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	defer host.Close()

	e.mu.Lock()
	mtu := e.mtu
	e.mu.Unlock()
	if err := in.addVeth("eth0", v.Name, e.hostNet, mtu); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return errLinkTaken
		}
		return fmt.Errorf("wire veth: %w", err)
	}
	defer func() {
		if err != nil {
			_ = host.delLink(v.Name)
		}
	}()
	// Host side: no IPv6, strict reverse-path filtering (no spoofed
	// sources), then address and up.
	if err := writeSysctl("/proc/sys/net/ipv6/conf/"+v.Name+"/disable_ipv6", "1"); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	if err := writeSysctl("/proc/sys/net/ipv4/conf/"+v.Name+"/rp_filter", "1"); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	hi, err := host.linkIndex(v.Name)
	if err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	if err := host.addAddr(hi, v.host); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	if err := host.linkUp(hi); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	si, err := in.linkIndex("eth0")
	if err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	if err := in.addAddr(si, v.sandbox); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	if err := in.linkUp(si); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	if err := in.addDefaultRoute(si, v.host.Addr()); err != nil {
		return fmt.Errorf("wire veth: %w", err)
	}
	return nil
}

// writeSysctl writes a /proc/sys file; a missing one (no IPv6 here) is fine.
func writeSysctl(path, v string) error {
	err := os.WriteFile(path, []byte(v), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s: %w", path, err)
	}
	return nil
}

// detach deletes v's link (the kernel would, once the sandbox's namespace
// is gone, but later) and frees its subnet.
func (e *egress) detach(v veth) error {
	defer e.free(v)
	return deleteLink(v.Name)
}

// deleteLink deletes a host interface; one already gone is fine.
func deleteLink(name string) error {
	if !strings.HasPrefix(name, vethPrefix) {
		return fmt.Errorf("delete link %q: not a berth veth", name)
	}
	c, err := openRtnl()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.delLink(name); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}
