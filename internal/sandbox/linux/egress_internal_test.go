//go:build linux

package linux

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestResolvConf checks which host resolvers egress sandboxes are given:
// only those a sandbox can reach.
func TestResolvConf(t *testing.T) {
	var own netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			own, _ = netip.AddrFromSlice(n.IP.To4())
			break
		}
	}
	dir := t.TempDir()
	host := filepath.Join(dir, "resolv.conf")
	lines := []string{
		"# a comment",
		"nameserver 127.0.0.53",   // systemd-resolved's stub: on the host
		"nameserver 9.9.9.9",      // upstream: usable
		"nameserver 10.213.0.1",   // inside the sandbox range
		"nameserver 169.254.0.53", // link-local
		"nameserver 2001:db8::53", // IPv6: sandboxes have none
		"search example.internal",
		"options edns0 trust-ad",
	}
	if own.IsValid() {
		lines = append(lines, "nameserver "+own.String()) // a host address
	}
	if err := os.WriteFile(host, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := newEgress(Config{RootDir: dir}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	servers, extra := parseResolv(host)
	if got := e.usable(servers); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("9.9.9.9")}) {
		t.Errorf("usable resolvers = %v, want only the upstream one", got)
	}
	if !slices.Equal(extra, []string{"search example.internal", "options edns0 trust-ad"}) {
		t.Errorf("search and options lines = %q", extra)
	}

	// Configured resolvers win; IPv6 ones are dropped.
	e.dns = []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}
	if err := e.writeResolv(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.resolv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "nameserver 192.0.2.53\n") || strings.Contains(string(raw), "2001:db8") {
		t.Errorf("resolv.conf with configured resolvers:\n%s", raw)
	}
}

// TestVethPlan checks subnet allocation: distinct /30s inside the range,
// round-robin reuse, and a full range reported as such.
func TestVethPlan(t *testing.T) {
	e, err := newEgress(Config{RootDir: t.TempDir(), EgressRange: netip.MustParsePrefix("10.99.0.0/28")}, nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var got []veth
	for range 4 { // a /28 holds four /30s
		v, err := e.alloc()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if _, err := e.alloc(); err == nil {
		t.Fatal("allocated a fifth /30 from a /28")
	}
	seen := map[string]bool{}
	for _, v := range got {
		if !e.subnets.Contains(v.host.Addr()) || !e.subnets.Contains(v.sandbox.Addr()) ||
			v.host.Masked() != v.sandbox.Masked() || v.host.Addr() == v.sandbox.Addr() || seen[v.Name] ||
			len(v.Name) > 15 || !strings.HasPrefix(v.Name, vethPrefix) {
			t.Errorf("bad veth plan %+v", v)
		}
		seen[v.Name] = true
	}
	e.free(got[1])
	e.free(got[0])
	if v, _ := e.alloc(); v.Name != got[0].Name {
		t.Errorf("after freeing 0 and 1, got %s, want round-robin to reach %s first", v.Name, got[0].Name)
	}
	if _, err := newEgress(Config{EgressRange: netip.MustParsePrefix("fd00::/64")}, nil, nil); err == nil {
		t.Error("an IPv6 egress range was accepted")
	}
}
